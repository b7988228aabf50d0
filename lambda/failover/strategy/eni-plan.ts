/**
 * The eni strategy's decisions, pure: from an observed snapshot to the steps that take it to "VIP on
 * owner" (every half-done state a crash can leave plans to the same end state), what is wrong with
 * an end state, what teardown removes. Tested alone (test/lambda/eni-plan.test.ts); ./eni.ts runs
 * the steps.
 *
 * End state for owner T: exactly one floating subnet (the cloud CIDR block, in T's AZ,
 * associated with the prepared route table), exactly one loxi-eni in it carrying the VIP
 * with source/dest check off, attached to T, and the EIP associated with the VIP on it.
 */
import type { EipView, FloatingSubnetView, InstanceView, LoxiEniView } from '../snapshot.ts';
import type { PlanOptions, SnapshotOf, StepBase } from './strategy.ts';

/** What the eni strategy moves: the floating subnets, the loxi-enis and the EIP. */
export interface EniState {
  subnets: FloatingSubnetView[];
  enis: LoxiEniView[];
  eip: EipView;
}
export type EniSnapshot = SnapshotOf<EniState>;

/**
 * Where the EIP is, as far as a failover needs it: on one of the loxi-enis (read from their
 * association, no DescribeAddresses call), or on none of them — then it is associated anew with
 * AllowReassociation wherever it is. `status` reads the address itself.
 */
export function eipOnEnis(enis: LoxiEniView[], allocationId: string, publicIp: string | undefined): EipView {
  const on = enis.find((e) => e.association?.allocationId === allocationId);
  return on
    ? { allocationId, publicIp: on.association!.publicIp ?? publicIp, associationId: on.association!.associationId, networkInterfaceId: on.id, privateIp: on.privateIp }
    : { allocationId, publicIp, associationId: undefined, networkInterfaceId: undefined, privateIp: undefined };
}

/** A reference to an id produced earlier in the same run (created subnet or ENI). */
export const CREATED = { subnet: 'created:subnet', eni: 'created:eni' } as const;

export type EniStep = StepBase &
  (
    | { op: 'confirm-sync'; instanceId: string }
    | { op: 'disassociate-eip'; associationId: string }
    | { op: 'detach-eni'; eniId: string; attachmentId: string; instanceId: string; force: boolean }
    | { op: 'await-detached'; eniId: string; instanceImpaired: boolean }
    | { op: 'delete-eni'; eniId: string; afterDetach?: boolean }
    | { op: 'delete-subnet'; subnetId: string }
    | { op: 'create-subnet'; az: string; cidr: string }
    | { op: 'associate-route-table'; subnetId: string; justCreated?: boolean }
    | { op: 'create-eni'; subnetId: string; az: string; securityGroupIds: string[] }
    | { op: 'disable-source-dest-check'; eniId: string }
    | { op: 'attach-eni'; eniId: string; instanceId: string; deviceIndex: number; justCreated?: boolean }
    | { op: 'associate-eip'; eniId: string; justCreated?: boolean }
  );

const impaired = (i: InstanceView | undefined) => !i || i.state !== 'running' || i.statusOk === false;

export function lowestFreeDeviceIndex(used: number[]): number {
  let d = 1;
  while (used.includes(d)) d++;
  return d;
}

/** What the planner needs to know of the deployment. */
export interface EniPlanOptions {
  cloudCidrBlock: string;
  vip: string;
  eipAllocationId: string;
  floatingRouteTableId: string;
}

export class EniPlanner {
  /** What the planner knows of the deployment. */
  protected readonly deployment: EniPlanOptions;

  constructor(options: EniPlanOptions) {
    this.deployment = options;
  }

  epochs(s: EniSnapshot): number[] {
    return [...s.subnets, ...s.enis].map((r) => r.epoch).filter((e): e is number => e !== undefined);
  }

  currentOwner(s: EniSnapshot): string | undefined {
    const attached = s.enis.filter((e) => e.privateIp === this.deployment.vip && e.attachment && e.attachment.status !== 'detaching' && e.attachment.status !== 'detached');
    return attached.length === 1 ? attached[0]!.attachment!.instanceId : undefined;
  }

  /** The floating subnet a move to `owner` keeps: the one in its AZ holding the block, if any. */
  keptSubnet(s: EniSnapshot, owner: string): FloatingSubnetView | undefined {
    const target = s.instances.find((i) => i.id === owner);
    return target ? s.subnets.find((sub) => sub.az === target.az && sub.cidr === this.deployment.cloudCidrBlock) : undefined;
  }

  plan(s: EniSnapshot, owner: string, opts: PlanOptions): EniStep[] {
    const target = s.instances.find((i) => i.id === owner);
    if (!target) throw new Error(`cannot plan for ${owner}: not an LB instance of this deployment`);
    const byId = new Map(s.instances.map((i) => [i.id, i]));
    const steps: EniStep[] = [];

    if (opts.confirmSync) {
      steps.push({ op: 'confirm-sync', instanceId: owner, phase: 'sync', mutates: false, describe: `confirm ${owner} reports its session table in sync` });
    }

    const keeperSubnet = this.keptSubnet(s, owner);
    if (keeperSubnet?.associationUnread) throw new Error(`cannot plan for ${owner}: the route table association of ${keeperSubnet.id} was not read (readForOwner)`);
    // An ENI on its way off an instance (detaching) is never kept: it is re-created rather than re-attached.
    const live = (e: { attachment?: { status: string } }) => (e.attachment && e.attachment.status !== 'detached' && e.attachment.status !== 'detaching' ? e.attachment : undefined);
    const keeperEni = keeperSubnet
      ? s.enis.find((e) => e.subnetId === keeperSubnet.id && e.privateIp === this.deployment.vip && (e.attachment?.status !== 'detaching') && (!live(e) || e.attachment!.instanceId === owner))
      : undefined;

    for (const e of s.enis.filter((x) => x !== keeperEni)) {
      const a = e.attachment;
      if (a && a.status !== 'detached') {
        const oldOwner = byId.get(a.instanceId);
        const force = opts.forceDetach || impaired(oldOwner);
        if (a.status !== 'detaching') {
          steps.push({
            op: 'detach-eni',
            eniId: e.id,
            attachmentId: a.id,
            instanceId: a.instanceId,
            force,
            phase: 'detach',
            mutates: true,
            describe: `${force ? 'force-' : ''}detach ${e.id} from ${a.instanceId}`,
          });
        }
        // A forced detach is not stuck: deleting the ENI (retried while AWS says it is in use) is
        // the wait, one call per look instead of a describe and then the delete.
        if (!force) steps.push({ op: 'await-detached', eniId: e.id, instanceImpaired: force, phase: 'detach', mutates: false, describe: `wait until ${e.id} is detached` });
        steps.push({ op: 'delete-eni', eniId: e.id, afterDetach: force, phase: 'detach', mutates: true, describe: `delete ${e.id}${force ? ' once detached' : ''}` });
        continue;
      }
      steps.push({ op: 'delete-eni', eniId: e.id, phase: 'detach', mutates: true, describe: `delete ${e.id}` });
    }

    for (const sub of s.subnets.filter((x) => x !== keeperSubnet)) {
      steps.push({ op: 'delete-subnet', subnetId: sub.id, phase: 'subnet', mutates: true, describe: `delete floating subnet ${sub.id} (${sub.az})` });
    }

    const subnetId = keeperSubnet?.id ?? CREATED.subnet;
    if (!keeperSubnet) {
      steps.push({ op: 'create-subnet', az: target.az, cidr: this.deployment.cloudCidrBlock, phase: 'subnet', mutates: true, describe: `create floating subnet ${this.deployment.cloudCidrBlock} in ${target.az}` });
    }
    const eniId = keeperEni?.id ?? CREATED.eni;
    if (!keeperEni) {
      steps.push({ op: 'create-eni', subnetId, az: target.az, securityGroupIds: target.securityGroupIds, phase: 'eni', mutates: true, describe: `create loxi-eni with ${this.deployment.vip}` });
    }
    // The first uses of a new ENI go together, when AWS has most likely made it visible (./eni.ts
    // waits before them: AWS's advice for eventual consistency starts with a couple of seconds): the
    // attach and the EIP, which put traffic on the survivor, and the subnet's route table. A use that
    // comes too early is retried alone. Source/dest check goes after them: the ENI is known to be
    // visible by then (no NotFound to retry), and the attach is still completing on AWS's side.
    const firstUse = 'first-use';
    const justCreated = !keeperEni;
    if (!keeperSubnet?.routeTableAssociationId) {
      steps.push({ op: 'associate-route-table', subnetId, justCreated: !keeperSubnet, phase: 'subnet', mutates: true, group: firstUse, describe: `associate route table ${this.deployment.floatingRouteTableId} with the floating subnet` });
    }
    if (!keeperEni || !live(keeperEni)) {
      const deviceIndex = lowestFreeDeviceIndex(target.usedDeviceIndexes);
      steps.push({ op: 'attach-eni', eniId, instanceId: owner, deviceIndex, justCreated, phase: 'attach', mutates: true, group: firstUse, describe: `attach loxi-eni to ${owner} at device index ${deviceIndex}` });
    }
    const eipOk = keeperEni !== undefined && s.eip.networkInterfaceId === keeperEni.id && s.eip.privateIp === this.deployment.vip;
    if (!eipOk) {
      steps.push({ op: 'associate-eip', eniId, justCreated, phase: 'eip', mutates: true, group: firstUse, describe: `associate EIP ${s.eip.publicIp ?? this.deployment.eipAllocationId} with ${this.deployment.vip} on loxi-eni` });
    }
    if (!keeperEni || keeperEni.sourceDestCheck) {
      steps.push({ op: 'disable-source-dest-check', eniId, phase: 'eni', mutates: true, describe: 'turn off source/dest check on loxi-eni' });
    }
    // No step waits for the attach to complete: reading the result back (verify) is that wait.
    return steps;
  }

  planTeardown(s: EniSnapshot): EniStep[] {
    const steps: EniStep[] = [];
    const ourEnis = new Set(s.enis.map((e) => e.id));
    if (s.eip.associationId && s.eip.networkInterfaceId && ourEnis.has(s.eip.networkInterfaceId)) {
      steps.push({ op: 'disassociate-eip', associationId: s.eip.associationId, phase: 'eip', mutates: true, describe: `disassociate EIP ${s.eip.publicIp ?? this.deployment.eipAllocationId}` });
    }
    for (const e of s.enis) {
      if (e.attachment && e.attachment.status !== 'detached') {
        if (e.attachment.status !== 'detaching') {
          steps.push({ op: 'detach-eni', eniId: e.id, attachmentId: e.attachment.id, instanceId: e.attachment.instanceId, force: true, phase: 'detach', mutates: true, describe: `force-detach ${e.id}` });
        }
        steps.push({ op: 'await-detached', eniId: e.id, instanceImpaired: true, phase: 'detach', mutates: false, describe: `wait until ${e.id} is detached` });
      }
      steps.push({ op: 'delete-eni', eniId: e.id, phase: 'detach', mutates: true, describe: `delete ${e.id}` });
    }
    for (const sub of s.subnets) steps.push({ op: 'delete-subnet', subnetId: sub.id, phase: 'subnet', mutates: true, describe: `delete floating subnet ${sub.id}` });
    return steps;
  }

  /** True when the one thing missing is an attach AWS is still completing ("attaching" to the owner). */
  settling(s: EniSnapshot, owner: string): boolean {
    const eni = s.enis.length === 1 ? s.enis[0]! : undefined;
    if (!eni || eni.attachment?.instanceId !== owner || eni.attachment.status !== 'attaching') return false;
    return this.verify({ ...s, enis: [{ ...eni, attachment: { ...eni.attachment, status: 'attached' } }] }, owner).length === 0;
  }

  verify(s: EniSnapshot, owner: string): string[] {
    const problems: string[] = [];
    const target = s.instances.find((i) => i.id === owner);
    if (s.subnets.length !== 1) problems.push(`expected one floating subnet, found ${s.subnets.length}`);
    const sub = s.subnets[0];
    if (sub && target && sub.az !== target.az) problems.push(`floating subnet ${sub.id} is in ${sub.az}, owner is in ${target.az}`);
    if (sub?.associationUnread) problems.push(`floating subnet ${sub.id}: its route table association was not read`);
    else if (sub && !sub.routeTableAssociationId) problems.push(`floating subnet ${sub.id} is not associated with the floating route table`);
    if (s.enis.length !== 1) problems.push(`expected one loxi-eni, found ${s.enis.length}`);
    const eni = s.enis[0];
    if (eni) {
      if (eni.privateIp !== this.deployment.vip) problems.push(`loxi-eni ${eni.id} carries ${eni.privateIp}, not ${this.deployment.vip}`);
      if (eni.attachment?.instanceId !== owner || eni.attachment.status !== 'attached') problems.push(`loxi-eni ${eni.id} is not attached to ${owner}`);
      if (eni.sourceDestCheck) problems.push(`loxi-eni ${eni.id} has source/dest check on`);
      if (sub && eni.subnetId !== sub.id) problems.push(`loxi-eni ${eni.id} is not in the floating subnet`);
      if (s.eip.networkInterfaceId !== eni.id || s.eip.privateIp !== this.deployment.vip) problems.push(`EIP ${s.eip.publicIp ?? this.deployment.eipAllocationId} is not associated with ${this.deployment.vip} on ${eni.id}`);
    }
    return problems;
  }
}
