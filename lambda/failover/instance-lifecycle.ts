/**
 * A slot's Auto Scaling lifecycle actions (EventBridge → the function):
 *
 * - **terminating**: the instance is tagged draining (no run places the VIP on it again), the VIP is
 *   moved off it if it holds it (a planned move: the survivor's sessions confirmed in sync), and
 *   only then is the action completed. When nowhere else can take the VIP (the other slot is being
 *   replaced, or not ready), the run holds the action — extending its timeout — and tries again, so
 *   the second slot never goes while the first is not back; at the deadline it fails, to be retried.
 * - **launching**: the slot's own interface is attached to the new instance (once the instance it
 *   served has let it go) and source/dest check is turned off, then the action is completed and the
 *   instance goes in service with the slot's identity.
 *
 * Every step is idempotent: a run that dies anywhere is completed by the next delivery.
 */
import type { Ec2Adapter } from './aws/ec2.ts';
import type { LifecycleActions } from './aws/autoscaling.ts';
import type { Clock } from './clock.ts';
import type { InstanceLifecycleCommand } from './events.ts';
import type { Result } from './orchestrator.ts';
import type { SlotNotice } from './report.ts';

export interface InstanceLifecycleDeps {
  ec2: Pick<Ec2Adapter, 'slotInterface' | 'attachSlotInterface' | 'disableInstanceSourceDestCheck' | 'markDraining'>;
  actions: Pick<LifecycleActions, 'complete' | 'heartbeat'>;
  /** Moves the VIP off `from` (a run of the orchestrator: lease, fencing, planned move). */
  moveOff: (from: string, deadline: number) => Promise<Result>;
  clock: Clock;
  log: (level: 'info' | 'warn', msg: string, extra?: Record<string, unknown>) => void;
  /** Tells operators a slot lost its instance (redundancy lost) or got a new one (SNS + EventBridge). */
  notify: (n: SlotNotice) => Promise<void>;
  /** How long between two tries while waiting (the VIP has nowhere to go, the interface is still held). */
  retryMs?: number;
  /** How often the action's timeout is extended while waiting (below the hook's heartbeat timeout). */
  heartbeatMs?: number;
}

export interface LifecycleResult {
  ok: boolean;
  command: 'instance-lifecycle';
  transition: InstanceLifecycleCommand['transition'];
  instanceId: string;
  slot: number;
  outcome: 'completed' | 'already-completed' | 'timed-out';
  /** What the action was completed with. */
  result?: 'CONTINUE';
  reason: string;
  /** The VIP's move off a terminating instance, as the orchestrator reported it. */
  move?: Pick<Result, 'outcome' | 'reason' | 'owner' | 'previousOwner' | 'moved'>;
  durationMs: number;
}

const RETRY_MS = 10_000;
/** Time a move off the instance needs (a planned eni move takes 10–20 s on AWS, a confirm-sync wait up to 15 s). */
const MOVE_NEEDS_MS = 60_000;
const HEARTBEAT_MS = 60_000;

export class InstanceLifecycle {
  private readonly d: InstanceLifecycleDeps;

  constructor(deps: InstanceLifecycleDeps) {
    this.d = deps;
  }

  async run(c: InstanceLifecycleCommand, deadline: number): Promise<LifecycleResult> {
    const t0 = this.d.clock.now();
    const base = { command: 'instance-lifecycle' as const, transition: c.transition, instanceId: c.instanceId, slot: c.slot };
    const done = (r: Omit<LifecycleResult, keyof typeof base | 'durationMs'>): LifecycleResult => ({ ...base, ...r, durationMs: this.d.clock.now() - t0 });
    const action = { ...c.action, instanceId: c.instanceId };
    const retryMs = this.d.retryMs ?? RETRY_MS;
    let lastBeat = t0;
    /** Waits before the next try, extending the action's timeout when due; false when AWS no longer has the action. */
    const wait = async (): Promise<boolean> => {
      if (this.d.clock.now() - lastBeat >= (this.d.heartbeatMs ?? HEARTBEAT_MS)) {
        lastBeat = this.d.clock.now();
        if (!(await this.d.actions.heartbeat(action))) return false;
      }
      await this.d.clock.sleep(Math.min(retryMs, Math.max(0, deadline - this.d.clock.now())));
      return true;
    };
    const complete = async (reason: string, move?: LifecycleResult['move']): Promise<LifecycleResult> => {
      const completed = await this.d.actions.complete(action, 'CONTINUE');
      return done({ ok: true, outcome: completed ? 'completed' : 'already-completed', result: 'CONTINUE', reason: completed ? reason : `${reason}; the action had already ended (an earlier run, or the hook's timeout)`, ...(move ? { move } : {}) });
    };

    if (c.transition === 'terminating') {
      await this.d.ec2.markDraining(c.instanceId);
      await this.d.notify({ slot: c.slot, instanceId: c.instanceId, transition: 'terminating', why: 'its Auto Scaling group is replacing it (a health check, a deploy, an operator); the slot has no redundancy until the replacement is ready' });
      for (;;) {
        const r = await this.d.moveOff(c.instanceId, deadline);
        const move = { outcome: r.outcome, reason: r.reason, owner: r.owner, previousOwner: r.previousOwner, moved: r.moved };
        if (r.ok) {
          return complete(r.moved ? `moved the VIP off ${c.instanceId} to ${r.owner} before it goes` : `${c.instanceId} does not hold the VIP (${r.reason})`, move);
        }
        // The VIP has nowhere healthy to go: an instance that does not hold it goes all the same (holding
        // it serves nothing, and of two slots asked at once it is the one to go first while the owner
        // keeps serving); the owner is held. A run that failed or ran out of time is tried again.
        if ((r.outcome === 'no-healthy-instance' || r.outcome === 'rejected') && r.owner !== c.instanceId && r.previousOwner !== c.instanceId) {
          return complete(`${c.instanceId} does not hold the VIP (${r.owner ? `${r.owner} does` : 'no instance does'}); ${r.reason}`, move);
        }
        this.d.log('warn', 'the VIP cannot leave the terminating instance yet; holding its termination', { instanceId: c.instanceId, slot: c.slot, outcome: r.outcome, reason: r.reason });
        // A move needs time: too close to the deadline, the next delivery tries (and resumes a move left half-done).
        if (this.d.clock.now() + retryMs + MOVE_NEEDS_MS >= deadline) {
          return done({ ok: false, outcome: 'timed-out', reason: `holding the termination of ${c.instanceId}: ${r.reason}`, move });
        }
        if (!(await wait())) return done({ ok: false, outcome: 'already-completed', reason: `the termination action of ${c.instanceId} ended (the hook's timeout) while the VIP could not leave it: ${r.reason}`, move });
      }
    }

    // launching
    for (;;) {
      const eni = await this.d.ec2.slotInterface(c.slot);
      if (!eni) throw new Error(`slot ${c.slot} has no interface tagged for this deployment: the stack is incomplete`);
      const holder = eni.attachment?.instanceId;
      if (holder === c.instanceId || !holder || eni.attachment?.status === 'detached') {
        if (holder !== c.instanceId) await this.d.ec2.attachSlotInterface(eni.id, c.instanceId, deadline);
        await this.d.ec2.disableInstanceSourceDestCheck(c.instanceId, deadline);
        const r = await complete(`slot ${c.slot}'s interface ${eni.id} attached to ${c.instanceId}, source/dest check off`);
        await this.d.notify({ slot: c.slot, instanceId: c.instanceId, transition: 'launching', why: `it has slot ${c.slot}'s interface and address; it serves once its agent reports ready` });
        return r;
      }
      // Still held by the instance the slot had (its termination is completing): wait for AWS to let it go.
      this.d.log('info', 'the slot interface is still attached to the instance being replaced; waiting', { slot: c.slot, eni: eni.id, holder, instanceId: c.instanceId });
      if (this.d.clock.now() + retryMs >= deadline) {
        return done({ ok: false, outcome: 'timed-out', reason: `slot ${c.slot}'s interface ${eni.id} is still attached to ${holder}` });
      }
      if (!(await wait())) return done({ ok: false, outcome: 'already-completed', reason: `the launch action of ${c.instanceId} ended (the hook's timeout) while slot ${c.slot}'s interface was still held by ${holder}` });
    }
  }
}
