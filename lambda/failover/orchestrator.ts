/**
 * One command, start to finish: lease → observe → decide → plan → apply (fenced) → verify,
 * looping observe/plan/apply until the observed state verifies or the deadline passes.
 */
import { randomUUID } from 'node:crypto';
import { HEARTBEAT_STALE_SECONDS } from '../../lib/contract.ts';
import { type Clock, DeadlineExceededError } from './clock.ts';
import { decide, type Decision, type Health, healthOf, type Hints, type Policy } from './decide.ts';
import type { Command } from './events.ts';
import { type Lease, LeaseLostError } from './lease.ts';
import { LeaseKeeper } from './lease-keeper.ts';
import type { InstanceView, LeaseView } from './snapshot.ts';
import type { ObserveScope, SnapshotOf, StepBase, StepEffect, StepTiming, VipStrategy } from './strategy/strategy.ts';


/** Where the placement over VIP groups puts a group this run (./groups.ts). */
export interface Placed {
  placedTo?: string;
  steadyMove?: 'rebalance' | 'failback';
}

export type Outcome =
  | 'converged'
  | 'no-op'
  | 'superseded'
  | 'no-healthy-instance'
  | 'rejected'
  | 'failed'
  | 'timed-out'
  | 'planned'
  | 'status'
  | 'torn-down';

export interface Result {
  ok: boolean;
  command: Command['kind'];
  outcome: Outcome;
  reason: string;
  owner?: string;
  previousOwner?: string;
  moved: boolean;
  epoch?: number;
  plan?: string[];
  steps: StepTiming[];
  phases: Record<string, number>;
  durationMs: number;
  ec2Calls: number;
  ec2Mutations: number;
  /** Waves of mutations that had to run one after another (concurrent ones count once). */
  sequentialMutations: number;
  health?: Health[];
  lease?: LeaseView;
  /** How long the run waited for the lease another run held (absent when it took it at once). */
  leaseWaitMs?: number;
  problems?: string[];
  error?: string;
  /** The owner the VIP left because its peer could not reach it (the fast path), and when: unhealthy until it beats after. */
  peerLost?: { instanceId: string; at: number };
}

interface Fencing {
  holder: string;
  fence(): Promise<void>;
  keepAlive(): Promise<void>;
}

export interface Notifier {
  started(info: { command: Command; from?: string; to: string; reason: string; epoch: number }): Promise<void>;
  finished(result: Result): Promise<void>;
}

/** Counts the EC2 calls made (for the result): whatever adapter the strategy uses. */
export interface CallCounter {
  readonly calls: number;
  readonly mutations: number;
}

export interface OrchestratorDeps<Step extends StepBase, State> {
  calls: CallCounter;
  lease: Lease;
  /** How often a held lease is renewed (default LEASE_RENEW_MS; a third of the lease's lifetime or less). */
  leaseRenewMs?: number;
  strategy: VipStrategy<Step, State>;
  /** The LB instances now (EC2 state, status checks, heartbeats): what every strategy's decision needs. */
  observeInstances: (now: number) => Promise<InstanceView[]>;
  notifier: Notifier;
  clock: Clock;
  policy: Omit<Policy, 'staleMs'> & { staleMs?: number };
  /** Test hook between steps (stall, crash); never set in production. */
  afterStep?: (step: Step) => void | Promise<void>;
}

const MAX_ROUNDS = 4;
/**
 * How often a command retries a held lease. Every command waits for it (within its deadline)
 * rather than answer "in progress": the holder may be a run that died, whose lease lasts until it
 * expires, and an alarm or fast-path event consumed meanwhile would leave the VIP where it is
 * until the next scheduled reconcile.
 */
const LEASE_RETRY_MS = 250;
const LEASE_RETRY_MAX_MS = 5_000;
const LEASE_EXPIRY_MARGIN_MS = 100;

/**
 * Triggers that change nothing once the deployment was torn down: alarms, the fast path, the
 * schedule, and the slots' lifecycle actions (at `cdk destroy` the groups' instances terminate
 * after the teardown: their moves must place nothing the stack would then fail to delete).
 */
function automatic(command: Command): boolean {
  return command.kind === 'alarm' || (command.kind === 'failover' && (command.via === 'fast-path' || command.via === 'lifecycle-hook')) || (command.kind === 'reconcile' && command.via === 'schedule');
}
/** After a round that attached loxi-eni, the first look at the result, then the looks while AWS completes it. */
const SETTLE_FIRST_LOOK_MS = 2_000;
const SETTLE_POLL_MS = 500;
/** The lease is renewed this often while a run holds it (in the background, and in long waits): a third of its lifetime. */
export const LEASE_RENEW_MS = 3_000;

export class Orchestrator<Step extends StepBase, State> {
  private readonly d: OrchestratorDeps<Step, State>;
  private readonly policy: Policy;

  constructor(deps: OrchestratorDeps<Step, State>) {
    this.d = deps;
    this.policy = { staleMs: HEARTBEAT_STALE_SECONDS * 1000, ...deps.policy };
  }

  /**
   * The instance that holds this group's VIP now, read from the strategy's resources alone (no lease,
   * no change): what the placement over groups starts from.
   */
  async owner(instances: InstanceView[], now: number): Promise<string | undefined> {
    const state = await this.d.strategy.observe('full');
    return this.d.strategy.currentOwner({ ...state, now, instances });
  }

  /** `placedTo`: where the placement over VIP groups puts this group, should its VIP move (Hints.placedTo); `steadyMove`: a move while its owner is fine (Hints.steadyMove). */
  async run(command: Command, deadline: number, placement: Placed = {}): Promise<Result> {
    const t0 = this.d.clock.now();
    const calls0 = { calls: this.d.calls.calls, mutations: this.d.calls.mutations };
    const steps: StepTiming[] = [];
    const counters = { sequential: 0 };
    const finish = (r: Omit<Result, 'durationMs' | 'ec2Calls' | 'ec2Mutations' | 'sequentialMutations' | 'steps' | 'phases' | 'command' | 'moved'> & { moved?: boolean }): Result => {
      const phases: Record<string, number> = {};
      for (const s of steps) phases[s.phase] = (phases[s.phase] ?? 0) + s.ms;
      return {
        command: command.kind,
        moved: false,
        ...r,
        steps,
        phases,
        durationMs: this.d.clock.now() - t0,
        ec2Calls: this.d.calls.calls - calls0.calls,
        ec2Mutations: this.d.calls.mutations - calls0.mutations,
        sequentialMutations: counters.sequential,
      };
    };

    if (command.kind === 'status') return finish(await this.status());
    if (command.kind === 'plan') return finish(await this.dryRun(command.to));

    const holder = `${command.kind}-${randomUUID()}`;
    const askedAt = this.d.clock.now();
    let taken = await this.d.lease.acquire(holder, this.d.clock.now());
    const waited = !taken.acquired;
    while (!taken.acquired) {
      // Ask again just after the lease's expiry: a dead holder's lease is free then; a live holder has
      // renewed it by then (every 3 s), and the next ask waits for its new expiry. One read per renewal.
      const wait = Math.min(LEASE_RETRY_MAX_MS, Math.max(LEASE_RETRY_MS, taken.lease.expiresAt - this.d.clock.now() + LEASE_EXPIRY_MARGIN_MS));
      if (this.d.clock.now() + wait >= deadline) break;
      await this.d.clock.sleep(wait);
      taken = await this.d.lease.acquire(holder, this.d.clock.now());
    }
    if (!taken.acquired) {
      const held = `another invocation held the lease until the deadline (epoch ${taken.lease.epoch}, holder ${taken.lease.holder})`;
      return finish({ ok: false, outcome: 'timed-out', reason: held, lease: taken.lease });
    }
    const epoch = taken.epoch;
    // How long this run waited for another's lease (a live run's, or a dead one's until it expired).
    const leaseWaitMs = waited ? this.d.clock.now() - askedAt : 0;
    if (taken.lease.tornDownAt !== undefined && automatic(command)) {
      const result = finish({
        ok: true,
        outcome: 'no-op',
        reason: `the deployment was torn down at ${new Date(taken.lease.tornDownAt).toISOString()}; automatic triggers change nothing until a deploy or a manual reconcile`,
        epoch,
      });
      await this.d.lease.release(holder, epoch, { result: result.outcome });
      return result;
    }
    const keeper = new LeaseKeeper({ lease: this.d.lease, clock: this.d.clock, holder, epoch, renewEveryMs: this.d.leaseRenewMs ?? LEASE_RENEW_MS });
    const fencing: Fencing = { holder, fence: () => keeper.fence(), keepAlive: () => keeper.keepAlive() };
    keeper.start();
    try {
      return await this.hold(command, epoch, taken.lease, fencing, deadline, steps, counters, (r) => finish({ ...r, ...(leaseWaitMs > 0 ? { leaseWaitMs } : {}) }), placement);
    } finally {
      keeper.stop();
    }
  }

  /** The run's work while it holds the lease (renewed by its keeper), then the release and the notification. */
  private async hold(
    command: Command,
    epoch: number,
    leaseView: LeaseView,
    fencing: Fencing,
    deadline: number,
    steps: StepTiming[],
    counters: { sequential: number },
    finish: (r: Omit<Result, 'durationMs' | 'ec2Calls' | 'ec2Mutations' | 'sequentialMutations' | 'steps' | 'phases' | 'command' | 'moved'> & { moved?: boolean }) => Result,
    placement: Placed = {},
  ): Promise<Result> {
    const { holder } = fencing;
    let result: Result;
    let movedAt: number | undefined;
    try {
      if (command.kind === 'teardown') {
        result = finish(await this.teardown(epoch, fencing, deadline, steps, counters));
      } else {
        const r = await this.converge(command, leaseView, epoch, fencing, deadline, steps, counters, placement);
        // The hold-down (against flapping between two instances) starts at a move from an owner: a
        // placement is none, and the first failure report after it is believed as any other.
        if (r.moved && r.previousOwner !== undefined) movedAt = this.d.clock.now();
        result = finish(r);
      }
    } catch (e) {
      if (e instanceof LeaseLostError) {
        // A newer invocation took the lease over (ours expired while we were stalled): it carries on from what it observes.
        result = finish({ ok: true, outcome: 'superseded', reason: e.message, epoch });
        await this.d.notifier.finished(result);
        return result;
      }
      const outcome: Outcome = e instanceof DeadlineExceededError ? 'timed-out' : 'failed';
      result = finish({ ok: false, outcome, reason: (e as Error).message, error: (e as Error).name, epoch });
    }
    // A teardown's success is remembered (automatic triggers then stand still); a deliberate converge clears it.
    const tornDownAt = result.outcome === 'torn-down' ? this.d.clock.now() : command.kind !== 'teardown' && !automatic(command) && result.ok ? null : undefined;
    try {
      await this.d.lease.release(holder, epoch, { result: result.outcome, owner: result.owner, movedAt, tornDownAt, ...(result.peerLost ? { lost: result.peerLost } : {}) });
    } catch (e) {
      if (!(e instanceof LeaseLostError)) throw e;
      // What we did stands; a newer invocation holds the lease now.
      result = { ...result, reason: `${result.reason}; ${e.message}` };
    }
    await this.d.notifier.finished(result);
    return result;
  }

  private hints(command: Command, snapshot: SnapshotOf<State>, owner: string | undefined, lease: LeaseView): Hints {
    const hints: Hints = { lastMoveAt: lease.lastMoveAt, lost: lease.lost };
    if (command.kind === 'alarm' && command.state === 'ALARM') {
      const instance = snapshot.instances.find((i) => i.index === command.instanceIndex);
      // An alarm on the master is evidence against it; an alarm on a backup only triggers a reconcile.
      if (instance && instance.id === owner) hints.suspect = instance.id;
    }
    if (command.kind === 'failover' && command.via === 'fast-path' && command.reason === 'peer-backup-lost' && command.from !== owner) {
      // The owner lost its backup: nothing moves, and the backup is no place for the VIP until it beats again.
      hints.lost = { instanceId: command.from!, at: snapshot.now };
      return hints;
    }
    if (command.kind === 'failover') {
      if (command.to) hints.to = command.to;
      else hints.suspect = command.from ?? owner;
      // An operator's request, or the platform taking the instance away, is explicit: the hold-down
      // does not refuse it (the health checks still do).
      hints.explicit = command.via === 'manual' || command.via === 'lifecycle-hook';
    }
    return hints;
  }

  private async converge(
    command: Command,
    leaseView: LeaseView,
    epoch: number,
    lease: Fencing,
    deadline: number,
    steps: StepTiming[],
    counters: { sequential: number },
    placement: Placed = {},
  ) {
    let snapshot = await this.observeFenced(epoch, steps);
    const currentOwner = this.d.strategy.currentOwner(snapshot);
    // A run that died mid-move leaves no owner behind it: the move's origin is in the lease.
    const interrupted = currentOwner === undefined ? leaseView.interruptedMoveFrom : undefined;
    const previousOwner = currentOwner ?? interrupted;
    const hints = { ...this.hints(command, snapshot, currentOwner, leaseView), ...(placement.placedTo ? { placedTo: placement.placedTo } : {}), ...(placement.steadyMove ? { steadyMove: placement.steadyMove } : {}) };
    let decision: Decision = decide(snapshot, currentOwner, this.policy, hints);
    if (interrupted && decision.outcome === 'move') decision = { ...decision, from: interrupted, reason: `completing the move from ${interrupted} that an earlier run started and did not finish` };
    if (command.kind === 'reconcile' && command.via === 'lifecycle') {
      // At deploy the agents may still be booting: wait for one to beat before placing the VIP.
      while (decision.outcome === 'no-healthy-instance' && this.d.clock.now() + 15_000 < deadline) {
        await this.d.clock.sleep(10_000);
        await lease.keepAlive();
        snapshot = await this.observeFenced(epoch, steps);
        decision = decide(snapshot, previousOwner, this.policy, hints);
      }
    }
    if (decision.outcome === 'no-healthy-instance' || decision.outcome === 'rejected') {
      return { ok: false, outcome: decision.outcome, reason: decision.reason, previousOwner, owner: previousOwner, health: decision.health, epoch, moved: false };
    }
    const owner = decision.owner;
    const moving = decision.outcome === 'move';
    if (decision.outcome === 'move') {
      if (decision.from) await this.d.lease.markMove(lease.holder, epoch, decision.from);
      await this.d.notifier.started({ command, from: decision.from, to: owner, reason: decision.reason, epoch });
    }
    const oldOwner = snapshot.instances.find((i) => i.id === previousOwner);
    // The peer reports it cannot reach the owner (its fast path) and the VIP moves: whatever its last
    // heartbeat says, the owner is gone for this move — no wait for a session table that cannot get more
    // in sync, and its interface is force-detached (a rebooting or hung instance does not answer).
    const peerLostIt = command.kind === 'failover' && command.via === 'fast-path' && command.from === previousOwner;
    const ownerLost = peerLostIt && moving;
    // What this run learnt of a lost instance, for the lease: the owner its peer lost, or a backup the owner lost.
    const newlyLost = ownerLost ? { instanceId: previousOwner!, at: snapshot.now } : hints.lost !== leaseView.lost ? hints.lost : undefined;
    // Alive: healthy, or healthy but for being drained (its group is replacing it: a planned move, sessions confirmed in sync).
    const oldOwnerAlive = !ownerLost && oldOwner !== undefined && (decision.health.find((h) => h.instanceId === oldOwner.id)?.healthy === true || (oldOwner.draining === true && healthOf({ ...oldOwner, draining: false }, snapshot.now, this.policy.staleMs).healthy));
    // An owner known dead (EC2 says stopped or impaired, or its heartbeat is gone and its peer cannot
    // reach it) gets its ENI force-detached at once: a normal detach waits on an instance that will not answer.
    const oldOwnerHealth = decision.health.find((h) => h.instanceId === previousOwner);
    const oldOwnerDead = oldOwner !== undefined && (oldOwner.state !== 'running' || oldOwner.statusOk === false || (oldOwnerHealth?.healthy === false && peerLostIt) || ownerLost);
    // What only a move to this owner needs (eni: the kept subnet's route table association).
    snapshot = (await this.d.strategy.readForOwner?.(snapshot, owner)) ?? snapshot;
    let applied = 0;
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const planned = this.d.strategy.plan(snapshot, owner, {
        epoch,
        forceDetach: oldOwnerDead,
        // Planned moves (old owner alive) wait for the survivor's session table; failovers from a dead owner do not.
        confirmSync: round === 0 && moving && oldOwnerAlive && snapshot.instances.find((i) => i.id === owner)?.sessionsInSync !== true,
      });
      const problems = this.d.strategy.verify(snapshot, owner);
      if (planned.length === 0 && problems.length === 0) {
        return {
          ok: true,
          outcome: applied === 0 ? ('no-op' as const) : ('converged' as const),
          reason: applied === 0 ? `VIP already on ${owner}: ${decision.reason}` : `VIP on ${owner}: ${decision.reason}`,
          owner,
          previousOwner,
          moved: applied > 0 && previousOwner !== owner,
          health: decision.health,
          epoch,
          ...(newlyLost ? { peerLost: newlyLost } : {}),
        };
      }
      if (planned.length === 0 && this.d.strategy.settling?.(snapshot, owner)) {
        // Only an attach still completing: look at the ENI alone until it is done (not a round).
        await lease.keepAlive();
        await this.d.clock.sleep(SETTLE_POLL_MS);
        snapshot = await this.observeFenced(epoch, steps, snapshot, 'settling');
        round--;
        if (this.d.clock.now() >= deadline) throw new DeadlineExceededError('waiting for AWS to finish the attach');
        continue;
      }
      if (planned.length === 0) {
        // Nothing to do yet the state does not verify: AWS has not caught up with our writes. Look again.
        await this.d.clock.sleep(1000);
      }
      const effects = await this.applySteps(planned, lease, epoch, deadline, steps, counters);
      applied += planned.length;
      // An attach takes a moment on AWS: reading the result back at once would only find it attaching.
      if (planned.some((s) => s.phase === 'attach' && s.mutates)) await this.d.clock.sleep(SETTLE_FIRST_LOOK_MS);
      // What our steps did is checked by reading back what they touch, from what their answers established; health was decided above.
      snapshot = await this.observeFenced(epoch, steps, effects.reduce((s, effect) => ({ ...s, ...effect(s) }), snapshot), 'after-steps');
    }
    const problems = this.d.strategy.verify(snapshot, owner);
    return { ok: false, outcome: 'failed' as const, reason: `did not converge after ${MAX_ROUNDS} rounds`, problems, owner, previousOwner, moved: false, epoch, health: decision.health };
  }

  /** Runs the steps, wave by wave; returns the effects their answers established, in the order they came. */
  private async applySteps(planned: Step[], lease: Fencing, epoch: number, deadline: number, steps: StepTiming[], counters: { sequential: number }): Promise<StepEffect<State>[]> {
    const created = new Map<string, string>();
    const effects: StepEffect<State>[] = [];
    const ctx = { epoch, fence: lease.fence, keepAlive: lease.keepAlive, deadline };
    const fence = lease.fence;
    let i = 0;
    while (i < planned.length) {
      const wave = [planned[i]!];
      while (planned[i]!.group && planned[i + wave.length]?.group === planned[i]!.group) wave.push(planned[i + wave.length]!);
      i += wave.length;
      if (this.d.clock.now() >= deadline) throw new DeadlineExceededError(`before "${wave[0]!.describe}"`);
      if (wave.some((s) => s.mutates)) {
        await fence();
        counters.sequential++;
      }
      await Promise.all(
        wave.map(async (step) => {
          const t = this.d.clock.now();
          const effect = await this.d.strategy.apply(step, ctx, created);
          if (effect) effects.push(effect);
          steps.push({ step: step.describe, phase: step.phase, ms: this.d.clock.now() - t });
          await this.d.afterStep?.(step);
        }),
      );
    }
    return effects;
  }

  /** Observes, and stops if a newer lease holder has already written resources (we are stale). */
  private async observeFenced(epoch: number, steps: StepTiming[], before?: SnapshotOf<State>, scope: ObserveScope = 'full'): Promise<SnapshotOf<State>> {
    const t = this.d.clock.now();
    const s = await this.observe(t, scope, before);
    steps.push({ step: 'observe', phase: 'observe', ms: this.d.clock.now() - t });
    if (this.d.strategy.epochs(s).some((e) => e > epoch)) throw new LeaseLostError(epoch);
    return s;
  }

  /** The instances and the strategy's state, read concurrently; the narrow scopes carry the instances over from `before`. */
  private async observe(now: number, scope: ObserveScope, before?: SnapshotOf<State>): Promise<SnapshotOf<State>> {
    const carry = before !== undefined && (scope === 'after-steps' || scope === 'settling');
    const [instances, state] = await Promise.all([carry ? before.instances : this.d.observeInstances(now), this.d.strategy.observe(scope, before)]);
    return { ...state, now, instances };
  }

  private async teardown(epoch: number, lease: Fencing, deadline: number, steps: StepTiming[], counters: { sequential: number }) {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const snapshot = await this.observeFenced(epoch, steps);
      const planned = this.d.strategy.planTeardown(snapshot);
      if (planned.length === 0) {
        return { ok: true, outcome: 'torn-down' as const, reason: this.d.strategy.tornDown, epoch };
      }
      await this.applySteps(planned, lease, epoch, deadline, steps, counters);
    }
    return { ok: false, outcome: 'failed' as const, reason: `teardown did not finish after ${MAX_ROUNDS} rounds`, epoch };
  }

  private async status() {
    const now = this.d.clock.now();
    const [snapshot, lease] = await Promise.all([this.observe(now, 'status'), this.d.lease.read()]);
    const owner = this.d.strategy.currentOwner(snapshot);
    const decision = decide(snapshot, owner, this.policy, { lastMoveAt: lease.lastMoveAt, lost: lease.lost });
    const problems = owner ? this.d.strategy.verify(snapshot, owner) : ['no instance holds the VIP'];
    return {
      ok: problems.length === 0,
      outcome: 'status' as const,
      reason: owner ? `VIP on ${owner}${problems.length ? ` with problems: ${problems.join('; ')}` : ''}` : 'no instance holds the VIP',
      owner,
      health: decision.health,
      lease,
      problems,
    };
  }

  private async dryRun(to: string | undefined) {
    const now = this.d.clock.now();
    const [snapshot, lease] = await Promise.all([this.observe(now, 'full'), this.d.lease.read()]);
    const owner = this.d.strategy.currentOwner(snapshot);
    const decision = decide(snapshot, owner, this.policy, { lastMoveAt: lease.lastMoveAt, lost: lease.lost, to });
    if (decision.outcome === 'no-healthy-instance' || decision.outcome === 'rejected') {
      return { ok: false, outcome: 'planned' as const, reason: decision.reason, owner, health: decision.health, plan: [] };
    }
    const forOwner = (await this.d.strategy.readForOwner?.(snapshot, decision.owner)) ?? snapshot;
    const planned = this.d.strategy.plan(forOwner, decision.owner, { epoch: lease.epoch + 1, forceDetach: false });
    return { ok: true, outcome: 'planned' as const, reason: decision.reason, owner: decision.owner, previousOwner: owner, health: decision.health, plan: planned.map((s) => s.describe) };
  }
}
