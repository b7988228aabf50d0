/**
 * Pure: the next step of a rolling replacement of the slots' instances (a deploy changed their launch
 * template). One slot at a time; the backup's slots before the VIP owner's, so the VIP moves once —
 * when the owner's instance goes (its terminating hook moves it, planned, to a slot already on the new
 * template and ready). A slot is done when its instance runs the group's template and is healthy
 * (the function's own health view: running, beating, ready, not draining). No I/O.
 */
import type { Health } from './decide.ts';

/** A slot's Auto Scaling group as DescribeAutoScalingGroups gives it. */
export interface SlotGroupView {
  slot: number;
  groupName: string;
  /** The launch template version the group launches now (what a deploy changed). */
  template: string | undefined;
  instances: { id: string; template: string | undefined; lifecycleState: string }[];
}

export interface RolloutView {
  groups: SlotGroupView[];
  /** The VIP's owner as the function sees it (undefined: nobody serves it). */
  owner: string | undefined;
  health: Health[];
  /** EC2's launch time of each LB instance (ms since epoch). */
  launchedAt: Map<string, number>;
  now: number;
}

export type RolloutStep =
  | { kind: 'done'; reason: string }
  | { kind: 'wait'; reason: string }
  | { kind: 'replace'; slot: number; groupName: string; instanceId: string; owner: boolean; reason: string }
  | { kind: 'failed'; reason: string };

interface SlotNow {
  group: SlotGroupView;
  instance: SlotGroupView['instances'][number] | undefined;
  current: boolean;
  health: Health | undefined;
}

/** How long after its launch a ready new instance is waited for to get in sync before the owner's slot goes anyway. */
export const SYNC_GRACE_MS = 180_000;

export function planRollout(v: RolloutView, readyTimeoutMs: number): RolloutStep {
  const slots: SlotNow[] = [...v.groups]
    .sort((a, b) => a.slot - b.slot)
    .map((group) => {
      // The instance serving (or about to serve) the slot: not one on its way out.
      const instance = group.instances.find((i) => !i.lifecycleState.startsWith('Terminat'));
      return { group, instance, current: instance !== undefined && instance.template === group.template, health: v.health.find((h) => h.instanceId === instance?.id) };
    });

  // A slot between two instances (one going, the next pending) is left to finish: one slot at a time.
  for (const s of slots) {
    const going = s.group.instances.find((i) => i.lifecycleState.startsWith('Terminat'));
    if (!s.instance) return { kind: 'wait', reason: `slot ${s.group.slot} has no instance${going ? ` (${going.id} is ${going.lifecycleState})` : ''}; its group is launching one` };
    if (s.instance.lifecycleState !== 'InService') return { kind: 'wait', reason: `slot ${s.group.slot}'s instance ${s.instance.id} is ${s.instance.lifecycleState}` };
    if (going) return { kind: 'wait', reason: `slot ${s.group.slot}'s former instance ${going.id} is ${going.lifecycleState}` };
  }

  // A slot already on the new template is given its time to become ready; never ready in time fails the rollout.
  for (const s of slots) {
    if (!s.current || s.health?.healthy) continue;
    const since = v.launchedAt.get(s.instance!.id);
    const why = s.health?.why ?? 'not seen by the function yet';
    if (since !== undefined && v.now - since > readyTimeoutMs) {
      return { kind: 'failed', reason: `slot ${s.group.slot}'s new instance ${s.instance!.id} did not become ready within ${Math.round(readyTimeoutMs / 60_000)} min (${why}); the VIP stays where it is` };
    }
    return { kind: 'wait', reason: `slot ${s.group.slot}'s new instance ${s.instance!.id} is not ready yet (${why})` };
  }

  const stale = slots.filter((s) => !s.current);
  if (stale.length === 0) {
    if (!v.owner) return { kind: 'wait', reason: 'every slot runs the new template and is ready; waiting for the VIP to be served' };
    return { kind: 'done', reason: `every slot runs its group's launch template and is ready; the VIP is on ${v.owner}` };
  }
  // Not the owner first: a stale instance that is not serving (not ready) before a ready backup, then by slot.
  const backups = stale.filter((s) => s.instance!.id !== v.owner).sort((a, b) => Number(a.health?.healthy === true) - Number(b.health?.healthy === true));
  const next = backups[0];
  if (next) {
    return { kind: 'replace', slot: next.group.slot, groupName: next.group.groupName, instanceId: next.instance!.id, owner: false, reason: `slot ${next.group.slot} does not hold the VIP: replaced first (nothing moves)` };
  }
  const owner = stale[0]!;
  const refuge = slots.find((s) => s !== owner && s.current && s.health?.healthy);
  if (!refuge) return { kind: 'wait', reason: `slot ${owner.group.slot} holds the VIP and no slot on the new template is ready to take it` };
  // Its services the owner's: a deploy never moves the VIP to a slot that lacks some (kube-loxilb has not
  // filled the new instance); it waits, and fails (the deploy rolls back) when they never match.
  if (refuge.health?.servicesMatch === false) {
    const since = v.launchedAt.get(refuge.instance!.id);
    if (since !== undefined && v.now - since > readyTimeoutMs) {
      return { kind: 'failed', reason: `slot ${refuge.group.slot}'s new instance ${refuge.instance!.id} still serves other services than the owner ${Math.round(readyTimeoutMs / 60_000)} min after its launch; the VIP stays where it is` };
    }
    return { kind: 'wait', reason: `slot ${refuge.group.slot}'s new instance ${refuge.instance!.id} is ready but its services differ from the owner's; waiting for kube-loxilb to install them` };
  }
  // Its sessions in sync first (the move then keeps every flow). An agent that never syncs (sync off) is
  // given a bound: past it the move goes ahead, and the move itself says what was not in sync.
  const refugeAge = v.now - (v.launchedAt.get(refuge.instance!.id) ?? 0);
  if (refuge.health?.sessionsInSync !== true && refugeAge < SYNC_GRACE_MS) {
    return { kind: 'wait', reason: `slot ${refuge.group.slot}'s new instance ${refuge.instance!.id} is ready; waiting for its sessions to be in sync with the owner's before the VIP moves there` };
  }
  return {
    kind: 'replace',
    slot: owner.group.slot,
    groupName: owner.group.groupName,
    instanceId: owner.instance!.id,
    owner: true,
    reason: `slot ${owner.group.slot} holds the VIP: replaced last, its terminating hook moves the VIP (planned) to slot ${refuge.group.slot}'s new instance`,
  };
}
