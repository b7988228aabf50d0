/**
 * How the VIP moves. The orchestrator, the lease, the decision and the entry points only see this
 * interface: a strategy observes what it moves, plans (pure), applies one step at a time, verifies
 * and reports the fencing epochs it finds, so a strategy plugs in without touching the rest.
 */
import type { FailoverPhase } from '../../../lib/contract.ts';
import type { Observed } from '../snapshot.ts';

export interface StepBase {
  /** Phase it is reported under (metrics, dashboard). */
  phase: FailoverPhase;
  /** Human-readable, for plan output and logs. */
  describe: string;
  /** Whether it changes AWS state (fenced by the lease). */
  mutates: boolean;
  /** Consecutive steps with the same group have no order among them and run concurrently. */
  group?: string;
}

export interface PlanOptions {
  /** Fencing token of this run, written onto what it creates. */
  epoch: number;
  /** Force every detach (teardown, or an owner known to be dead). */
  forceDetach: boolean;
  /** Start by confirming that the new owner reports its session table in sync (planned moves). */
  confirmSync?: boolean;
}

export interface StepTiming {
  step: string;
  phase: FailoverPhase;
  ms: number;
}

export interface ApplyContext {
  epoch: number;
  /** Throws when the lease is no longer ours: called before every mutating step. */
  fence(): Promise<void>;
  /** Renews the lease if it was last renewed a while ago: called from long waits. */
  keepAlive(): Promise<void>;
  /** Absolute deadline (clock ms) after which the run must stop and leave the rest to the next one. */
  deadline: number;
}

/**
 * What a strategy reads, and when:
 * - `full`: everything it moves, at the start of a run (instances are read beside it);
 * - `status`: the same, with the EIP read wherever it is associated (for `status`);
 * - `after-steps`: what the run's own steps touched, to check them (instances carried over; `before`
 *   has the effects the steps' own answers established folded in, see `StepEffect`);
 * - `settling`: the little that is still completing on AWS (an attach), polled.
 */
export type ObserveScope = 'full' | 'status' | 'after-steps' | 'settling';

/** The snapshot a strategy plans on: the common part and its own state. */
export type SnapshotOf<State> = Observed & State;

/**
 * What a write's own answer establishes (a created subnet's id, AZ and block; an association's id):
 * folded into the run's snapshot before reading back, so that the read-back asks AWS only for what
 * completes asynchronously (an attach, an association's propagation) and not for what a write has
 * just answered. Pure.
 */
export type StepEffect<State> = (state: State) => State;

export interface VipStrategy<Step extends StepBase, State> {
  readonly name: string;
  /** Reads this strategy's part of the world; `before` is the run's previous snapshot (for the narrow scopes). */
  observe(scope: ObserveScope, before?: SnapshotOf<State>): Promise<State>;
  /** Fencing epochs written on the resources it sees: one newer than the run's means a newer run holds the lease. */
  epochs(snapshot: SnapshotOf<State>): number[];
  /** Instance that holds the VIP now, if any. */
  currentOwner(snapshot: SnapshotOf<State>): string | undefined;
  /**
   * Reads what only a move to `owner` needs and the first look left out (eni: the route table
   * association of the floating subnet it keeps, none when it creates one); the snapshot as is when
   * there is nothing to read.
   */
  readForOwner?(snapshot: SnapshotOf<State>, owner: string): Promise<SnapshotOf<State>>;
  /** Pure: ordered steps that take the observed state to "VIP on owner"; empty when already there. */
  plan(snapshot: SnapshotOf<State>, owner: string, opts: PlanOptions): Step[];
  /** Executes one step; returns after the step's effect is visible (or throws), with what its answer established, if anything. */
  apply(step: Step, ctx: ApplyContext, state: Map<string, string>): Promise<StepEffect<State> | undefined | void>;
  /** Pure: what is wrong with the observed end state for owner (empty when converged). */
  verify(snapshot: SnapshotOf<State>, owner: string): string[];
  /** Pure: the state only waits on AWS finishing what was asked (nothing to do but look again, `settling` scope). */
  settling?(snapshot: SnapshotOf<State>, owner: string): boolean;
  /** Pure: steps that remove everything the strategy put in place at run time. */
  planTeardown(snapshot: SnapshotOf<State>): Step[];
  /** What "torn down" means for it, for the result's reason. */
  readonly tornDown: string;
}
