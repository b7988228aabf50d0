import { describe, expect, it } from 'vitest';
import type { Command } from '../../lambda/failover/events.ts';
import { type GroupRunner, GroupsCoordinator } from '../../lambda/failover/groups.ts';
import type { Result } from '../../lambda/failover/orchestrator.ts';
import type { InstanceView } from '../../lambda/failover/snapshot.ts';
import type { Clock } from '../../lambda/failover/clock.ts';

const NOW = 1_800_000_000_000;
const clock: Clock = { now: () => NOW, sleep: async () => undefined };
const AZS = ['us-east-1a', 'us-east-1b', 'us-east-1c'];

/** Six slots, two per AZ (slot i in AZS[i % 3]); `dead` ones stopped. */
function instances(dead: (i: number) => boolean = () => false): InstanceView[] {
  return Array.from({ length: 6 }, (_, i) => ({
    id: `i-${i}`,
    index: i,
    az: AZS[i % 3]!,
    state: dead(i) ? 'stopped' : 'running',
    statusOk: true,
    lastHeartbeatAt: NOW - 1000,
    sessionsInSync: true,
    ready: true,
    securityGroupIds: [],
    usedDeviceIndexes: [0, 1],
  }));
}

/** 20 groups; group k owned by slot k % 6 (the AZ of slots 0 and 3 holds 7 of them). Each run "moves" its group where placed. */
function setup(world: InstanceView[], owners = (k: number) => `i-${k % 6}`, o: { failback?: boolean } = {}) {
  const runs: { group: string; command: Command['kind']; placedTo?: string; steadyMove?: string }[] = [];
  const groups: GroupRunner[] = Array.from({ length: 20 }, (_, k) => ({
    name: `g${String(k).padStart(2, '0')}`,
    preferredSlot: k % 6,
    orchestrator: {
      owner: async () => owners(k),
      run: async (command, _deadline, placement = {}) => {
        runs.push({ group: `g${String(k).padStart(2, '0')}`, command: command.kind, ...(placement.placedTo ? { placedTo: placement.placedTo } : {}), ...(placement.steadyMove ? { steadyMove: placement.steadyMove } : {}) });
        return { ok: true, outcome: placement.placedTo ? 'converged' : 'no-op', owner: placement.placedTo ?? owners(k), moved: !!placement.placedTo } as Result;
      },
    },
  }));
  const c = new GroupsCoordinator({ groups, observeInstances: async () => world, clock, staleMs: 30_000, ...(o.failback ? { failback: true } : {}) });
  return { c, runs };
}

describe('several VIP groups in one run', () => {
  it('an AZ lost: one trigger moves every group it held, spread over the survivors in other AZs; the others are not touched', async () => {
    const world = instances((i) => AZS[i % 3] === 'us-east-1a');
    const { c, runs } = setup(world);
    const r = await c.run({ kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' }, NOW + 60_000);
    expect(r.ok).toBe(true);
    const lost = Array.from({ length: 20 }, (_, k) => k).filter((k) => k % 3 === 0).map((k) => `g${String(k).padStart(2, '0')}`);
    expect(lost).toHaveLength(7);
    expect(runs.map((x) => x.group).sort()).toEqual(lost);
    const survivors = new Set(world.filter((i) => i.state === 'running').map((i) => i.id));
    for (const run of runs) expect(survivors.has(run.placedTo!)).toBe(true);
    // Spread: with the 13 groups that stayed, no survivor above ⌈20 / 4⌉ + 1.
    const load = new Map<string, number>();
    for (let k = 0; k < 20; k++) {
      const owner = runs.find((x) => x.group === `g${String(k).padStart(2, '0')}`)?.placedTo ?? `i-${k % 6}`;
      load.set(owner, (load.get(owner) ?? 0) + 1);
    }
    expect(Math.max(...load.values())).toBeLessThanOrEqual(r.placement.bound);
    expect(r.placement.bound).toBe(6);
    expect(r.placement.unplaced).toEqual([]);
  });

  it('the fast path from one instance moves that instance’s groups only, even while its heartbeat is still fresh', async () => {
    const { c, runs } = setup(instances());
    await c.run({ kind: 'failover', from: 'i-4', reason: 'peer-heartbeat-lost', via: 'fast-path' }, NOW + 60_000);
    expect(runs.map((x) => x.group)).toEqual(['g04', 'g10', 'g16']);
    for (const run of runs) expect(run.placedTo).not.toBe('i-4');
    // …and never to the lost instance's AZ first.
    for (const run of runs) expect(run.placedTo).not.toBe('i-1');
  });

  it('an alarm touches no group whose owner is fine (it places those nobody holds); a reconcile runs every group', async () => {
    const owners = (k: number) => (k < 3 ? undefined : `i-${k % 6}`);
    const a = setup(instances(), owners as (k: number) => string);
    await a.c.run({ kind: 'alarm', alarmName: 'x', instanceIndex: 1, alarmKind: 'heartbeat', state: 'OK', via: 'direct' }, NOW + 60_000);
    // OK alarms still place unowned groups (level-triggered), and touch nothing else.
    expect(a.runs.map((x) => x.group)).toEqual(['g00', 'g01', 'g02']);
    const b = setup(instances(), owners as (k: number) => string);
    await b.c.run({ kind: 'reconcile', via: 'schedule' }, NOW + 60_000);
    expect(b.runs).toHaveLength(20);
    expect(b.runs.filter((x) => x.placedTo).map((x) => x.group)).toEqual(['g00', 'g01', 'g02']);
  });

  it('a reconcile makes one steady move per run: a group off a slot above the spread bound (slots came back), or with failback to its preferred slot; a trigger makes none', async () => {
    // All 20 groups on slots 0 and 1 (what an outage of the other slots left): 10 each, bound ⌈20 / 6⌉ + 1 = 5.
    const crowded = setup(instances(), (k) => `i-${k % 2}`);
    await crowded.c.run({ kind: 'alarm', alarmName: 'x', instanceIndex: 3, alarmKind: 'heartbeat', state: 'OK', via: 'direct' }, NOW + 60_000);
    expect(crowded.runs.filter((r) => r.steadyMove)).toEqual([]);
    await crowded.c.run({ kind: 'reconcile', via: 'schedule' }, NOW + 60_000);
    const steady = crowded.runs.filter((r) => r.steadyMove);
    expect(steady).toHaveLength(1);
    expect(steady[0]).toMatchObject({ steadyMove: 'rebalance' });
    expect(['i-0', 'i-1']).not.toContain(steady[0]!.placedTo);
    // Spread as placed, failback on: one group back to its preferred slot per reconcile; without failback, none.
    const off = (k: number) => `i-${(k + 1) % 6}`;
    const back = setup(instances(), off, { failback: true });
    await back.c.run({ kind: 'reconcile', via: 'schedule' }, NOW + 60_000);
    const moved = back.runs.filter((r) => r.steadyMove);
    expect(moved).toHaveLength(1);
    const k = Number(moved[0]!.group.slice(1));
    expect(moved[0]).toMatchObject({ steadyMove: 'failback', placedTo: `i-${k % 6}` });
    const never = setup(instances(), off);
    await never.c.run({ kind: 'reconcile', via: 'schedule' }, NOW + 60_000);
    expect(never.runs.filter((r) => r.steadyMove)).toEqual([]);
  });

  it('an operator’s move, status and teardown go to every group as asked', async () => {
    const { c, runs } = setup(instances());
    const r = await c.run({ kind: 'failover', to: 'i-3', reason: 'maintenance', via: 'manual' }, NOW + 60_000);
    expect(runs).toHaveLength(20);
    expect(runs.every((x) => x.placedTo === undefined)).toBe(true);
    expect(r.groups).toHaveLength(20);
  });

  it('refuses two groups with one name', () => {
    const g: GroupRunner = { name: 'a', orchestrator: { owner: async () => undefined, run: async () => ({}) as Result } };
    expect(() => new GroupsCoordinator({ groups: [g, g], observeInstances: async () => [], clock, staleMs: 1 })).toThrow(/distinct/);
  });
});
