import { describe, expect, it } from 'vitest';
import { type Clock, DeadlineExceededError, pollUntil } from '../../lambda/failover/clock.ts';

/** A clock that moves only when slept on, or when a look takes time. */
function fakeClock(): Clock & { t: number } {
  const c = { t: 0, now: () => c.t, sleep: async (ms: number) => void (c.t += ms) };
  return c;
}

/** Looks that each take `callMs` and answer once `readyAt` has passed (checked at the end of the call, as AWS answers). */
async function looks(callMs: number, readyAt: number) {
  const clock = fakeClock();
  const starts: number[] = [];
  const v = await pollUntil(clock, 'x', 60_000, async () => {
    starts.push(clock.t);
    clock.t += callMs;
    return clock.t >= readyAt ? 'ok' : undefined;
  }, { baseMs: 500, maxMs: 1500 });
  return { v, starts, at: clock.t };
}

describe('pollUntil', () => {
  it('backs off ×1.6 after each look, capped', async () => {
    const { starts } = await looks(0, 5000);
    expect(starts).toEqual([0, 500, 1300, 2580, 4080, 5580]);
  });

  it('gives up at the deadline', async () => {
    const clock = fakeClock();
    await expect(pollUntil(clock, 'never', 3000, async () => undefined)).rejects.toBeInstanceOf(DeadlineExceededError);
    expect(clock.t).toBe(3000);
  });
});
