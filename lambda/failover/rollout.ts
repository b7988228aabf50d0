/**
 * A rolling replacement of the slots' instances, one step per call: CloudFormation's provider
 * framework calls it (onEvent once, then isComplete every poll) after a deploy changed the slots'
 * launch template. Each call reads the groups and the function's view of the instances, asks the pure
 * planner (./rollout-plan.ts) for the next step and takes it; a call that dies anywhere is taken up by
 * the next poll. The VIP's move is the terminating hook's (./instance-lifecycle.ts), never this run's.
 */
import type { SlotGroupsAdapter } from './aws/autoscaling.ts';
import type { Clock } from './clock.ts';
import type { Result } from './orchestrator.ts';
import { planRollout, type RolloutStep } from './rollout-plan.ts';

export interface RolloutDeps {
  groups: Pick<SlotGroupsAdapter, 'read' | 'replace'>;
  /** The function's status run: the VIP's owner and every instance's health (launch time included). */
  status: (deadline: number) => Promise<Result>;
  clock: Clock;
  log: (level: 'info' | 'warn', msg: string, extra?: Record<string, unknown>) => void;
  /** How long a new instance has to become ready before the rollout fails (and CloudFormation rolls back). */
  readyTimeoutMs: number;
}

export interface RolloutResult {
  command: 'rollout';
  /** True once every slot runs its group's template and is ready, with the VIP served. */
  complete: boolean;
  step: RolloutStep;
  /** The replacement this call started (the group terminates the instance through its hook, then launches another). */
  replaced?: { slot: number; instanceId: string };
}

export class RolloutFailedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RolloutFailedError';
  }
}

export class Rollout {
  private readonly d: RolloutDeps;

  constructor(deps: RolloutDeps) {
    this.d = deps;
  }

  /** One step. Throws RolloutFailedError when a new instance never became ready (the deploy rolls back). */
  async step(deadline: number): Promise<RolloutResult> {
    const [groups, status] = await Promise.all([this.d.groups.read(), this.d.status(deadline)]);
    const launchedAt = new Map((status.health ?? []).filter((h) => h.launchedAt !== undefined).map((h) => [h.instanceId, h.launchedAt!]));
    const step = planRollout({ groups, owner: status.owner, health: status.health ?? [], launchedAt, now: this.d.clock.now() }, this.d.readyTimeoutMs);
    this.d.log(step.kind === 'failed' ? 'warn' : 'info', `rollout: ${step.kind}`, { reason: step.reason });
    switch (step.kind) {
      case 'failed':
        throw new RolloutFailedError(step.reason);
      case 'done':
        return { command: 'rollout', complete: true, step };
      case 'wait':
        return { command: 'rollout', complete: false, step };
      case 'replace': {
        const started = await this.d.groups.replace(step.instanceId);
        return { command: 'rollout', complete: false, step, ...(started ? { replaced: { slot: step.slot, instanceId: step.instanceId } } : {}) };
      }
    }
  }
}
