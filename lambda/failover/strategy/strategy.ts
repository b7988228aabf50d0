/**
 * How the VIP moves. The lease, the decision and the entry points only see this
 * interface, so a second strategy (EIP to a private IP the survivor already holds,
 * overlay VIP by route tables) plugs in without touching them.
 */
import type { FailoverPhase } from '../../../lib/contract.ts';
import type { Snapshot } from '../snapshot.ts';

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

export interface VipStrategy<Step extends StepBase> {
  readonly name: string;
  /** Instance that holds the VIP now, if any. */
  currentOwner(snapshot: Snapshot): string | undefined;
  /** Pure: ordered steps that take the observed state to "VIP on owner"; empty when already there. */
  plan(snapshot: Snapshot, owner: string, opts: PlanOptions): Step[];
  /** Executes one step; returns after the step's effect is visible (or throws). */
  apply(step: Step, ctx: ApplyContext, state: Map<string, string>): Promise<void>;
  /** Pure: what is wrong with the observed end state for owner (empty when converged). */
  verify(snapshot: Snapshot, owner: string): string[];
  /** Pure: the state only waits on AWS finishing what was asked (nothing to do but look again). */
  settling?(snapshot: Snapshot, owner: string): boolean;
  /** Pure: steps that remove everything the strategy creates at run time. */
  planTeardown(snapshot: Snapshot): Step[];
}
