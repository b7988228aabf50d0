/**
 * Where each VIP group should live (pure, beside ./decide.ts): from one observed snapshot of the
 * slots and the groups' owners, the moves a run makes. Deterministic — every input sorted, ties
 * broken by slot index and group name — so that concurrent runs reading the same snapshot agree.
 *
 * - A group whose owner is gone (no owner, or an owner not healthy or not ready) moves, whatever
 *   the run's move budget: an AZ outage moves every group it held, in one run.
 * - The target is a usable slot (healthy and ready) below the spread bound ⌈groups / usable slots⌉
 *   + 1 and within its capacity (eni: the interfaces its instance can attach), preferring a slot in
 *   another AZ than the group's last owner's (its AZ may be what failed), then the least loaded,
 *   then the group's preferred slot, then the lowest slot index.
 * - A group whose owner is usable stays (no flapping), except, within `maxMovesPerRun`: a slot above
 *   the bound (more slots became usable) sheds its groups to the least loaded, and, with failback,
 *   a group returns to its usable preferred slot.
 */

export interface PlacementSlot {
  slot: number;
  az: string;
  healthy: boolean;
  ready: boolean;
}

export interface PlacementGroup {
  group: string;
  /** The slot that owns it now; undefined: nobody (never placed, or its owner lost it). */
  owner: number | undefined;
  /** The AZ of the slot that last owned it (a move prefers another one). */
  lastOwnerAz?: string;
  /** Where it goes back to with failback. */
  preferredSlot?: number;
}

export interface PlacementOptions {
  /** Moves of groups whose owner is fine (rebalance, failback) per run; rescues are not counted. */
  maxMovesPerRun: number;
  failback: boolean;
  /**
   * How many groups each slot can hold at most, whatever the spread bound (eni: the interfaces its
   * instance type can attach beyond its own; a slot missing here has no such limit).
   */
  capacity?: ReadonlyMap<number, number>;
}

export type MoveReason = 'owner-gone' | 'rebalance' | 'failback';

export interface GroupMove {
  group: string;
  from: number | undefined;
  to: number;
  why: MoveReason;
}

export interface Placement {
  moves: GroupMove[];
  /** Groups that need an owner and got none (no usable slot with room), with why. */
  unplaced: { group: string; why: string }[];
  /** The spread bound used: no slot owns more groups than this. */
  bound: number;
}

export function placeGroups(groups: readonly PlacementGroup[], slots: readonly PlacementSlot[], o: PlacementOptions): Placement {
  const usable = [...slots].filter((s) => s.healthy && s.ready).sort((a, b) => a.slot - b.slot);
  const usableIds = new Set(usable.map((s) => s.slot));
  const azOf = new Map(slots.map((s) => [s.slot, s.az]));
  const sorted = [...groups].sort((a, b) => a.group.localeCompare(b.group));
  const bound = usable.length ? Math.ceil(groups.length / usable.length) + 1 : 0;
  const load = new Map<number, number>(usable.map((s) => [s.slot, 0]));
  const owner = new Map<string, number | undefined>();
  for (const g of sorted) {
    const mine = g.owner !== undefined && usableIds.has(g.owner) ? g.owner : undefined;
    owner.set(g.group, mine);
    if (mine !== undefined) load.set(mine, load.get(mine)! + 1);
  }
  const moves: GroupMove[] = [];
  const unplaced: Placement['unplaced'] = [];
  const move = (g: PlacementGroup, to: number, why: MoveReason) => {
    const from = owner.get(g.group);
    if (from !== undefined) load.set(from, load.get(from)! - 1);
    load.set(to, load.get(to)! + 1);
    owner.set(g.group, to);
    moves.push({ group: g.group, from: g.owner, to, why });
  };
  /** Groups slot `n` can still take: below the spread bound and within its capacity. */
  const room = (n: number) => Math.min(bound, o.capacity?.get(n) ?? Infinity) - load.get(n)!;
  /** The best usable slot for `g` with room, other than `not`. */
  const target = (g: PlacementGroup, not?: number): number | undefined =>
    usable
      .filter((s) => s.slot !== not && room(s.slot) > 0)
      .sort(
        (a, b) =>
          Number(a.az === g.lastOwnerAz) - Number(b.az === g.lastOwnerAz) ||
          load.get(a.slot)! - load.get(b.slot)! ||
          Number(b.slot === g.preferredSlot) - Number(a.slot === g.preferredSlot) ||
          a.slot - b.slot,
      )[0]?.slot;

  // Every group without a usable owner, whatever the budget.
  for (const g of sorted) {
    if (owner.get(g.group) !== undefined) continue;
    const to = target({ ...g, lastOwnerAz: g.lastOwnerAz ?? (g.owner !== undefined ? azOf.get(g.owner) : undefined) });
    if (to === undefined) unplaced.push({ group: g.group, why: !usable.length ? 'no slot is healthy and ready' : o.capacity?.size ? 'every usable slot is full (at the spread bound or its interface limit)' : 'every usable slot is at the spread bound' });
    else move(g, to, 'owner-gone');
  }
  let budget = o.maxMovesPerRun;
  // A slot above the bound sheds its groups (the last by name first), to the least loaded slots.
  for (const s of usable) {
    const held = sorted.filter((g) => owner.get(g.group) === s.slot).reverse();
    for (const g of held) {
      if (load.get(s.slot)! <= bound || budget === 0) break;
      const to = target({ ...g, lastOwnerAz: undefined }, s.slot);
      if (to === undefined) break;
      move(g, to, 'rebalance');
      budget--;
    }
  }
  if (o.failback) {
    for (const g of sorted) {
      if (budget === 0) break;
      const p = g.preferredSlot;
      if (p === undefined || owner.get(g.group) === p || !usableIds.has(p) || room(p) <= 0) continue;
      move(g, p, 'failback');
      budget--;
    }
  }
  return { moves, unplaced, bound };
}
