/**
 * Keeps the namespaces where the emulator says AWS is: every 150 ms it reads the network
 * interfaces as AWS shows them (through the behaviour layer: "attaching" and "detaching" take
 * their time) and the EIP's association, then plugs loxi-eni into the host of the instance it is
 * attached to (its MAC, bare), unplugs it when the detach has finished, points the internet
 * gateway at the ENI holding the EIP, and answers each host's IMDS from the same reading.
 */
import { DescribeRouteTablesCommand, DescribeSubnetsCommand, type EC2Client, type NetworkInterface } from '@aws-sdk/client-ec2';
import { ROLE, TAG } from '../lib/contract.ts';
import type { AwsProxy } from './aws-proxy.ts';
import type { InstanceMetadata } from './imds.ts';
import { eniLink, SimVpc } from './vpc.ts';
import { Poller } from './poller.ts';

export type MirrorEvent =
  | { kind: 'eni-plugged'; host: number; eniId: string; group: number }
  | { kind: 'eni-unplugged'; host: number; eniId: string; group: number }
  | { kind: 'eip'; eniId: string | undefined; privateIp: string | undefined; host: number | undefined; publicIp: string }
  | { kind: 'vip-route'; host: number | undefined; vip: string };

/**
 * The interface a host's own link (`ens5`, at the slot's address) stands for: the instance's primary,
 * or — slots, as the stack makes them — the slot's own interface (the primary's DHCP address plays
 * no part: the EIP and the VIP's routes never point at it).
 */
const hostLink = (n: NetworkInterface) => n.Attachment?.DeviceIndex === 0 || (n.TagSet ?? []).some((t) => t.Key === TAG.role && t.Value === ROLE.slotInterface);

/** Attachment states in which the interface is on the instance (a detach takes effect when it ends). */
const ON_INSTANCE = new Set(['attached', 'detaching']);

export class AwsMirror {
  private readonly proxy: AwsProxy;
  private readonly ec2: EC2Client;
  private readonly vpc: SimVpc;
  private readonly deploymentId: string;
  /** Every VIP group's EIP (one unless there are several groups). */
  private readonly eipAllocationIds: string[];
  private readonly instances: { id: string; index: number; az: string }[];
  private readonly subnets = new Map<string, string>();
  private readonly dead = new Set<number>();
  private metadataBy = new Map<number, InstanceMetadata>();
  private readonly eipTarget = new Map<string, string | undefined>();
  private readonly vipRouteHost = new Map<string, number | undefined>();
  /** Route strategy: the overlay VIPs (one per group) and the route table whose /32s the VPC router follows (the nodes'). */
  private readonly vipRoutes: { vip: string; routeTableId: string }[];
  private poller: Poller | undefined;
  onEvent: (e: MirrorEvent) => void = () => {};
  onError: (e: Error) => void = () => {};

  constructor(opts: {
    proxy: AwsProxy;
    ec2: EC2Client;
    vpc: SimVpc;
    deploymentId: string;
    eipAllocationId: string | string[];
    instances: { id: string; index: number; az: string }[];
    vipRoute?: { vip: string; routeTableId: string } | { vip: string; routeTableId: string }[];
  }) {
    this.vipRoutes = opts.vipRoute === undefined ? [] : Array.isArray(opts.vipRoute) ? opts.vipRoute : [opts.vipRoute];
    this.proxy = opts.proxy;
    this.ec2 = opts.ec2;
    this.vpc = opts.vpc;
    this.deploymentId = opts.deploymentId;
    this.eipAllocationIds = Array.isArray(opts.eipAllocationId) ? opts.eipAllocationId : [opts.eipAllocationId];
    this.instances = opts.instances;
  }

  /** What host `index`'s IMDS answers now. */
  metadata(index: number): InstanceMetadata | undefined {
    return this.metadataBy.get(index);
  }

  async start(): Promise<void> {
    await this.refresh();
    this.poller = new Poller(() => this.refresh(), 150, (e) => this.onError(e));
    this.poller.start();
  }

  async stop(): Promise<void> {
    await this.poller?.stop();
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
    const [enis, addresses, tables] = await Promise.all([
      this.proxy.networkInterfaces(),
      this.proxy.addressesAsAws(),
      this.vipRoutes.length ? this.ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: [...new Set(this.vipRoutes.map((r) => r.routeTableId))] })) : undefined,
    ]);
    const eips = this.eipAllocationIds.map((id) => addresses.find((a) => a.AllocationId === id));
    const indexOf = (instanceId: string | undefined) => this.instances.find((i) => i.id === instanceId)?.index;
    // Metadata: every interface on each instance, its own first (device index order).
    const metadata = new Map<number, InstanceMetadata>();
    for (const inst of this.instances) metadata.set(inst.index, { instanceId: inst.id, availabilityZone: inst.az, interfaces: [] });
    const on = enis
      .filter((n) => n.Attachment && ON_INSTANCE.has(n.Attachment.Status ?? '') && indexOf(n.Attachment.InstanceId) !== undefined)
      .sort((a, b) => (a.Attachment!.DeviceIndex ?? 0) - (b.Attachment!.DeviceIndex ?? 0));
    for (const n of on) {
      // IMDS lists every public address associated with the interface, each with its private address.
      const held = eips.filter((eip) => eip !== undefined && eip.NetworkInterfaceId === n.NetworkInterfaceId && eip.PublicIp && eip.PrivateIpAddress);
      metadata.get(indexOf(n.Attachment!.InstanceId)!)!.interfaces.push({
        mac: n.MacAddress!.toLowerCase(),
        privateIps: (n.PrivateIpAddresses ?? []).map((p) => p.PrivateIpAddress!).filter(Boolean),
        subnetCidr: await this.subnetCidr(n.SubnetId!),
        ...(held.length ? { ipv4Associations: Object.fromEntries(held.map((eip) => [eip!.PublicIp!, eip!.PrivateIpAddress!])) } : {}),
      });
    }
    this.metadataBy = metadata;

    // Each group's loxi-eni follows its attachment (its group: the floating subnet's block it is in).
    const wants = new Map<number, { eniId: string; host: number; mac: string; group: number }>();
    for (const n of on.filter((x) => this.ours(x))) {
      const group = this.vpc.blocks.indexOf(await this.subnetCidr(n.SubnetId!));
      if (group >= 0) wants.set(group, { eniId: n.NetworkInterfaceId!, host: indexOf(n.Attachment!.InstanceId)!, mac: n.MacAddress!.toLowerCase(), group });
    }
    for (const [group, have] of [...this.vpc.plugs]) {
      const want = wants.get(group);
      if (want && want.eniId === have.eniId && want.host === have.host) continue;
      this.vpc.unplug(group);
      this.onEvent({ kind: 'eni-unplugged', host: have.host, eniId: have.eniId, group });
    }
    for (const [group, want] of wants) {
      if (this.vpc.plugs.has(group)) continue;
      this.vpc.plug(want);
      if (this.dead.has(want.host)) this.vpc.cut(want.host);
      this.onEvent({ kind: 'eni-plugged', host: want.host, eniId: want.eniId, group });
    }

    // The internet gateway maps each EIP to the address it is associated with, through the interface holding it.
    for (const eip of eips) {
      if (!eip?.PublicIp) continue;
      const holder = eip.NetworkInterfaceId ? on.find((n) => n.NetworkInterfaceId === eip.NetworkInterfaceId) : undefined;
      const host = holder ? indexOf(holder.Attachment!.InstanceId) : undefined;
      const plugged = holder ? [...this.vpc.plugs.values()].find((p) => p.eniId === holder.NetworkInterfaceId) : undefined;
      const link = !holder ? undefined : plugged ? eniLink(plugged.group ?? 0) : hostLink(holder) ? SimVpc.primaryLink(host!) : undefined;
      const target = link && eip.PrivateIpAddress ? { privateIp: eip.PrivateIpAddress, link } : undefined;
      this.vpc.setIgw(target, eip.PublicIp);
      const key = target ? `${holder!.NetworkInterfaceId}/${target.privateIp}` : undefined;
      if (!this.eipTarget.has(eip.PublicIp) || key !== this.eipTarget.get(eip.PublicIp)) {
        this.eipTarget.set(eip.PublicIp, key);
        this.onEvent({ kind: 'eip', eniId: target ? holder!.NetworkInterfaceId : undefined, privateIp: target?.privateIp, host: target ? host : undefined, publicIp: eip.PublicIp });
      }
    }

    // Route strategy: the VPC router follows each VIP's /32 in the nodes' route table.
    for (const vipRoute of tables ? this.vipRoutes : []) {
      const table = tables!.RouteTables?.find((t) => t.RouteTableId === vipRoute.routeTableId);
      const route = table?.Routes?.find((r) => r.DestinationCidrBlock === `${vipRoute.vip}/32`);
      const via = route?.NetworkInterfaceId ? on.find((n) => n.NetworkInterfaceId === route.NetworkInterfaceId) : undefined;
      const routeHost = via && hostLink(via) ? indexOf(via.Attachment!.InstanceId) : undefined;
      this.vpc.setVipRoute(vipRoute.vip, routeHost);
      if (!this.vipRouteHost.has(vipRoute.vip) || routeHost !== this.vipRouteHost.get(vipRoute.vip)) {
        this.vipRouteHost.set(vipRoute.vip, routeHost);
        this.onEvent({ kind: 'vip-route', host: routeHost, vip: vipRoute.vip });
      }
    }
  }
}
