/**
 * The eni strategy: the floating subnet + loxi-eni + EIP move, as LoxiLB does it, made idempotent.
 * It observes the floating subnets, the loxi-enis and the EIP through the adapter and runs one step
 * at a time; the decisions (plan, verify, teardown) are the pure EniPlanner's (./eni-plan.ts), which it extends.
 */
import type { Ec2Adapter } from '../aws/ec2.ts';
import { type Clock, pollUntil, sleepWithin } from '../clock.ts';
import { confirmSync } from './confirm-sync.ts';
import { CREATED, EniPlanner, type EniSnapshot, type EniState, type EniStep, eipOnEnis } from './eni-plan.ts';
import type { ApplyContext, ObserveScope, StepEffect, VipStrategy } from './strategy.ts';

export { CREATED, type EniSnapshot, type EniState, type EniStep, eipOnEnis, lowestFreeDeviceIndex } from './eni-plan.ts';

export interface EniStrategyOptions {
  cloudCidrBlock: string;
  vip: string;
  eipAllocationId: string;
  floatingRouteTableId: string;
  /** A non-forced detach that makes no progress for this long is forced (AWS's advice for stuck detaches). */
  stuckDetachMs: number;
  /** Reads whether an instance reports its session table in sync (fresh read, for confirm-sync). */
  readSessionsInSync: (instanceId: string) => Promise<boolean | undefined>;
  /** How long a planned move waits for the survivor to report in sync. */
  syncWaitMs: number;
}

/** When to first look after issuing a detach: it takes seconds on AWS even when forced (docs/aws.md). */
const DETACH_FIRST_LOOK_MS = 2000;
/**
 * A resource just created answers NotFound for a moment: AWS's advice is to wait "starting with a
 * couple of seconds" ("Eventual consistency in the Amazon EC2 API"). The first uses of a new ENI go
 * this long after its create answered, so that with the calls' own time they reach AWS about 2 s
 * after it; an early one is retried (with backoff) alone.
 */
const CREATED_FIRST_USE_MS = 1500;

/** The planner's decisions (inherited), plus what reads and changes AWS. */
export class EniStrategy extends EniPlanner implements VipStrategy<EniStep, EniState> {
  readonly name = 'floating-subnet-eni';
  readonly tornDown = 'no floating subnet, loxi-eni or EIP association left';
  private readonly ec2: Ec2Adapter;
  private readonly clock: Clock;
  private readonly o: EniStrategyOptions;

  constructor(ec2: Ec2Adapter, clock: Clock, options: EniStrategyOptions) {
    super(options);
    this.ec2 = ec2;
    this.clock = clock;
    this.o = options;
  }

  async observe(scope: ObserveScope, before?: EniSnapshot): Promise<EniState> {
    const o = this.o;
    // After the run's steps, the subnets are what their answers established (folded into `before`,
    // see StepEffect): only the ENIs, whose attach and EIP association complete on AWS's side, are read.
    if ((scope === 'settling' || scope === 'after-steps') && before) {
      const enis = await this.ec2.loxiEnis();
      return { subnets: before.subnets, enis, eip: eipOnEnis(enis, o.eipAllocationId, before.eip.publicIp) };
    }
    const [subnets, enis, address] = await Promise.all([
      // A move deletes the subnets it does not keep: their route table associations are read only
      // for status, and for the subnet the owner keeps by readForOwner (none in a failover).
      this.ec2.floatingSubnets(scope === 'status' ? o.floatingRouteTableId : undefined),
      this.ec2.loxiEnis(),
      // Status says where the EIP is even when it is on none of the loxi-enis: it reads the address.
      scope === 'status' ? this.ec2.eip(o.eipAllocationId) : undefined,
    ]);
    return { subnets, enis, eip: address ?? eipOnEnis(enis, o.eipAllocationId, before?.eip.publicIp) };
  }

  async readForOwner(s: EniSnapshot, owner: string): Promise<EniSnapshot> {
    const kept = this.keptSubnet(s, owner);
    if (!kept?.associationUnread) return s;
    const assoc = await this.ec2.routeTableAssociations(this.o.floatingRouteTableId);
    return { ...s, subnets: s.subnets.map(({ associationUnread: _, ...x }) => ({ ...x, routeTableAssociationId: assoc.get(x.id) })) };
  }

  async apply(step: EniStep, ctx: ApplyContext, created: Map<string, string>): Promise<StepEffect<EniState> | undefined | void> {
    const ref = (id: string) => {
      if (!id.startsWith('created:')) return id;
      const v = created.get(id);
      if (!v) throw new Error(`step "${step.describe}" needs ${id}, which no earlier step produced`);
      return v;
    };
    const { deadline } = ctx;
    // The first use of something this run just created waits until AWS most likely shows it.
    if ('justCreated' in step && step.justCreated) await sleepWithin(this.clock, CREATED_FIRST_USE_MS, deadline);
    switch (step.op) {
      case 'confirm-sync':
        return confirmSync(this.clock, this.o.readSessionsInSync, step.instanceId, this.o.syncWaitMs, deadline);
      case 'disassociate-eip':
        return this.ec2.disassociateEip(step.associationId);
      case 'detach-eni':
        return this.ec2.detachEni(step.attachmentId, step.force);
      case 'await-detached': {
        const started = this.clock.now();
        let forced = step.instanceImpaired;
        // A detach takes seconds even when forced: looking at once would only cost a call.
        await sleepWithin(this.clock, DETACH_FIRST_LOOK_MS, deadline);
        await pollUntil(this.clock, `wait for ${step.eniId} to detach`, deadline, async () => {
          await ctx.keepAlive();
          const e = await this.ec2.eni(step.eniId);
          if (!e || !e.attachment || e.attachment.status === 'detached' || e.status === 'available') return true;
          if (!forced && this.clock.now() - started >= this.o.stuckDetachMs) {
            forced = true;
            await ctx.fence();
            await this.ec2.detachEni(e.attachment.id, true);
          }
          return undefined;
        }, { baseMs: 500, maxMs: 1000 });
        return;
      }
      case 'delete-eni':
        if (step.afterDetach) await sleepWithin(this.clock, DETACH_FIRST_LOOK_MS, deadline);
        return this.ec2.deleteEni(step.eniId, deadline, ctx.keepAlive);
      case 'delete-subnet':
        await this.ec2.deleteSubnet(step.subnetId, deadline);
        return (s) => ({ ...s, subnets: s.subnets.filter((x) => x.id !== step.subnetId) });
      case 'create-subnet': {
        const id = await this.ec2.createSubnet(step.az, step.cidr, ctx.epoch, deadline);
        created.set(CREATED.subnet, id);
        return (s) => ({ ...s, subnets: [...s.subnets.filter((x) => x.id !== id), { id, az: step.az, cidr: step.cidr, routeTableAssociationId: undefined, epoch: ctx.epoch }] });
      }
      case 'associate-route-table': {
        const subnetId = ref(step.subnetId);
        const associationId = await this.ec2.associateRouteTable(this.o.floatingRouteTableId, subnetId, deadline);
        return (s) => ({ ...s, subnets: s.subnets.map((x) => (x.id === subnetId ? { ...x, routeTableAssociationId: associationId } : x)) });
      }
      case 'create-eni':
        created.set(
          CREATED.eni,
          await this.ec2.createEni({ subnetId: ref(step.subnetId), privateIp: this.o.vip, securityGroupIds: step.securityGroupIds, epoch: ctx.epoch, az: step.az }, deadline),
        );
        return;
      case 'disable-source-dest-check':
        return this.ec2.disableSourceDestCheck(ref(step.eniId), deadline);
      case 'attach-eni':
        return this.ec2.attachEni(ref(step.eniId), step.instanceId, step.deviceIndex, deadline);
      case 'associate-eip':
        return this.ec2.associateEip(this.o.eipAllocationId, ref(step.eniId), this.o.vip, deadline);
    }
  }
}
