import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type PlacementGroup, type PlacementSlot, placeGroups } from '../../lambda/failover/placement.ts';

const slots = (n: number, azs = 3, down: number[] = []): PlacementSlot[] => Array.from({ length: n }, (_, i) => ({ slot: i, az: `az${i % azs}`, healthy: !down.includes(i), ready: true }));
const groups = (owners: (number | undefined)[]): PlacementGroup[] => owners.map((owner, i) => ({ group: `g${String(i).padStart(2, '0')}`, owner, preferredSlot: i % 6 }));
/** Owners after the moves. */
const after = (gs: PlacementGroup[], moves: { group: string; to: number }[]) => gs.map((g) => ({ ...g, owner: moves.find((m) => m.group === g.group)?.to ?? g.owner }));
const countBySlot = (gs: PlacementGroup[]) => gs.reduce((m, g) => m.set(g.owner!, (m.get(g.owner!) ?? 0) + 1), new Map<number, number>());

describe('placeGroups', () => {
  it('an AZ outage: 20 groups over 6 slots in 3 AZs, the AZ holding 7 lost — every one of the 7 moves in one run, to the other AZs, nobody above the bound, nobody else moves', () => {
    // Slots 0 and 3 are az0; they hold 7 groups.
    const owners = [0, 0, 0, 0, 3, 3, 3, 1, 1, 1, 2, 2, 2, 4, 4, 4, 5, 5, 5, 1];
    const gs = groups(owners);
    const p = placeGroups(gs, slots(6, 3, [0, 3]), { maxMovesPerRun: 0, failback: false });
    expect(p.bound).toBe(Math.ceil(20 / 4) + 1);
    expect(p.moves).toHaveLength(7);
    expect(p.moves.every((m) => m.why === 'owner-gone' && ![0, 3].includes(m.to))).toBe(true);
    expect(p.unplaced).toEqual([]);
    for (const [, n] of countBySlot(after(gs, p.moves))) expect(n).toBeLessThanOrEqual(p.bound);
  });

  it('eni: a slot takes no more groups than its instance can attach interfaces for; the rest are reported unplaced, not overfilled', () => {
    // Six slots, one free interface each (c7g.large: 3 interfaces, two of them the primary and the slot's); az0 (0, 3) lost.
    const capacity = new Map([0, 1, 2, 3, 4, 5].map((n) => [n, 1]));
    const p = placeGroups(groups([0, 3, 1, 2]), slots(6, 3, [0, 3]), { maxMovesPerRun: 0, failback: false, capacity });
    expect(p.moves.map((m) => m.to).sort()).toEqual([4, 5]);
    // Five groups on four survivors of one interface each: one cannot be placed, and says why.
    const q = placeGroups(groups([0, 3, 1, 2, 4]), slots(6, 3, [0, 3]), { maxMovesPerRun: 0, failback: false, capacity: new Map([...capacity].map(([k]) => [k, 1])) });
    expect(q.moves).toHaveLength(1);
    expect(q.unplaced).toEqual([{ group: expect.any(String), why: 'every usable slot is full (at the spread bound or its interface limit)' }]);
  });

  it('prefers another AZ than the last owner’s, then the least loaded slot', () => {
    const s: PlacementSlot[] = [
      { slot: 0, az: 'a', healthy: false, ready: true },
      { slot: 1, az: 'a', healthy: true, ready: true },
      { slot: 2, az: 'b', healthy: true, ready: true },
    ];
    const p = placeGroups([{ group: 'g', owner: 0 }, { group: 'h', owner: 2 }], s, { maxMovesPerRun: 1, failback: false });
    expect(p.moves).toEqual([{ group: 'g', from: 0, to: 2, why: 'owner-gone' }]);
  });

  it('never places on a slot that is not ready, says so when nothing is usable, and moves nothing then', () => {
    const s = slots(3).map((x) => ({ ...x, ready: x.slot === 2 ? false : x.ready, healthy: x.slot !== 0 && x.slot !== 1 }));
    const p = placeGroups(groups([0, 1]), s, { maxMovesPerRun: 5, failback: true });
    expect(p.moves).toEqual([]);
    expect(p.unplaced.map((u) => u.why)).toEqual(['no slot is healthy and ready', 'no slot is healthy and ready']);
  });

  it('stays put when nothing is wrong; sheds a slot above the bound and fails back only within the run’s budget', () => {
    const gs = groups([0, 0, 0, 0, 0, 0]);
    // Six groups all on slot 0 (others just became usable): bound ⌈6/3⌉+1 = 3 → three must leave, one per run with budget 1.
    const p = placeGroups(gs, slots(3), { maxMovesPerRun: 1, failback: false });
    expect(p.moves).toEqual([{ group: 'g05', from: 0, to: 1, why: 'rebalance' }]);
    const settled = groups([0, 1, 2, 0, 1, 2]);
    expect(placeGroups(settled, slots(3), { maxMovesPerRun: 5, failback: false }).moves).toEqual([]);
    // With failback, a group away from its usable preferred slot goes home (budget permitting).
    const away: PlacementGroup[] = [{ group: 'a', owner: 1, preferredSlot: 0 }, { group: 'b', owner: 2, preferredSlot: 0 }];
    expect(placeGroups(away, slots(3), { maxMovesPerRun: 1, failback: true }).moves).toEqual([{ group: 'a', from: 1, to: 0, why: 'failback' }]);
  });

  it('for any snapshot: every group with a usable slot available is owned by one, nobody is above the bound when there is room, a second run changes nothing, and the order of the input does not matter', () => {
    const arb = fc.record({
      n: fc.integer({ min: 2, max: 6 }),
      azs: fc.integer({ min: 1, max: 3 }),
      owners: fc.array(fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }), { minLength: 1, maxLength: 20 }),
      down: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }),
    });
    fc.assert(
      fc.property(arb, ({ n, azs, owners, down }) => {
        const s = slots(n, azs, down);
        const gs = groups(owners.map((o) => (o !== undefined && o < n ? o : undefined)));
        const usable = s.filter((x) => x.healthy && x.ready).length;
        const p = placeGroups(gs, s, { maxMovesPerRun: 100, failback: false });
        const placed = after(gs, p.moves);
        if (usable === 0) {
          expect(p.moves).toEqual([]);
          return;
        }
        for (const g of placed) expect(s.find((x) => x.slot === g.owner)?.healthy, g.group).toBe(true);
        for (const [, c] of countBySlot(placed)) expect(c).toBeLessThanOrEqual(p.bound);
        // Stable: the next run from the new state moves nothing.
        expect(placeGroups(placed, s, { maxMovesPerRun: 100, failback: false }).moves).toEqual([]);
        // Deterministic whatever the order the snapshot lists things in.
        expect(placeGroups([...gs].reverse(), [...s].reverse(), { maxMovesPerRun: 100, failback: false }).moves).toEqual(p.moves);
      }),
      { numRuns: 400 },
    );
  });
});
