import { describe, expect, it } from 'vitest';
import { decide, type Policy } from '../../lambda/failover/decide.ts';
import type { InstanceView, Observed } from '../../lambda/failover/snapshot.ts';

const NOW = 1_800_000_000_000;
const policy: Policy = { failback: 'never', holdDownMs: 60_000, staleMs: 30_000 };

function inst(index: number, o: Partial<InstanceView> = {}): InstanceView {
  return {
    id: `i-00000000000000${index}0`,
    index,
    az: `us-east-1${'ab'[index]}`,
    state: 'running',
    statusOk: true,
    lastHeartbeatAt: NOW - 5000,
    sessionsInSync: true,
    securityGroupIds: ['sg-1'],
    usedDeviceIndexes: [0],
    ...o,
  };
}

function snap(...instances: InstanceView[]): Observed {
  // The decision sees the instances only, whatever the strategy.
  return { now: NOW, instances };
}

const A = inst(0).id;
const B = inst(1).id;

describe('decide', () => {
  it('a VIP group that must move goes where the placement put it (a healthy candidate), never moves for it, and ignores an unhealthy one', () => {
    const C = inst(2, { az: 'us-east-1c' });
    const three = snap(inst(0, { state: 'stopped' }), inst(1), C);
    expect(decide(three, A, policy, { placedTo: C.id })).toMatchObject({ outcome: 'move', owner: C.id, from: A });
    expect(decide(three, A, policy)).toMatchObject({ outcome: 'move', owner: B });
    expect(decide(snap(inst(0), inst(1), C), A, policy, { placedTo: C.id })).toMatchObject({ outcome: 'keep', owner: A });
    expect(decide(snap(inst(0, { state: 'stopped' }), inst(1), inst(2, { ready: false })), A, policy, { placedTo: inst(2).id })).toMatchObject({ outcome: 'move', owner: B });
  });

  it('keeps a healthy owner', () => {
    expect(decide(snap(inst(0), inst(1)), A, policy)).toMatchObject({ outcome: 'keep', owner: A });
  });

  it('never places the VIP on an instance whose agent reports not ready, and moves it off an owner that is not', () => {
    expect(decide(snap(inst(0, { ready: false }), inst(1)), undefined, policy)).toMatchObject({ outcome: 'move', owner: B });
    const off = decide(snap(inst(0, { ready: false }), inst(1, { ready: true })), A, policy);
    expect(off).toMatchObject({ outcome: 'move', owner: B, from: A });
    expect(off.health.find((h) => h.instanceId === A)).toMatchObject({ healthy: false, why: 'agent reports not ready (kernel prerequisites unmet)' });
    // Both not ready: nowhere to go.
    expect(decide(snap(inst(0, { ready: false }), inst(1, { ready: false })), undefined, policy)).toMatchObject({ outcome: 'no-healthy-instance' });
    // An agent that never reported readiness (older than it) is judged by its heartbeat as before.
    expect(decide(snap(inst(0, { ready: undefined }), inst(1)), A, policy)).toMatchObject({ outcome: 'keep', owner: A });
  });

  it('places the VIP on the preferred healthy instance when nobody holds it', () => {
    expect(decide(snap(inst(0), inst(1)), undefined, policy)).toMatchObject({ outcome: 'move', owner: A, from: undefined });
  });

  it.each([
    ['stopped', { state: 'stopped' as const }],
    ['impaired', { statusOk: false }],
    ['stale heartbeat', { lastHeartbeatAt: NOW - 31_000 }],
    ['never beat', { lastHeartbeatAt: undefined }],
  ])('moves away from an owner that is %s', (_, o) => {
    expect(decide(snap(inst(0, o), inst(1)), A, policy)).toMatchObject({ outcome: 'move', owner: B, from: A, planned: false });
  });

  it.each([
    ['stopped', { state: 'stopped' as const }],
    ['stale', { lastHeartbeatAt: NOW - 60_000 }],
    ['impaired', { statusOk: false }],
  ])('never picks a survivor that is %s: no healthy instance, change nothing', (_, o) => {
    const d = decide(snap(inst(0, { state: 'stopped' }), inst(1, o)), A, policy);
    expect(d.outcome).toBe('no-healthy-instance');
    expect(d.reason).toMatch(/changing nothing/);
  });

  it('believes a report against the owner outside the hold-down', () => {
    expect(decide(snap(inst(0), inst(1)), A, policy, { suspect: A, lastMoveAt: NOW - 120_000 })).toMatchObject({ outcome: 'move', owner: B });
  });

  it('does not flap: a report against a still-healthy owner inside the hold-down is ignored', () => {
    expect(decide(snap(inst(0), inst(1)), B, policy, { suspect: B, lastMoveAt: NOW - 10_000 })).toMatchObject({ outcome: 'keep', owner: B });
  });

  it('moves inside the hold-down when the owner is really down', () => {
    expect(decide(snap(inst(0), inst(1, { state: 'stopped' })), B, policy, { suspect: B, lastMoveAt: NOW - 10_000 })).toMatchObject({ outcome: 'move', owner: A });
  });

  it('ignores a report against an instance that is not the owner', () => {
    expect(decide(snap(inst(0), inst(1)), A, policy, { suspect: B })).toMatchObject({ outcome: 'keep', owner: A });
  });

  it('prefers a survivor whose session table is in sync', () => {
    const d = decide(snap(inst(0, { state: 'stopped' }), inst(1, { sessionsInSync: false }), inst(2, { az: 'us-east-1c' })), A, policy);
    expect(d).toMatchObject({ outcome: 'move', owner: inst(2).id });
  });

  it("prefers a survivor that serves the owner's services, and when the only one left does not, moves there all the same and says so", () => {
    const d = decide(snap(inst(0, { state: 'stopped' }), inst(1, { servicesMatch: false }), inst(2, { az: 'us-east-1c', servicesMatch: true })), A, policy);
    expect(d).toMatchObject({ outcome: 'move', owner: inst(2).id });
    expect(d.reason).not.toMatch(/services differ/);
    const only = decide(snap(inst(0, { state: 'stopped' }), inst(1, { servicesMatch: false })), A, policy);
    expect(only).toMatchObject({ outcome: 'move', owner: B });
    expect(only.reason).toMatch(/only healthy choice and its services differ from the owner's/);
  });

  it('a lost instance (its peer reported it) is no place for the VIP until it beats after the report', () => {
    const lost = { instanceId: B, at: NOW - 2000 };
    expect(decide(snap(inst(0), inst(1, { lastHeartbeatAt: NOW - 5000 })), A, policy, { to: B, lost })).toMatchObject({ outcome: 'rejected', reason: expect.stringMatching(/its peer lost it/) });
    expect(decide(snap(inst(0), inst(1, { lastHeartbeatAt: NOW - 1000 })), A, policy, { to: B, lost })).toMatchObject({ outcome: 'move', owner: B });
  });

  describe('failback', () => {
    const preferred: Policy = { ...policy, failback: 'preferred' };
    it('returns to instance 0 once healthy and outside the hold-down', () => {
      expect(decide(snap(inst(0), inst(1)), B, preferred, { lastMoveAt: NOW - 120_000 })).toMatchObject({ outcome: 'move', owner: A, planned: true });
    });
    it('waits out the hold-down before failing back', () => {
      expect(decide(snap(inst(0), inst(1)), B, preferred, { lastMoveAt: NOW - 30_000 })).toMatchObject({ outcome: 'keep', owner: B });
    });
    it('a VIP group placed elsewhere while its owner is fine (rebalance, failback): a planned move there, outside the hold-down only, never to a silent instance', () => {
      const three = snap(inst(0), inst(1), inst(2, { az: 'us-east-1c' }));
      const C = inst(2).id;
      expect(decide(three, A, policy, { lastMoveAt: NOW - 120_000, placedTo: C, steadyMove: 'failback' })).toMatchObject({ outcome: 'move', owner: C, planned: true, reason: expect.stringMatching(/preferred slot/) });
      expect(decide(three, A, policy, { lastMoveAt: NOW - 120_000, placedTo: C, steadyMove: 'rebalance' })).toMatchObject({ outcome: 'move', owner: C, reason: expect.stringMatching(/spread bound/) });
      expect(decide(three, A, policy, { lastMoveAt: NOW - 30_000, placedTo: C, steadyMove: 'rebalance' })).toMatchObject({ outcome: 'keep', owner: A });
      expect(decide(snap(inst(0), inst(1), inst(2, { az: 'us-east-1c', lastHeartbeatAt: undefined })), A, policy, { placedTo: C, steadyMove: 'rebalance' })).toMatchObject({ outcome: 'keep', owner: A });
      // Without steadyMove, a placement never moves a VIP whose owner is fine.
      expect(decide(three, A, policy, { lastMoveAt: NOW - 120_000, placedTo: C })).toMatchObject({ outcome: 'keep', owner: A });
    });
    it('never fails back with failback=never', () => {
      expect(decide(snap(inst(0), inst(1)), B, policy, { lastMoveAt: NOW - 999_000 })).toMatchObject({ outcome: 'keep', owner: B });
    });
  });

  describe('manual target', () => {
    it('moves to a healthy target, as a planned move when the owner is alive', () => {
      expect(decide(snap(inst(0), inst(1)), A, policy, { to: B })).toMatchObject({ outcome: 'move', owner: B, planned: true });
    });
    it('rejects an unhealthy or unknown target', () => {
      expect(decide(snap(inst(0), inst(1, { state: 'stopped' })), A, policy, { to: B })).toMatchObject({ outcome: 'rejected' });
      expect(decide(snap(inst(0), inst(1)), A, policy, { to: 'i-ffffffffffffffff0' })).toMatchObject({ outcome: 'rejected' });
    });
    it('keeps when the target already holds the VIP', () => {
      expect(decide(snap(inst(0), inst(1)), B, policy, { to: B })).toMatchObject({ outcome: 'keep', owner: B });
    });
  });
});

describe('an instance its Auto Scaling group is replacing (draining)', () => {
  it('is never where the VIP goes, and the VIP leaves it', () => {
    expect(decide(snap(inst(0), inst(1, { draining: true })), A, policy)).toMatchObject({ outcome: 'keep', owner: A });
    const d = decide(snap(inst(0, { draining: true }), inst(1)), A, policy, { suspect: A, explicit: true });
    expect(d).toMatchObject({ outcome: 'move', owner: B, from: A });
    expect(d.health.find((h) => h.instanceId === A)).toMatchObject({ healthy: false, why: expect.stringMatching(/replacing it/) });
    expect(decide(snap(inst(0, { draining: true }), inst(1, { statusOk: false })), A, policy, { suspect: A, explicit: true }).outcome).toBe('no-healthy-instance');
  });
});
