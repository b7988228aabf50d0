/**
 * The route strategy's decisions, pure (tested alone: test/lambda/route-plan.test.ts). Each LB
 * instance holds an *ingress IP* (a secondary private address on its primary interface, in its own
 * AZ's subnet); the private VIP is an overlay address outside the VPC's CIDRs, reached through a
 * /32 route to the owner's interface in every listed route table. A move is one concurrent wave:
 * the EIP to the survivor's ingress IP and the VIP's /32 to its interface in each table; after a
 * crash between any two calls the next run plans only what is left.
 *
 * End state for owner T: the EIP associated with T's ingress IP on T's primary interface, and in
 * every listed table the VIP's /32 pointing at that interface.
 */
import type { HolderView, VipRouteView } from '../aws/ec2.ts';
import type { EipView } from '../snapshot.ts';
import type { PlanOptions, SnapshotOf, StepBase } from './strategy.ts';

export type RouteStep = StepBase &
  (
    | { op: 'confirm-sync'; instanceId: string }
    | { op: 'associate-eip'; eniId: string; privateIp: string }
    | { op: 'set-route'; routeTableId: string; eniId: string; exists: boolean }
    | { op: 'delete-route'; routeTableId: string }
    | { op: 'disassociate-eip'; associationId: string }
  );

/** What the route strategy moves: the EIP's association and the VIP's routes; and where each ingress IP is. */
export interface RouteState {
  eip: EipView;
  routes: VipRouteView[];
  /** The interfaces holding the ingress IPs (primary interfaces of the LB instances). */
  holders: HolderView[];
}
export type RouteSnapshot = SnapshotOf<RouteState>;

export interface RoutePlanOptions {
  vip: string;
  eipAllocationId: string;
  /** Ingress IP of each LB instance, by instance index. */
  ingressIps: Record<number, string>;
}

/** Where an instance receives the EIP's traffic: its ingress IP, on the interface that holds it. */
interface Ingress {
  ip: string;
  eniId: string;
}

export class RoutePlanner {
  /** What the planner knows of the deployment. */
  protected readonly deployment: RoutePlanOptions;
  /** The VIP's route destination. */
  protected readonly cidr: string;

  constructor(options: RoutePlanOptions) {
    this.deployment = options;
    this.cidr = `${options.vip}/32`;
  }

  /** It writes no tagged resources: the lease's conditional writes alone fence it. */
  epochs(): number[] {
    return [];
  }

  private ingressIpOf(s: RouteSnapshot, instanceId: string): string | undefined {
    const inst = s.instances.find((i) => i.id === instanceId);
    return inst ? this.deployment.ingressIps[inst.index] : undefined;
  }

  private ingressOf(s: RouteSnapshot, instanceId: string): Ingress | undefined {
    const ip = this.ingressIpOf(s, instanceId);
    const holder = ip ? s.holders.find((h) => h.instanceId === instanceId && h.privateIps.includes(ip)) : undefined;
    return ip && holder ? { ip, eniId: holder.eniId } : undefined;
  }

  currentOwner(s: RouteSnapshot): string | undefined {
    // The EIP decides where clients' packets go: its owner is the instance whose ingress IP it is on.
    const byEip = s.instances.find((i) => {
      const g = this.ingressOf(s, i.id);
      return g && s.eip.networkInterfaceId === g.eniId && s.eip.privateIp === g.ip;
    });
    if (byEip) return byEip.id;
    // A run that crashed after the routes and before the EIP: the routes' interface, when they agree.
    const targets = new Set(s.routes.filter((r) => r.present).map((r) => r.networkInterfaceId));
    if (targets.size !== 1) return undefined;
    const [eni] = [...targets];
    return s.holders.find((h) => h.eniId === eni)?.instanceId;
  }

  plan(s: RouteSnapshot, owner: string, opts: PlanOptions): RouteStep[] {
    const target = this.ingressOf(s, owner);
    if (!target) throw new Error(`cannot plan for ${owner}: its ingress IP ${this.ingressIpOf(s, owner) ?? '(none configured)'} is on none of its interfaces`);
    // One wave: the EIP and every route, concurrently.
    const moves: RouteStep[] = [];
    if (s.eip.networkInterfaceId !== target.eniId || s.eip.privateIp !== target.ip) {
      moves.push({ op: 'associate-eip', eniId: target.eniId, privateIp: target.ip, phase: 'eip', mutates: true, group: 'move', describe: `associate EIP ${s.eip.publicIp ?? this.deployment.eipAllocationId} with ${target.ip} on ${target.eniId}` });
    }
    for (const r of s.routes) {
      if (r.present && r.networkInterfaceId === target.eniId && r.state !== 'blackhole') continue;
      moves.push({ op: 'set-route', routeTableId: r.routeTableId, eniId: target.eniId, exists: r.present, phase: 'route', mutates: true, group: 'move', describe: `${r.present ? 'replace' : 'create'} route ${this.cidr} → ${target.eniId} in ${r.routeTableId}` });
    }
    if (!moves.length || !opts.confirmSync) return moves;
    return [{ op: 'confirm-sync', instanceId: owner, phase: 'sync', mutates: false, describe: `confirm ${owner} reports its sessions in sync` }, ...moves];
  }

  verify(s: RouteSnapshot, owner: string): string[] {
    const target = this.ingressOf(s, owner);
    if (!target) return [`${owner}'s ingress IP ${this.ingressIpOf(s, owner) ?? '(none configured)'} is on none of its interfaces`];
    const problems: string[] = [];
    if (s.eip.networkInterfaceId !== target.eniId || s.eip.privateIp !== target.ip) {
      problems.push(`EIP ${s.eip.publicIp ?? this.deployment.eipAllocationId} is on ${s.eip.privateIp ?? 'nothing'} (${s.eip.networkInterfaceId ?? '-'}), not ${target.ip} on ${target.eniId}`);
    }
    for (const r of s.routes) {
      if (!r.present) problems.push(`no route ${this.cidr} in ${r.routeTableId}`);
      else if (r.networkInterfaceId !== target.eniId) problems.push(`route ${this.cidr} in ${r.routeTableId} → ${r.networkInterfaceId ?? 'not an interface'}, not ${target.eniId}`);
      else if (r.state === 'blackhole') problems.push(`route ${this.cidr} in ${r.routeTableId} is a blackhole`);
    }
    return problems;
  }

  planTeardown(s: RouteSnapshot): RouteStep[] {
    const steps: RouteStep[] = [];
    const ours = new Set(s.holders.map((h) => h.eniId));
    const ingress = new Set(Object.values(this.deployment.ingressIps));
    if (s.eip.associationId && s.eip.networkInterfaceId && ours.has(s.eip.networkInterfaceId) && ingress.has(s.eip.privateIp ?? '')) {
      steps.push({ op: 'disassociate-eip', associationId: s.eip.associationId, phase: 'eip', mutates: true, group: 'teardown', describe: `disassociate EIP ${s.eip.publicIp ?? this.deployment.eipAllocationId}` });
    }
    for (const r of s.routes.filter((x) => x.present)) {
      steps.push({ op: 'delete-route', routeTableId: r.routeTableId, phase: 'route', mutates: true, group: 'teardown', describe: `delete route ${this.cidr} in ${r.routeTableId}` });
    }
    return steps;
  }
}
