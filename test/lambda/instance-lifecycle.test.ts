import { describe, expect, it } from 'vitest';
import type { Clock } from '../../lambda/failover/clock.ts';
import type { InstanceLifecycleCommand } from '../../lambda/failover/events.ts';
import { InstanceLifecycle, type InstanceLifecycleDeps } from '../../lambda/failover/instance-lifecycle.ts';
import type { Result } from '../../lambda/failover/orchestrator.ts';

const OLD = 'i-0000000000000000a';
const NEW = 'i-0000000000000000b';
const PEER = 'i-0000000000000000c';

function clock(): Clock & { t: number } {
  const c = { t: 0, now: () => c.t, sleep: async (ms: number) => void (c.t += ms) };
  return c;
}

const command = (transition: 'launching' | 'terminating', instanceId: string): InstanceLifecycleCommand => ({
  kind: 'instance-lifecycle',
  transition,
  instanceId,
  slot: 0,
  action: { autoScalingGroupName: 'loxiha-sim-slot0', lifecycleHookName: `loxiha-${transition}`, lifecycleActionToken: 'tok' },
});

const moveResult = (r: Partial<Result>): Result => ({ ok: true, command: 'failover', outcome: 'converged', reason: '', moved: false, steps: [], phases: {}, durationMs: 0, ec2Calls: 0, ec2Mutations: 0, sequentialMutations: 0, ...r });

function harness(o: { moves?: Result[]; eni?: () => { id: string; attachment?: { id: string; instanceId: string; status: string } } | undefined; actionGone?: boolean } = {}) {
  const calls: string[] = [];
  const c = clock();
  const moves = [...(o.moves ?? [])];
  const deps: InstanceLifecycleDeps = {
    ec2: {
      markDraining: async (id) => void calls.push(`draining ${id}`),
      slotInterface: async () => o.eni?.(),
      attachSlotInterface: async (eni, id) => void calls.push(`attach ${eni} ${id}`),
      disableInstanceSourceDestCheck: async (id) => void calls.push(`sdc-off ${id}`),
    },
    actions: {
      complete: async (a, result) => (calls.push(`complete ${a.instanceId} ${result}`), !o.actionGone),
      heartbeat: async (a) => (calls.push(`heartbeat ${a.instanceId}`), !o.actionGone),
    },
    moveOff: async (from) => (calls.push(`move-off ${from}`), moves.length > 1 ? moves.shift()! : moves[0]!),
    clock: c,
    log: () => {},
    notify: async (n) => void calls.push(`notify ${n.transition} ${n.instanceId} slot${n.slot}`),
    retryMs: 10_000,
    heartbeatMs: 30_000,
  };
  return { calls, c, lifecycle: new InstanceLifecycle(deps) };
}

describe('terminating', () => {
  it('tags the instance draining, moves the VIP off it, and only then lets it go', async () => {
    const h = harness({ moves: [moveResult({ moved: true, owner: PEER, previousOwner: OLD })] });
    const r = await h.lifecycle.run(command('terminating', OLD), 600_000);
    expect(h.calls).toEqual([`draining ${OLD}`, `notify terminating ${OLD} slot0`, `move-off ${OLD}`, `complete ${OLD} CONTINUE`]);
    expect(r).toMatchObject({ ok: true, outcome: 'completed', result: 'CONTINUE', move: { moved: true, owner: PEER } });
  });

  it('lets a backup go at once (the VIP is elsewhere)', async () => {
    const h = harness({ moves: [moveResult({ outcome: 'no-op', owner: PEER, reason: 'owner is healthy' })] });
    const r = await h.lifecycle.run(command('terminating', OLD), 600_000);
    expect(h.calls).toEqual([`draining ${OLD}`, `notify terminating ${OLD} slot0`, `move-off ${OLD}`, `complete ${OLD} CONTINUE`]);
    expect(r.ok).toBe(true);
  });

  it('holds the termination while the VIP has nowhere to go, extending the action, and lets it go once the other slot is back', async () => {
    const nowhere = moveResult({ ok: false, outcome: 'no-healthy-instance', reason: 'no healthy instance', owner: OLD, previousOwner: OLD });
    const h = harness({ moves: [nowhere, nowhere, nowhere, nowhere, moveResult({ moved: true, owner: NEW })] });
    const r = await h.lifecycle.run(command('terminating', OLD), 600_000);
    expect(h.calls.filter((c) => c.startsWith('move-off'))).toHaveLength(5);
    expect(h.calls.filter((c) => c.startsWith('heartbeat')).length).toBeGreaterThanOrEqual(1);
    expect(h.calls.at(-1)).toBe(`complete ${OLD} CONTINUE`);
    expect(r).toMatchObject({ ok: true, move: { owner: NEW } });
  });

  it('lets an instance that does not hold the VIP go even when nowhere is healthy (of two asked at once, it goes first)', async () => {
    const h = harness({ moves: [moveResult({ ok: false, outcome: 'no-healthy-instance', reason: 'no healthy instance', owner: PEER, previousOwner: PEER })] });
    const r = await h.lifecycle.run(command('terminating', OLD), 600_000);
    expect(h.calls).toEqual([`draining ${OLD}`, `notify terminating ${OLD} slot0`, `move-off ${OLD}`, `complete ${OLD} CONTINUE`]);
    expect(r).toMatchObject({ ok: true, outcome: 'completed', reason: expect.stringMatching(/does not hold the VIP/) });
  });

  it('does not let go after a move that ran out of time half-way (the VIP on no instance): it tries again', async () => {
    const halfway = moveResult({ ok: false, outcome: 'timed-out', reason: 'ran out of time in this invocation', owner: undefined, previousOwner: undefined });
    const h = harness({ moves: [halfway, moveResult({ moved: true, owner: PEER, previousOwner: OLD })] });
    const r = await h.lifecycle.run(command('terminating', OLD), 600_000);
    expect(h.calls.filter((c) => c.startsWith('move-off'))).toHaveLength(2);
    expect(r).toMatchObject({ ok: true, move: { moved: true, owner: PEER } });
  });

  it('never completes while the VIP cannot leave: at the deadline it fails (to be delivered again)', async () => {
    const h = harness({ moves: [moveResult({ ok: false, outcome: 'no-healthy-instance', reason: 'no healthy instance', owner: OLD, previousOwner: OLD })] });
    const r = await h.lifecycle.run(command('terminating', OLD), 120_000);
    expect(r).toMatchObject({ ok: false, outcome: 'timed-out' });
    expect(h.calls.some((c) => c.startsWith('complete'))).toBe(false);
  });
});

describe('launching', () => {
  it('attaches the slot’s interface to the new instance, turns source/dest check off, then completes', async () => {
    const h = harness({ eni: () => ({ id: 'eni-slot0' }) });
    const r = await h.lifecycle.run(command('launching', NEW), 600_000);
    // Operators hear of it: the slot has an instance again.
    expect(h.calls).toEqual([`attach eni-slot0 ${NEW}`, `sdc-off ${NEW}`, `complete ${NEW} CONTINUE`, `notify launching ${NEW} slot0`]);
    expect(r).toMatchObject({ ok: true, outcome: 'completed' });
  });

  it('waits while the instance being replaced still holds the interface, then takes it', async () => {
    let looks = 0;
    const h = harness({ eni: () => (++looks < 4 ? { id: 'eni-slot0', attachment: { id: 'a-1', instanceId: OLD, status: 'attached' } } : { id: 'eni-slot0' }) });
    const r = await h.lifecycle.run(command('launching', NEW), 600_000);
    expect(looks).toBe(4);
    expect(h.calls.filter((c) => c.startsWith('attach'))).toEqual([`attach eni-slot0 ${NEW}`]);
    expect(h.calls.at(-2)).toBe(`complete ${NEW} CONTINUE`);
    expect(r.ok).toBe(true);
  });

  it('does not attach again what an earlier delivery attached (idempotent)', async () => {
    const h = harness({ eni: () => ({ id: 'eni-slot0', attachment: { id: 'a-2', instanceId: NEW, status: 'attached' } }) });
    await h.lifecycle.run(command('launching', NEW), 600_000);
    expect(h.calls).toEqual([`sdc-off ${NEW}`, `complete ${NEW} CONTINUE`, `notify launching ${NEW} slot0`]);
  });

  it('says so when the action had already ended, and fails without a slot interface', async () => {
    const gone = harness({ eni: () => ({ id: 'eni-slot0' }), actionGone: true });
    expect(await gone.lifecycle.run(command('launching', NEW), 600_000)).toMatchObject({ ok: true, outcome: 'already-completed' });
    const none = harness({ eni: () => undefined });
    await expect(none.lifecycle.run(command('launching', NEW), 600_000)).rejects.toThrow(/slot 0 has no interface/);
  });
});
