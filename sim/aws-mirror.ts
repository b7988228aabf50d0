/**
 * Keeps the namespaces where the emulator says AWS is: every 150 ms it reads the network
 * interfaces as AWS shows them (through the behaviour layer: "attaching" and "detaching" take
 * their time) and the EIP's association, then plugs loxi-eni into the host of the instance it is
 * attached to (its MAC, bare), unplugs it when the detach has finished, points the internet
 * gateway at the ENI holding the EIP, and answers each host's IMDS from the same reading.
 */
import { DescribeAddressesCommand, DescribeSubnetsCommand, type EC2Client, type NetworkInterface } from '@aws-sdk/client-ec2';
import { ROLE, TAG } from '../lib/contract.ts';
import type { AwsProxy } from './aws-proxy.ts';
import type { InstanceMetadata } from './imds.ts';
import type { SimVpc } from './vpc.ts';

export type MirrorEvent =
  | { kind: 'eni-plugged'; host: number; eniId: string }
  | { kind: 'eni-unplugged'; host: number; eniId: string }
  | { kind: 'eip'; eniId: string | undefined; privateIp: string | undefined };

/** Attachment states in which the interface is on the instance (a detach takes effect when it ends). */
const ON_INSTANCE = new Set(['attached', 'detaching']);

export class AwsMirror {
  private readonly proxy: AwsProxy;
  private readonly ec2: EC2Client;
  private readonly vpc: SimVpc;
  private readonly deploymentId: string;
  private readonly eipAllocationId: string;
  private readonly instances: { id: string; index: number; az: string }[];
  private readonly subnets = new Map<string, string>();
  private readonly dead = new Set<number>();
  private metadataBy = new Map<number, InstanceMetadata>();
  private eipTarget: string | undefined = 'unset';
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  onEvent: (e: MirrorEvent) => void = () => {};
  onError: (e: Error) => void = () => {};

  constructor(opts: { proxy: AwsProxy; ec2: EC2Client; vpc: SimVpc; deploymentId: string; eipAllocationId: string; instances: { id: string; index: number; az: string }[] }) {
    this.proxy = opts.proxy;
    this.ec2 = opts.ec2;
    this.vpc = opts.vpc;
    this.deploymentId = opts.deploymentId;
    this.eipAllocationId = opts.eipAllocationId;
    this.instances = opts.instances;
  }

  /** What host `index`'s IMDS answers now. */
  metadata(index: number): InstanceMetadata | undefined {
    return this.metadataBy.get(index);
  }

  async start(): Promise<void> {
    await this.refresh();
    const loop = () => {
      this.timer = setTimeout(() => {
        this.running = this.refresh()
          .catch((e: Error) => this.onError(e))
          .finally(() => {
            if (this.timer) loop();
          });
      }, 150);
    };
    loop();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** The instance died: its links stay dark, also for an ENI plugged into it later. */
  markDead(index: number): void {
    this.dead.add(index);
    this.vpc.cut(index);
  }

  markAlive(index: number): void {
    this.dead.delete(index);
    this.vpc.restore(index);
  }

  private ours(n: NetworkInterface): boolean {
    const tags = n.TagSet ?? [];
    return tags.some((t) => t.Key === TAG.deployment && t.Value === this.deploymentId) && tags.some((t) => t.Key === TAG.role && t.Value === ROLE.loxiEni);
  }

  private async subnetCidr(id: string): Promise<string> {
    let cidr = this.subnets.get(id);
    if (!cidr) {
      const r = await this.ec2.send(new DescribeSubnetsCommand({ SubnetIds: [id] }));
      cidr = r.Subnets?.[0]?.CidrBlock ?? '';
      this.subnets.set(id, cidr);
    }
    return cidr;
  }

  async refresh(): Promise<void> {
    const [enis, addresses] = await Promise.all([
      this.proxy.networkInterfaces(),
      this.ec2.send(new DescribeAddressesCommand({ AllocationIds: [this.eipAllocationId] })),
    ]);
    const indexOf = (instanceId: string | undefined) => this.instances.find((i) => i.id === instanceId)?.index;
    // Metadata: every interface on each instance, its own first (device index order).
    const metadata = new Map<number, InstanceMetadata>();
    for (const inst of this.instances) metadata.set(inst.index, { instanceId: inst.id, availabilityZone: inst.az, interfaces: [] });
    const on = enis
      .filter((n) => n.Attachment && ON_INSTANCE.has(n.Attachment.Status ?? '') && indexOf(n.Attachment.InstanceId) !== undefined)
      .sort((a, b) => (a.Attachment!.DeviceIndex ?? 0) - (b.Attachment!.DeviceIndex ?? 0));
    for (const n of on) {
      metadata.get(indexOf(n.Attachment!.InstanceId)!)!.interfaces.push({
        mac: n.MacAddress!.toLowerCase(),
        privateIps: (n.PrivateIpAddresses ?? []).map((p) => p.PrivateIpAddress!).filter(Boolean),
        subnetCidr: await this.subnetCidr(n.SubnetId!),
      });
    }
    this.metadataBy = metadata;

    // loxi-eni follows its attachment.
    const loxi = on.find((n) => this.ours(n));
    const want = loxi ? { eniId: loxi.NetworkInterfaceId!, host: indexOf(loxi.Attachment!.InstanceId)!, mac: loxi.MacAddress!.toLowerCase() } : undefined;
    const have = this.vpc.plugged;
    if (have && (!want || want.eniId !== have.eniId || want.host !== have.host)) {
      this.vpc.unplug();
      this.onEvent({ kind: 'eni-unplugged', host: have.host, eniId: have.eniId });
    }
    if (want && !this.vpc.plugged) {
      this.vpc.plug(want);
      if (this.dead.has(want.host)) this.vpc.cut(want.host);
      this.onEvent({ kind: 'eni-plugged', host: want.host, eniId: want.eniId });
    }

    // The internet gateway maps the EIP to the ENI holding the association, when that ENI is on an instance.
    const a = addresses.Addresses?.[0];
    const target = a?.NetworkInterfaceId && a.NetworkInterfaceId === this.vpc.plugged?.eniId ? a.NetworkInterfaceId : undefined;
    const privateIp = target ? a?.PrivateIpAddress : undefined;
    this.vpc.setIgw(privateIp);
    if (target !== this.eipTarget) {
      this.eipTarget = target;
      this.onEvent({ kind: 'eip', eniId: target, privateIp });
    }
  }
}
