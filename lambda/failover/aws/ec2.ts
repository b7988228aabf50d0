/**
 * Thin adapter over EC2: each method is one call (plus the checks AWS's eventual
 * consistency and idempotency rules require), returning plain data.
 */
import {
  AssociateAddressCommand,
  AssociateRouteTableCommand,
  CreateRouteCommand,
  CreateTagsCommand,
  ModifyInstanceAttributeCommand,
  DeleteRouteCommand,
  ReplaceRouteCommand,
  AttachNetworkInterfaceCommand,
  CreateNetworkInterfaceCommand,
  CreateSubnetCommand,
  DeleteNetworkInterfaceCommand,
  DeleteSubnetCommand,
  DescribeAddressesCommand,
  DescribeInstanceStatusCommand,
  DescribeInstanceTypesCommand,
  DescribeInstancesCommand,
  DescribeNetworkInterfacesCommand,
  DescribeRouteTablesCommand,
  DescribeSubnetsCommand,
  DetachNetworkInterfaceCommand,
  DisassociateAddressCommand,
  type EC2Client,
  type _InstanceType,
  type Filter,
  ModifyNetworkInterfaceAttributeCommand,
  type NetworkInterface,
  type Tag,
} from '@aws-sdk/client-ec2';
import { DEFAULT_GROUP, groupOfTag, LOXI_ENI_DESCRIPTION, namePrefix, ROLE, SLOT_INTERFACE_DEVICE_INDEX, TAG } from '../../../lib/contract.ts';
import { type Clock, pollUntil } from '../clock.ts';
import type { Ec2RequestLimiter } from './ec2-request-limiter.ts';
import type { InflightReads } from './inflight-reads.ts';
import type { EipView, FloatingSubnetView, InstanceState, InstanceView, LoxiEniView } from '../snapshot.ts';

/** The VIP's /32 route in one route table, as the route strategy sees it. */
export interface VipRouteView {
  routeTableId: string;
  /** The interface it points to; undefined when the table has no such route. */
  networkInterfaceId: string | undefined;
  present: boolean;
  /** `blackhole` when its interface is gone. */
  state: string | undefined;
}

/** An interface holding some of the given private addresses. */
export interface HolderView {
  eniId: string;
  instanceId: string | undefined;
  deviceIndex: number | undefined;
  privateIps: string[];
}

export function errorCode(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const o = e as { name?: string; Code?: string; code?: string };
  return o.Code ?? o.code ?? o.name;
}

/** An interface or instance just created that EC2 does not show yet (eventual consistency). */
const NOT_VISIBLE_YET = /^Invalid(NetworkInterface|Instance)ID\.NotFound$/;

export const isNotFound = (e: unknown) => /\.NotFound$|^InvalidAllocationID\.NotFound$/.test(errorCode(e) ?? '');

function tagValue(tags: Tag[] | undefined, key: string): string | undefined {
  return tags?.find((t) => t.Key === key)?.Value;
}

function epochOf(tags: Tag[] | undefined): number | undefined {
  const v = tagValue(tags, TAG.epoch);
  return v === undefined || !/^\d+$/.test(v) ? undefined : Number(v);
}

export interface Ec2AdapterOptions {
  deploymentId: string;
  vpcId: string;
  clock: Clock;
  /** Paces the calls within EC2's request token buckets (several groups moving at once). */
  limiter?: Ec2RequestLimiter;
  /**
   * The VIP group whose floating resources (subnet, loxi-eni) this adapter reads, creates and
   * adopts: another group's are invisible to it (DEFAULT_GROUP when unset).
   */
  group?: string;
  /** Shared by the groups of one run: identical reads in flight at once go out once. */
  reads?: InflightReads;
}

/** AWS's answer to an attach at a device index another interface holds. */
const DEVICE_INDEX_TAKEN = /already has an interface attached at device index/i;
/** No instance type attaches more interfaces than this (the largest take 16, EFA ones a few more). */
const MAX_DEVICE_INDEX = 31;

/** Interfaces per instance type, learnt once per process (DescribeInstanceTypes). */
const INTERFACE_LIMITS = new Map<string, number>();

/** While a detach completes: a look every 0.8 s plus the call's own time. */
const DETACH_LOOK_PACE = { baseMs: 800, maxMs: 800 };

export class Ec2Adapter {
  private readonly client: EC2Client;
  private readonly o: Ec2AdapterOptions;
  /** Counts calls, for the result object and the benchmark. */
  calls = 0;
  mutations = 0;

  constructor(client: EC2Client, options: Ec2AdapterOptions) {
    this.client = client;
    this.o = options;
  }

  private send<T>(command: object, mutates: boolean): Promise<T> {
    // The action's name, as EC2's throttling buckets are keyed (the bundle keeps class names).
    const action = command.constructor.name.replace(/Command$/, '');
    const go = async () => {
      await this.o.limiter?.take(action);
      this.calls++;
      if (mutates) this.mutations++;
      // The commands are typed at each call site; the union of EC2 commands is too wide for send's overloads.
      return (this.client.send as (c: object) => Promise<T>).call(this.client, command);
    };
    if (mutates) {
      const reads = this.o.reads;
      return reads ? go().finally(() => reads.wrote()) : go();
    }
    if (!this.o.reads) return go();
    return this.o.reads.share(`${action} ${JSON.stringify((command as { input?: unknown }).input)}`, go);
  }

  private ours(role: string): Filter[] {
    return [
      { Name: `tag:${TAG.deployment}`, Values: [this.o.deploymentId] },
      { Name: `tag:${TAG.role}`, Values: [role] },
    ];
  }

  private get group(): string {
    return this.o.group ?? DEFAULT_GROUP;
  }

  /** A floating resource of this adapter's group (an untagged one is DEFAULT_GROUP's). */
  private mine(tags: Tag[] | undefined): boolean {
    return groupOfTag(tagValue(tags, TAG.group)) === this.group;
  }

  /** A floating resource's tags; DEFAULT_GROUP's carry no group tag, as before groups existed. */
  private tags(role: string, epoch: number, name: string): Tag[] {
    return [
      { Key: TAG.deployment, Value: this.o.deploymentId },
      { Key: TAG.role, Value: role },
      { Key: TAG.epoch, Value: String(epoch) },
      { Key: TAG.name, Value: name },
      ...(this.group === DEFAULT_GROUP ? [] : [{ Key: TAG.group, Value: this.group }]),
    ];
  }

  /** A floating resource's Name: the deployment's prefix, the group's name unless DEFAULT_GROUP, then `what`. */
  private nameOf(what: string): string {
    return `${namePrefix(this.o.deploymentId)}${this.group === DEFAULT_GROUP ? '' : `-${this.group}`}-${what}`;
  }

  /**
   * Retries a call while AWS answers one of `codes` (eventual consistency right after a
   * create, DependencyViolation while an ENI lingers…), with backoff, until the deadline.
   */
  async retrying<T>(what: string, codes: RegExp, deadline: number, fn: () => Promise<T>, pace: { baseMs: number; maxMs: number } = { baseMs: 500, maxMs: 1500 }): Promise<T> {
    let last: unknown;
    return pollUntil(this.o.clock, what, deadline, async () => {
      try {
        return { v: await fn() };
      } catch (e) {
        if (!codes.test(errorCode(e) ?? '')) throw e;
        last = e;
        return undefined;
      }
    }, pace).then((r) => r.v).catch((e) => {
      if (last && (e as Error).name === 'DeadlineExceededError') (e as Error).message += ` (last AWS answer: ${errorCode(last)})`;
      throw e;
    });
  }

  // ---- observe -------------------------------------------------------------------------

  async lbInstances(): Promise<Omit<InstanceView, 'statusOk' | 'lastHeartbeatAt' | 'sessionsInSync'>[]> {
    const out: Omit<InstanceView, 'statusOk' | 'lastHeartbeatAt' | 'sessionsInSync'>[] = [];
    let NextToken: string | undefined;
    do {
      const r = await this.send<any>(
        new DescribeInstancesCommand({
          Filters: [...this.ours(ROLE.lbInstance), { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped', 'shutting-down'] }],
          NextToken,
        }),
        false,
      );
      for (const res of r.Reservations ?? []) {
        for (const i of res.Instances ?? []) {
          const index = Number(tagValue(i.Tags, TAG.instanceIndex));
          if (!i.InstanceId || !Number.isInteger(index)) continue;
          out.push({
            id: i.InstanceId,
            index,
            az: i.Placement?.AvailabilityZone ?? '',
            state: (i.State?.Name ?? 'pending') as InstanceState,
            ...(i.LaunchTime ? { launchedAt: new Date(i.LaunchTime).getTime() } : {}),
            ...(tagValue(i.Tags, TAG.draining) === 'true' ? { draining: true } : {}),
            ...(i.InstanceType ? { instanceType: i.InstanceType } : {}),
            securityGroupIds: (i.SecurityGroups ?? []).map((g: any) => g.GroupId!).filter(Boolean),
            usedDeviceIndexes: (i.NetworkInterfaces ?? []).map((n: any) => n.Attachment?.DeviceIndex).filter((d: unknown): d is number => typeof d === 'number'),
          });
        }
      }
      NextToken = r.NextToken;
    } while (NextToken);
    // A slot's instance being replaced and its replacement carry the same index: the replacement first.
    return out.sort((a, b) => a.index - b.index || Number(a.draining === true) - Number(b.draining === true));
  }

  // ---- slots (Auto Scaling lifecycle hooks) ---------------------------------------------

  /** Slot `slot`'s own interface (tagged by the stack), with where it is attached. */
  async slotInterface(slot: number): Promise<{ id: string; attachment?: { id: string; instanceId: string; status: string } } | undefined> {
    const r = await this.send<any>(
      new DescribeNetworkInterfacesCommand({ Filters: [...this.ours(ROLE.slotInterface), { Name: `tag:${TAG.instanceIndex}`, Values: [String(slot)] }] }),
      false,
    );
    const n = (r.NetworkInterfaces ?? [])[0] as NetworkInterface | undefined;
    if (!n?.NetworkInterfaceId) return undefined;
    const a = n.Attachment;
    return { id: n.NetworkInterfaceId, ...(a?.AttachmentId && a.InstanceId ? { attachment: { id: a.AttachmentId, instanceId: a.InstanceId, status: a.Status ?? 'unknown' } } : {}) };
  }

  /** Attaches a slot's interface at its device index (the new instance may not be visible yet either). */
  attachSlotInterface(eniId: string, instanceId: string, deadline: number): Promise<void> {
    return this.attachEni(eniId, instanceId, SLOT_INTERFACE_DEVICE_INDEX, deadline);
  }

  /** Source/dest check off on an instance (its primary interface): it forwards for the VIP. */
  async disableInstanceSourceDestCheck(instanceId: string, deadline: number): Promise<void> {
    await this.retrying(`source/dest check off on ${instanceId}`, /^InvalidInstanceID\.NotFound$/, deadline, () =>
      this.send(new ModifyInstanceAttributeCommand({ InstanceId: instanceId, SourceDestCheck: { Value: false } }), true),
    );
  }

  /** Tags an instance as being terminated by its group (TAG.draining): every run then keeps the VIP off it. */
  async markDraining(instanceId: string): Promise<void> {
    await this.send(new CreateTagsCommand({ Resources: [instanceId], Tags: [{ Key: TAG.draining, Value: 'true' }] }), true);
  }

  /** EC2 status checks per instance: true ok, false impaired, undefined initializing/unknown. */
  async instanceStatus(ids: string[]): Promise<Map<string, boolean | undefined>> {
    const m = new Map<string, boolean | undefined>();
    if (!ids.length) return m;
    const r = await this.send<any>(new DescribeInstanceStatusCommand({ InstanceIds: ids, IncludeAllInstances: true }), false);
    for (const s of r.InstanceStatuses ?? []) {
      const checks = [s.InstanceStatus?.Status, s.SystemStatus?.Status];
      m.set(s.InstanceId, checks.includes('impaired') ? false : checks.every((c) => c === 'ok') ? true : undefined);
    }
    return m;
  }

  /**
   * This group's floating subnets; with `routeTableId`, each with its association with that table
   * (one DescribeRouteTables more), without it marked `associationUnread`.
   */
  async floatingSubnets(routeTableId?: string): Promise<FloatingSubnetView[]> {
    const [subnets, assoc] = await Promise.all([
      this.send<any>(new DescribeSubnetsCommand({ Filters: [{ Name: 'vpc-id', Values: [this.o.vpcId] }, ...this.ours(ROLE.floatingSubnet)] }), false),
      routeTableId ? this.routeTableAssociations(routeTableId) : undefined,
    ]);
    return (subnets.Subnets ?? []).filter((s: any) => this.mine(s.Tags)).map((s: any) => ({
      id: s.SubnetId,
      az: s.AvailabilityZone,
      cidr: s.CidrBlock,
      routeTableAssociationId: assoc?.get(s.SubnetId),
      ...(assoc ? {} : { associationUnread: true as const }),
      epoch: epochOf(s.Tags),
    }));
  }

  /** The route table's subnet associations: subnet id → association id. */
  async routeTableAssociations(routeTableId: string): Promise<Map<string, string>> {
    const tables = await this.send<any>(new DescribeRouteTablesCommand({ RouteTableIds: [routeTableId] }), false);
    const assoc = new Map<string, string>();
    for (const t of tables.RouteTables ?? []) for (const a of t.Associations ?? []) if (a.SubnetId && a.RouteTableAssociationId) assoc.set(a.SubnetId, a.RouteTableAssociationId);
    return assoc;
  }

  private eniView(n: NetworkInterface): LoxiEniView {
    return {
      id: n.NetworkInterfaceId!,
      subnetId: n.SubnetId!,
      az: n.AvailabilityZone ?? '',
      privateIp: n.PrivateIpAddress ?? '',
      status: n.Status ?? 'unknown',
      attachment:
        n.Attachment?.AttachmentId && n.Attachment.InstanceId
          ? { id: n.Attachment.AttachmentId, instanceId: n.Attachment.InstanceId, status: n.Attachment.Status ?? 'unknown', deviceIndex: n.Attachment.DeviceIndex ?? -1 }
          : undefined,
      sourceDestCheck: n.SourceDestCheck !== false,
      epoch: epochOf(n.TagSet),
      association: n.Association ? { allocationId: n.Association.AllocationId, associationId: n.Association.AssociationId, publicIp: n.Association.PublicIp } : undefined,
    };
  }

  async loxiEnis(): Promise<LoxiEniView[]> {
    const r = await this.send<any>(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'vpc-id', Values: [this.o.vpcId] }, ...this.ours(ROLE.loxiEni)] }), false);
    return (r.NetworkInterfaces ?? []).filter((n: NetworkInterface) => this.mine(n.TagSet)).map((n: NetworkInterface) => this.eniView(n));
  }

  /**
   * How many network interfaces each instance type can attach (DescribeInstanceTypes); remembered
   * for the life of the process, as a type's limits do not change.
   */
  async interfaceLimits(types: string[]): Promise<Map<string, number>> {
    const missing = [...new Set(types)].filter((t) => !INTERFACE_LIMITS.has(t));
    if (missing.length) {
      const r = await this.send<any>(new DescribeInstanceTypesCommand({ InstanceTypes: missing as _InstanceType[] }), false);
      for (const t of r.InstanceTypes ?? []) if (t.InstanceType && t.NetworkInfo?.MaximumNetworkInterfaces) INTERFACE_LIMITS.set(t.InstanceType, t.NetworkInfo.MaximumNetworkInterfaces);
    }
    return new Map(types.filter((t) => INTERFACE_LIMITS.has(t)).map((t) => [t, INTERFACE_LIMITS.get(t)!]));
  }

  /** One ENI by id; undefined when AWS says it does not exist (deleted, or not yet visible). */
  async eni(id: string): Promise<LoxiEniView | undefined> {
    try {
      const r = await this.send<any>(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [id] }), false);
      const n = r.NetworkInterfaces?.[0];
      return n ? this.eniView(n) : undefined;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async eip(allocationId: string): Promise<EipView> {
    const readMany = async (ids: string[]) => {
      const r = await this.send<any>(new DescribeAddressesCommand({ AllocationIds: ids }), false);
      return new Map<string, any>((r.Addresses ?? []).map((x: any) => [x.AllocationId, x]));
    };
    // Several groups: their EIPs read at once go out as one DescribeAddresses.
    const a = this.o.reads ? await this.o.reads.batch('DescribeAddresses', allocationId, readMany) : (await readMany([allocationId])).get(allocationId);
    if (!a) throw new Error(`Elastic IP allocation ${allocationId} not found`);
    return {
      allocationId,
      publicIp: a.PublicIp,
      associationId: a.AssociationId,
      networkInterfaceId: a.NetworkInterfaceId,
      privateIp: a.PrivateIpAddress,
    };
  }

  // ---- mutate --------------------------------------------------------------------------

  async detachEni(attachmentId: string, force: boolean): Promise<void> {
    try {
      await this.send(new DetachNetworkInterfaceCommand({ AttachmentId: attachmentId, Force: force }), true);
    } catch (e) {
      // Already detached (a previous run did it): the state we want.
      if (isNotFound(e) || errorCode(e) === 'InvalidAttachmentID.NotFound') return;
      throw e;
    }
  }

  /**
   * Deletes an ENI, retrying while AWS says it is in use (a detach under way) at an even pace: how
   * long a detach takes is not known (seconds, AWS gives no bound), and a look at an even pace finds
   * it done sooner on average than a backoff for the same number of calls. `keepAlive` renews the
   * lease on long waits.
   */
  async deleteEni(id: string, deadline: number, keepAlive?: () => Promise<void>): Promise<void> {
    await this.retrying(`delete ${id}`, /^InvalidNetworkInterface\.InUse$/, deadline, async () => {
      await keepAlive?.();
      try {
        await this.send(new DeleteNetworkInterfaceCommand({ NetworkInterfaceId: id }), true);
      } catch (e) {
        if (isNotFound(e)) return;
        throw e;
      }
    }, DETACH_LOOK_PACE);
  }

  async deleteSubnet(id: string, deadline: number): Promise<void> {
    await this.retrying(`delete ${id}`, /^DependencyViolation$/, deadline, async () => {
      try {
        await this.send(new DeleteSubnetCommand({ SubnetId: id }), true);
      } catch (e) {
        if (isNotFound(e)) return;
        throw e;
      }
    });
  }

  /** Creates the floating subnet; adopts ours if a previous run created it and its answer was lost. */
  async createSubnet(az: string, cidr: string, epoch: number, deadline: number): Promise<string> {
    try {
      const r = await this.send<any>(
        new CreateSubnetCommand({
          VpcId: this.o.vpcId,
          AvailabilityZone: az,
          CidrBlock: cidr,
          TagSpecifications: [{ ResourceType: 'subnet', Tags: this.tags(ROLE.floatingSubnet, epoch, this.nameOf(`floating-${az}`)) }],
        }),
        true,
      );
      return r.Subnet.SubnetId;
    } catch (e) {
      if (errorCode(e) !== 'InvalidSubnet.Conflict') throw e;
      // The block is taken: by our own subnet (lost answer, or not yet visible when we observed) or by someone else's.
      return pollUntil(this.o.clock, `find the subnet holding ${cidr}`, deadline, async () => {
        const r = await this.send<any>(new DescribeSubnetsCommand({ Filters: [{ Name: 'vpc-id', Values: [this.o.vpcId] }, { Name: 'cidr-block', Values: [cidr] }] }), false);
        const s = r.Subnets?.[0];
        if (!s) return undefined;
        if (tagValue(s.Tags, TAG.deployment) !== this.o.deploymentId || tagValue(s.Tags, TAG.role) !== ROLE.floatingSubnet || !this.mine(s.Tags)) {
          throw new Error(`${cidr} is held by subnet ${s.SubnetId}, which is not a floating subnet of this deployment's group "${this.group}"; refusing to touch it`);
        }
        if (s.AvailabilityZone !== az) throw new Error(`our floating subnet ${s.SubnetId} holding ${cidr} is in ${s.AvailabilityZone}, not ${az}; the next run deletes it`);
        return s.SubnetId as string;
      });
    }
  }

  /** Associates the route table with the subnet; returns the association's id (from the answer, or found after a lost answer). */
  async associateRouteTable(routeTableId: string, subnetId: string, deadline: number): Promise<string> {
    return this.retrying(`associate ${routeTableId} with ${subnetId}`, /^InvalidSubnetID\.NotFound$/, deadline, async () => {
      try {
        const r = await this.send<any>(new AssociateRouteTableCommand({ RouteTableId: routeTableId, SubnetId: subnetId }), true);
        return r.AssociationId as string;
      } catch (e) {
        if (errorCode(e) !== 'Resource.AlreadyAssociated') throw e;
        // A lost answer: the association exists already, with our table or (someone else's doing) another.
        const r = await this.send<any>(new DescribeRouteTablesCommand({ Filters: [{ Name: 'association.subnet-id', Values: [subnetId] }] }), false);
        for (const t of r.RouteTables ?? []) {
          const a = (t.Associations ?? []).find((x: any) => x.SubnetId === subnetId);
          if (!a) continue;
          if (t.RouteTableId !== routeTableId) throw new Error(`subnet ${subnetId} is associated with route table ${t.RouteTableId}, not ${routeTableId}; refusing to change it`);
          return a.RouteTableAssociationId as string;
        }
        throw e;
      }
    });
  }

  async createEni(p: { subnetId: string; privateIp: string; securityGroupIds: string[]; epoch: number; az: string }, deadline: number): Promise<string> {
    // Same subnet → same token: a re-run after a lost answer gets the same ENI back.
    const clientToken = `${this.o.deploymentId}-${p.subnetId}`.slice(0, 64);
    const r = await this.retrying(`create loxi-eni in ${p.subnetId}`, /^InvalidSubnetID\.NotFound$/, deadline, () =>
      this.send<any>(
        new CreateNetworkInterfaceCommand({
          SubnetId: p.subnetId,
          PrivateIpAddress: p.privateIp,
          Groups: p.securityGroupIds,
          Description: LOXI_ENI_DESCRIPTION,
          ClientToken: clientToken,
          TagSpecifications: [{ ResourceType: 'network-interface', Tags: this.tags(ROLE.loxiEni, p.epoch, this.nameOf(`loxi-eni-${p.az}`)) }],
        }),
        true,
      ),
    );
    return r.NetworkInterface.NetworkInterfaceId;
  }

  async disableSourceDestCheck(eniId: string, deadline: number): Promise<void> {
    await this.retrying(`source/dest check off on ${eniId}`, /^InvalidNetworkInterfaceID\.NotFound$/, deadline, () =>
      this.send(new ModifyNetworkInterfaceAttributeCommand({ NetworkInterfaceId: eniId, SourceDestCheck: { Value: false } }), true),
    );
  }

  /**
   * Attaches at `deviceIndex`, or at the next free one: another group's run may have taken that index
   * on the same instance since this run observed it (AWS: "already has an interface attached at
   * device index"); the instance's interface limit ends the search with AWS's own error.
   */
  async attachEni(eniId: string, instanceId: string, deviceIndex: number, deadline: number): Promise<void> {
    let index = deviceIndex;
    await this.retrying(`attach ${eniId} to ${instanceId}`, NOT_VISIBLE_YET, deadline, async () => {
      for (;;) {
        try {
          await this.send(new AttachNetworkInterfaceCommand({ NetworkInterfaceId: eniId, InstanceId: instanceId, DeviceIndex: index }), true);
          return;
        } catch (e) {
          // Not visible yet (just created): retried without a look that would only say the same.
          if (NOT_VISIBLE_YET.test(errorCode(e) ?? '')) throw e;
          if (errorCode(e) === 'InvalidParameterValue' && DEVICE_INDEX_TAKEN.test((e as Error).message) && index < MAX_DEVICE_INDEX) {
            index++;
            continue;
          }
          // A lost answer: check before failing whether it is attached where we want it.
          const now = await this.eni(eniId);
          if (now?.attachment?.instanceId === instanceId) return;
          throw e;
        }
      }
    });
  }

  async associateEip(allocationId: string, eniId: string, privateIp: string, deadline: number): Promise<void> {
    await this.retrying(`associate the EIP with ${eniId}`, /^InvalidNetworkInterfaceID\.NotFound$/, deadline, () =>
      this.send(new AssociateAddressCommand({ AllocationId: allocationId, NetworkInterfaceId: eniId, PrivateIpAddress: privateIp, AllowReassociation: true }), true),
    );
  }

  // ---- route strategy --------------------------------------------------------------------

  /** The `cidr` route (the VIP's /32) in each of the tables. */
  async vipRoutes(routeTableIds: string[], cidr: string): Promise<VipRouteView[]> {
    const r = await this.send<any>(new DescribeRouteTablesCommand({ RouteTableIds: routeTableIds }), false);
    return routeTableIds.map((id) => {
      const table = (r.RouteTables ?? []).find((t: { RouteTableId?: string }) => t.RouteTableId === id);
      if (!table) throw new Error(`route table ${id} not found`);
      const route = (table.Routes ?? []).find((x: { DestinationCidrBlock?: string }) => x.DestinationCidrBlock === cidr);
      return { routeTableId: id, networkInterfaceId: route?.NetworkInterfaceId, present: route !== undefined, state: route?.State };
    });
  }

  /** The interfaces of this VPC that hold any of `ips` as a private address. */
  async interfacesHolding(ips: string[]): Promise<HolderView[]> {
    const r = await this.send<any>(
      new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'vpc-id', Values: [this.o.vpcId] }, { Name: 'addresses.private-ip-address', Values: ips }] }),
      false,
    );
    return (r.NetworkInterfaces ?? []).map((n: NetworkInterface) => ({
      eniId: n.NetworkInterfaceId!,
      instanceId: n.Attachment?.InstanceId,
      deviceIndex: n.Attachment?.DeviceIndex,
      privateIps: (n.PrivateIpAddresses ?? []).map((a) => a.PrivateIpAddress!).filter(Boolean),
    }));
  }

  /** Points `cidr` in the table at the interface: replaces the route, or creates it where there is none (either order converges). */
  async setRoute(routeTableId: string, cidr: string, eniId: string, exists: boolean): Promise<void> {
    const create = () => this.send(new CreateRouteCommand({ RouteTableId: routeTableId, DestinationCidrBlock: cidr, NetworkInterfaceId: eniId }), true);
    const replace = () => this.send(new ReplaceRouteCommand({ RouteTableId: routeTableId, DestinationCidrBlock: cidr, NetworkInterfaceId: eniId }), true);
    try {
      await (exists ? replace() : create());
    } catch (e) {
      const code = errorCode(e) ?? '';
      // Someone (an earlier run, a person) made or removed it since we looked.
      if (!exists && code === 'RouteAlreadyExists') return void (await replace());
      if (exists && (code === 'InvalidRoute.NotFound' || (code === 'InvalidParameterValue' && /no route/i.test((e as Error).message)))) return void (await create());
      throw e;
    }
  }

  async deleteRoute(routeTableId: string, cidr: string): Promise<void> {
    try {
      await this.send(new DeleteRouteCommand({ RouteTableId: routeTableId, DestinationCidrBlock: cidr }), true);
    } catch (e) {
      if (errorCode(e) === 'InvalidRoute.NotFound') return;
      throw e;
    }
  }

  async disassociateEip(associationId: string): Promise<void> {
    try {
      await this.send(new DisassociateAddressCommand({ AssociationId: associationId }), true);
    } catch (e) {
      if (isNotFound(e) || errorCode(e) === 'InvalidAssociationID.NotFound') return;
      throw e;
    }
  }
}
