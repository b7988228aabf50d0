/**
 * The lease keeper over a lease with the real conditional semantics (an in-memory stand-in) and a
 * manual clock: a run that lives keeps its lease through any stall, one that died frees it within
 * the lease's lifetime, and a run whose lease was taken over stops at its next fence.
 */
import { describe, expect, it } from 'vitest';
import type { Clock } from '../../lambda/failover/clock.ts';
import { LeaseLostError } from '../../lambda/failover/lease.ts';
import { LeaseKeeper } from '../../lambda/failover/lease-keeper.ts';

const TTL = 9_000;
const RENEW = 3_000;

/** A manual clock: sleep and idle resolve as time is advanced past their wake-up. */
class ManualClock implements Clock {
  t = 0;
  private waiting: { at: number; resolve: () => void }[] = [];
  now = () => this.t;
  sleep = (ms: number) => new Promise<void>((resolve) => this.waiting.push({ at: this.t + ms, resolve }));
  idle = (ms: number) => this.sleep(ms);
  /** Moves time on in 100 ms steps, letting every woken loop (and its awaited renewals) run. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    while (this.t < end) {
      this.t = Math.min(end, this.t + 100);
      const due = this.waiting.filter((w) => w.at <= this.t);
      this.waiting = this.waiting.filter((w) => w.at > this.t);
      for (const w of due) w.resolve();
      for (let i = 0; i < 5; i++) await Promise.resolve();
    }
  }
}

/** DynamoDB's conditional writes, in memory: take when free or expired; renew only as the holder of this epoch. */
class MemoryLease {
  holder: string | undefined;
  epoch = 0;
  expiresAt = 0;
  renewCalls = 0;
  failNext = 0;
  private readonly clock: ManualClock;
  constructor(clock: ManualClock) {
    this.clock = clock;
  }
  take(holder: string): number | undefined {
    if (this.holder !== undefined && this.expiresAt >= this.clock.t) return undefined;
    this.holder = holder;
    this.expiresAt = this.clock.t + TTL;
    return ++this.epoch;
  }
  async renew(holder: string, epoch: number, now: number): Promise<void> {
    this.renewCalls++;
    if (this.failNext > 0) {
      this.failNext--;
      throw Object.assign(new Error('ProvisionedThroughputExceededException'), { name: 'ProvisionedThroughputExceededException' });
    }
    if (this.holder !== holder || this.epoch !== epoch) throw new LeaseLostError(epoch);
    this.expiresAt = now + TTL;
  }
}

function keeperFor(lease: MemoryLease, clock: ManualClock, holder: string) {
  const epoch = lease.take(holder)!;
  const keeper = new LeaseKeeper({ lease, clock, holder, epoch, renewEveryMs: RENEW });
  keeper.start();
  return keeper;
}

describe('the lease keeper', () => {
  it('keeps the lease of a run that stalls but lives: no other run can take it, however long the stall', async () => {
    const clock = new ManualClock();
    const lease = new MemoryLease(clock);
    const keeper = keeperFor(lease, clock, 'run-a');
    // A 60 s stall (one call that hangs, a long wait): another run tries every second meanwhile.
    for (let s = 0; s < 60; s++) {
      await clock.advance(1000);
      expect(lease.take('run-b'), `taken over after ${s + 1} s`).toBeUndefined();
    }
    // Renewed about every 3 s, not more.
    expect(lease.renewCalls).toBeGreaterThanOrEqual(18);
    expect(lease.renewCalls).toBeLessThanOrEqual(21);
    await expect(keeper.fence()).resolves.toBeUndefined();
    keeper.stop();
  });

  it('a run that died (its keeper stopped with it) frees the lease within its lifetime', async () => {
    const clock = new ManualClock();
    const lease = new MemoryLease(clock);
    const keeper = keeperFor(lease, clock, 'run-a');
    await clock.advance(7_000);
    keeper.stop(); // the process is gone: no more renewals
    const diedAt = clock.t;
    let takenAt: number | undefined;
    while (takenAt === undefined) {
      await clock.advance(100);
      if (lease.take('run-b') !== undefined) takenAt = clock.t;
    }
    expect(takenAt - diedAt).toBeLessThanOrEqual(TTL + 100);
  });

  it('rides out failed renewals (throttling) and still renews before the lease runs out', async () => {
    const clock = new ManualClock();
    const lease = new MemoryLease(clock);
    const keeper = keeperFor(lease, clock, 'run-a');
    lease.failNext = 3; // three renewals in a row throttled
    for (let s = 0; s < 20; s++) {
      await clock.advance(1000);
      expect(lease.take('run-b')).toBeUndefined();
    }
    expect(keeper.renewalFailures).toBe(3);
    keeper.stop();
  });

  it('a run whose lease was taken over (renewals lost while it was cut off) stops at its next fence', async () => {
    const clock = new ManualClock();
    const lease = new MemoryLease(clock);
    const keeper = keeperFor(lease, clock, 'run-a');
    lease.failNext = 1000; // cut off from DynamoDB
    await clock.advance(TTL + 1000);
    expect(lease.take('run-b')).toBeDefined();
    lease.failNext = 0;
    await expect(keeper.fence()).rejects.toBeInstanceOf(LeaseLostError);
    await expect(keeper.keepAlive()).rejects.toBeInstanceOf(LeaseLostError);
    keeper.stop();
  });

  it('stops renewing once the run ends (a released lease is never taken back)', async () => {
    const clock = new ManualClock();
    const lease = new MemoryLease(clock);
    const keeper = keeperFor(lease, clock, 'run-a');
    await clock.advance(4000);
    keeper.stop();
    const calls = lease.renewCalls;
    await clock.advance(30_000);
    expect(lease.renewCalls).toBe(calls);
  });
});
