import { describe, expect, it } from 'vitest';
import { type Clock, DeadlineExceededError, pollUntil } from '../../lambda/failover/clock.ts';

/** A clock that moves only when slept on, or when a look takes time. */
function fakeClock(): Clock & { t: number } {
  const c = { t: 0, now: () => c.t, sleep: async (ms: number) => void (c.t += ms) };
  return c;
}

/** Looks that each take `callMs` and answer once `readyAt` has passed (checked at the end of the call, as AWS answers). */
async function looks(fromStart: boolean, callMs: number, readyAt: number) {
  const clock = fakeClock();
  const starts: number[] = [];
  const v = await pollUntil(clock, 'x', 60_000, async () => {
    starts.push(clock.t);
    clock.t += callMs;
    return clock.t >= readyAt ? 'ok' : undefined;
  }, { baseMs: 500, maxMs: 1500, fromStart });
  return { v, starts, at: clock.t };
}

describe('pollUntil', () => {
  it('backs off ×1.6 after each look, capped', async () => {
    const { starts } = await looks(false, 0, 5000);
    expect(starts).toEqual([0, 500, 1300, 2580, 4080, 5580]);
  });

  it('with fromStart, a slow look is part of the wait: the next look starts `delay` after the last one started', async () => {
    // A 600 ms call answered NotFound until 2 s after a create: paced from the end, the third look
    // lands at 2.5 s and answers at 3.1 s; paced from the start, the answer comes at 2.0 s.
    const end = await looks(false, 600, 2000);
    const start = await looks(true, 600, 2000);
    expect(end.starts).toEqual([0, 1100, 2500]);
    expect(start.starts).toEqual([0, 600, 1400]);
    expect(start.at).toBe(2000);
    expect(end.at).toBe(3100);
    // A look quicker than the delay waits out the rest of it.
    expect((await looks(true, 100, 1400)).starts).toEqual([0, 500, 1300]);
  });

  it('gives up at the deadline', async () => {
    const clock = fakeClock();
    await expect(pollUntil(clock, 'never', 3000, async () => undefined, { fromStart: true })).rejects.toBeInstanceOf(DeadlineExceededError);
    expect(clock.t).toBe(3000);
  });
});
