/**
 * The `route` strategy: nothing is created, deleted or detached. It observes the EIP, the VIP's
 * routes in the listed tables and the interfaces holding the ingress IPs, and runs each step of the
 * one wave the pure RoutePlanner (./route-plan.ts), which it extends, decides.
 */
import type { Ec2Adapter } from '../aws/ec2.ts';
import type { Clock } from '../clock.ts';
import { confirmSync } from './confirm-sync.ts';
import { RoutePlanner, type RouteSnapshot, type RouteState, type RouteStep } from './route-plan.ts';
import type { ApplyContext, ObserveScope, VipStrategy } from './strategy.ts';

export type { RouteSnapshot, RouteState, RouteStep } from './route-plan.ts';

export interface RouteStrategyOptions {
  vip: string;
  eipAllocationId: string;
  /** Route tables that must reach the VIP (the EKS nodes' subnets' and the LB subnets'). */
  routeTableIds: string[];
  /** Ingress IP of each LB instance, by instance index. */
  ingressIps: Record<number, string>;
  readSessionsInSync: (instanceId: string) => Promise<boolean | undefined>;
  syncWaitMs: number;
}

/** The planner's decisions (inherited), plus what reads and changes AWS. */
export class RouteStrategy extends RoutePlanner implements VipStrategy<RouteStep, RouteState> {
  readonly name = 'overlay-route';
  readonly tornDown = "no route to the VIP and no EIP association on an ingress IP left";
  private readonly ec2: Ec2Adapter;
  private readonly clock: Clock;
  private readonly o: RouteStrategyOptions;

  constructor(ec2: Ec2Adapter, clock: Clock, options: RouteStrategyOptions) {
    super(options);
    this.ec2 = ec2;
    this.clock = clock;
    this.o = options;
  }

  async observe(scope: ObserveScope, before?: RouteSnapshot): Promise<RouteState> {
    const ips = Object.values(this.o.ingressIps);
    const [eip, routes, holders] = await Promise.all([
      this.ec2.eip(this.o.eipAllocationId),
      this.ec2.vipRoutes(this.o.routeTableIds, this.cidr),
      // Which interface holds which ingress IP does not change during a run.
      before && (scope === 'after-steps' || scope === 'settling') ? before.holders : this.ec2.interfacesHolding(ips),
    ]);
    return { eip, routes, holders };
  }

  async apply(step: RouteStep, ctx: ApplyContext): Promise<void> {
    switch (step.op) {
      case 'confirm-sync':
        return confirmSync(this.clock, this.o.readSessionsInSync, step.instanceId, this.o.syncWaitMs, ctx.deadline);
      case 'associate-eip':
        return this.ec2.associateEip(this.o.eipAllocationId, step.eniId, step.privateIp, ctx.deadline);
      case 'set-route':
        return this.ec2.setRoute(step.routeTableId, this.cidr, step.eniId, step.exists);
      case 'delete-route':
        return this.ec2.deleteRoute(step.routeTableId, this.cidr);
      case 'disassociate-eip':
        return this.ec2.disassociateEip(step.associationId);
    }
  }
}
