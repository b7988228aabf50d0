/**
 * Several VIP groups in one run: where each group's owner is, where the placement (./placement.ts)
 * puts the groups whose owner is gone, and each affected group's own run (its own lease, fencing and
 * resources: ./orchestrator.ts), all at once — EC2's request limiter paces their calls.
 *
 * Level-triggered: any trigger (one slot's alarm, the fast path from one instance, the schedule)
 * makes the run look at every group, and move every group whose owner is unhealthy, not ready, or
 * the trigger's suspect — an AZ outage moves all the groups it held in one run, spread over the
 * survivors. A group whose lease a live run holds is that run's (its run here waits for the lease,
 * then finds the group in place). Groups whose owner is fine are left alone by automatic triggers;
 * a reconcile (schedule, deploy, operator) runs every group, as without groups.
 */
import { healthOf } from './decide.ts';
import type { Command } from './events.ts';
import type { Placed, Result } from './orchestrator.ts';
import { type Placement, type PlacementGroup, placeGroups } from './placement.ts';
import type { InstanceView } from './snapshot.ts';
import type { Clock } from './clock.ts';

/** One group as the coordinator drives it. */
export interface GroupRunner {
  name: string;
  /** The slot (instance index) the group returns to with failback; spreads the first placement. */
  preferredSlot?: number;
  orchestrator: {
    owner(instances: InstanceView[], now: number): Promise<string | undefined>;
    run(command: Command, deadline: number, placement?: Placed): Promise<Result>;
  };
}

export interface GroupsDeps {
  groups: GroupRunner[];
  observeInstances: (now: number) => Promise<InstanceView[]>;
  clock: Clock;
  staleMs: number;
  /** Group runs at once (default: all; EC2's request limiter paces their calls). The benchmark's baseline runs one at a time. */
  concurrency?: number;
  /**
   * eni: how many interfaces each instance type can attach. A slot then holds at most that many
   * groups beyond its other interfaces (its primary, its slot interface); unset: no limit (route).
   */
  interfaceLimits?: (types: string[]) => Promise<Map<string, number>>;
  /** `failback: preferred`: a reconcile returns groups to their preferred slots (within the steady moves). */
  failback?: boolean;
  /** Moves of groups whose owner is fine (rebalance, failback) one reconcile makes at most (default 1): never a stampede. */
  steadyMovesPerRun?: number;
}

export interface GroupOutcome {
  group: string;
  /** Where the placement put it this run (absent: it stayed, or was not run). */
  placedTo?: string;
  result?: Result;
}

export interface GroupsResult {
  ok: boolean;
  command: Command['kind'];
  outcome: 'groups';
  reason: string;
  groups: GroupOutcome[];
  placement: Pick<Placement, 'bound' | 'unplaced'>;
  durationMs: number;
}

/** The instance a trigger reports failed: its groups move (as decide.ts believes a suspect). */
function suspectOf(command: Command, instances: InstanceView[]): string | undefined {
  if (command.kind === 'alarm' && command.state === 'ALARM') return instances.find((i) => i.index === command.instanceIndex)?.id;
  if (command.kind === 'failover' && command.via !== 'manual' && command.reason !== 'peer-backup-lost') return command.from;
  return undefined;
}

export class GroupsCoordinator {
  private readonly d: GroupsDeps;

  constructor(deps: GroupsDeps) {
    if (new Set(deps.groups.map((g) => g.name)).size !== deps.groups.length) throw new Error('group names must be distinct');
    this.d = deps;
  }

  /** eni: groups each slot can hold — its type's interface limit less the interfaces that are not a group's. */
  private async capacity(instances: InstanceView[], owners: (string | undefined)[]): Promise<Map<number, number> | undefined> {
    if (!this.d.interfaceLimits) return undefined;
    const limits = await this.d.interfaceLimits(instances.map((i) => i.instanceType).filter((t): t is string => t !== undefined));
    const out = new Map<number, number>();
    for (const i of instances) {
      const limit = i.instanceType ? limits.get(i.instanceType) : undefined;
      if (limit === undefined) continue;
      const held = owners.filter((o) => o === i.id).length;
      out.set(i.index, Math.max(0, limit - (i.usedDeviceIndexes.length - held)));
    }
    return out;
  }

  async run(command: Command, deadline: number): Promise<GroupsResult> {
    const t0 = this.d.clock.now();
    const finish = (r: Omit<GroupsResult, 'command' | 'outcome' | 'durationMs'>): GroupsResult => ({ command: command.kind, outcome: 'groups', ...r, durationMs: this.d.clock.now() - t0 });
    if (command.kind === 'status' || command.kind === 'plan' || command.kind === 'teardown' || (command.kind === 'failover' && command.via === 'manual')) {
      // Not a placement question: each group answers (an operator's move names its target).
      const groups = await Promise.all(this.d.groups.map(async (g) => ({ group: g.name, result: await g.orchestrator.run(command, deadline) })));
      return finish({ ok: groups.every((g) => g.result.ok), reason: summary(groups), groups, placement: { bound: 0, unplaced: [] } });
    }

    const now = this.d.clock.now();
    const instances = await this.d.observeInstances(now);
    const owners = await Promise.all(this.d.groups.map((g) => g.orchestrator.owner(instances, now)));
    const byId = new Map(instances.map((i) => [i.id, i]));
    const suspect = suspectOf(command, instances);
    const slots = instances.map((i) => ({ slot: i.index, az: i.az, healthy: healthOf(i, now, this.d.staleMs).healthy && i.id !== suspect, ready: i.ready !== false }));
    const groups: PlacementGroup[] = this.d.groups.map((g, k) => {
      const owner = owners[k] === undefined ? undefined : byId.get(owners[k]!);
      return { group: g.name, owner: owner?.index, ...(owner ? { lastOwnerAz: owner.az } : {}), ...(g.preferredSlot !== undefined ? { preferredSlot: g.preferredSlot } : {}) };
    });
    // A trigger rescues only; a reconcile (the schedule's, every few minutes) also makes at most
    // `steadyMovesPerRun` moves of groups whose owner is fine: off a slot above the spread bound (slots
    // came back), and with failback to a group's preferred slot — each a planned move, outside the hold-down.
    const capacity = await this.capacity(instances, owners);
    const steady = command.kind === 'reconcile';
    const placement = placeGroups(groups, slots, { maxMovesPerRun: steady ? (this.d.steadyMovesPerRun ?? 1) : 0, failback: steady && this.d.failback === true, ...(capacity ? { capacity } : {}) });
    const instanceAt = new Map(instances.map((i) => [i.index, i.id]));
    const target = new Map(placement.moves.map((m) => [m.group, instanceAt.get(m.to)!]));
    const steadyMove = new Map(placement.moves.filter((m) => m.why !== 'owner-gone').map((m) => [m.group, m.why as 'rebalance' | 'failback']));
    // A reconcile runs every group (convergence repair, as without groups); a trigger only the moving ones.
    const runs = this.d.groups.filter((g) => command.kind === 'reconcile' || target.has(g.name));
    const runOne = async (g: GroupRunner): Promise<GroupOutcome> => {
      const placedTo = target.get(g.name);
      const why = steadyMove.get(g.name);
      const result = await g.orchestrator.run(command, deadline, placedTo ? { placedTo, ...(why ? { steadyMove: why } : {}) } : {});
      return { group: g.name, ...(placedTo ? { placedTo } : {}), result };
    };
    const outcomes = await inBatches(runs, this.d.concurrency ?? runs.length, runOne);
    const left = this.d.groups.length - runs.length;
    const reason = `${summary(outcomes)}${left ? `; ${left} group${left === 1 ? '' : 's'} untouched (owner fine)` : ''}${placement.unplaced.length ? `; unplaced: ${placement.unplaced.map((u) => `${u.group} (${u.why})`).join(', ')}` : ''}`;
    // A group that needs an owner and got none is not ok: the trigger is retried, and operators hear of it.
    return finish({ ok: placement.unplaced.length === 0 && outcomes.every((o) => o.result?.ok !== false), reason, groups: outcomes, placement: { bound: placement.bound, unplaced: placement.unplaced } });
  }
}

/** Runs `fn` over `items`, at most `n` at once, keeping their order. */
async function inBatches<T, R>(items: T[], n: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const k = next++;
      out[k] = await fn(items[k]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
  return out;
}

function summary(groups: GroupOutcome[]): string {
  return groups.map((g) => `${g.group}: ${g.result ? `${g.result.outcome}${g.result.owner ? ` on ${g.result.owner}` : ''}` : 'not run'}`).join('; ') || 'no group';
}

/**
 * The coordinator's runs as one result, for the callers that take one (a terminating slot's hook, the
 * rollout's status): ok when every group's run is; the first failing group's outcome and owners
 * otherwise; the health of the first group that reported it.
 */
export function asOneResult(g: GroupsResult): Result {
  const results = g.groups.map((x) => x.result).filter((r): r is Result => r !== undefined);
  const failed = results.find((r) => !r.ok);
  const moved = results.some((r) => r.moved);
  const sum = (k: 'ec2Calls' | 'ec2Mutations') => results.reduce((n, r) => n + r[k], 0);
  const health = results.find((r) => r.health)?.health;
  return {
    ok: g.ok,
    command: g.command,
    outcome: failed?.outcome ?? (g.command === 'status' ? 'status' : moved ? 'converged' : 'no-op'),
    reason: g.reason,
    ...(failed?.owner ? { owner: failed.owner } : {}),
    ...(failed?.previousOwner ? { previousOwner: failed.previousOwner } : {}),
    moved,
    steps: [],
    phases: {},
    durationMs: g.durationMs,
    ec2Calls: sum('ec2Calls'),
    ec2Mutations: sum('ec2Mutations'),
    sequentialMutations: Math.max(0, ...results.map((r) => r.sequentialMutations)),
    ...(health ? { health } : {}),
  };
}
