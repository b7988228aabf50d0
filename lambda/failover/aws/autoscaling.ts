/**
 * The Auto Scaling calls of a lifecycle hook's run: complete the action (CONTINUE / ABANDON) and
 * extend its timeout while the run waits. Thin: what to do and when is ../instance-lifecycle.ts's.
 */
import {
  type AutoScalingClient,
  CompleteLifecycleActionCommand,
  DescribeAutoScalingGroupsCommand,
  RecordLifecycleActionHeartbeatCommand,
  TerminateInstanceInAutoScalingGroupCommand,
} from '@aws-sdk/client-auto-scaling';
import type { InstanceLifecycleCommand } from '../events.ts';
import type { SlotGroupView } from '../rollout-plan.ts';

export type LifecycleActionResult = 'CONTINUE' | 'ABANDON';
type Action = InstanceLifecycleCommand['action'] & { instanceId: string };

/** The fields that name one lifecycle action in the Auto Scaling API. */
const actionOf = (a: Action) => ({ AutoScalingGroupName: a.autoScalingGroupName, LifecycleHookName: a.lifecycleHookName, LifecycleActionToken: a.lifecycleActionToken, InstanceId: a.instanceId });

/** AWS's answer for an action that is no longer pending (completed by an earlier run, or timed out). */
const NO_ACTIVE_ACTION = /No active Lifecycle Action found/i;

export class LifecycleActions {
  private readonly client: AutoScalingClient;

  constructor(client: AutoScalingClient) {
    this.client = client;
  }

  /** Completes the action; returns false when AWS no longer has it pending (an earlier run or the hook's timeout ended it). */
  complete(a: Action, result: LifecycleActionResult): Promise<boolean> {
    return this.pending(() => this.client.send(new CompleteLifecycleActionCommand({ ...actionOf(a), LifecycleActionResult: result })));
  }

  /** Restarts the hook's timeout (the run is still working on it); false when the action is gone. */
  heartbeat(a: Action): Promise<boolean> {
    return this.pending(() => this.client.send(new RecordLifecycleActionHeartbeatCommand(actionOf(a))));
  }

  /** Sends a call on a pending action: true when done, false when AWS says the action is no longer pending. */
  private async pending(send: () => Promise<unknown>): Promise<boolean> {
    try {
      await send();
      return true;
    } catch (e) {
      if (NO_ACTIVE_ACTION.test((e as Error).message ?? '')) return false;
      throw e;
    }
  }
}

/** The slots' groups as a rollout reads them, and the one call it makes on them. */
export class SlotGroupsAdapter {
  private readonly client: AutoScalingClient;
  private readonly names: string[];

  /** `names[i]` is slot i's group. */
  constructor(client: AutoScalingClient, names: string[]) {
    this.client = client;
    this.names = names;
  }

  /** Each slot's group: the launch template version it launches, and its instances with theirs. */
  async read(): Promise<SlotGroupView[]> {
    const r = await this.client.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: this.names }));
    return this.names.map((groupName, slot) => {
      const g = r.AutoScalingGroups?.find((x) => x.AutoScalingGroupName === groupName);
      if (!g) throw new Error(`Auto Scaling group ${groupName} (slot ${slot}) not found: the stack is incomplete`);
      return {
        slot,
        groupName,
        template: g.LaunchTemplate?.Version,
        instances: (g.Instances ?? []).filter((i) => i.InstanceId).map((i) => ({ id: i.InstanceId!, template: i.LaunchTemplate?.Version, lifecycleState: i.LifecycleState ?? 'Pending' })),
      };
    });
  }

  /**
   * The group replaces its instance: terminated (through its terminating hook) and a new one launched
   * from the group's template. False when the instance is already on its way out.
   */
  async replace(instanceId: string): Promise<boolean> {
    try {
      await this.client.send(new TerminateInstanceInAutoScalingGroupCommand({ InstanceId: instanceId, ShouldDecrementDesiredCapacity: false }));
      return true;
    } catch (e) {
      if (/terminat|not in (a )?(InService|valid)/i.test((e as Error).message ?? '')) return false;
      throw e;
    }
  }
}
