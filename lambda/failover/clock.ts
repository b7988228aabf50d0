/** Time, injectable so that tests and the benchmark run in simulated time. */
export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
  /**
   * Waits about `ms` for a background loop (the lease's renewals). Real time: the same as sleep. A
   * simulated clock waits without moving its time on, so that a background loop never drives it.
   */
  idle?(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  // Unreferenced: a background loop never keeps the process (or a test) alive.
  idle: (ms) => new Promise((resolve) => setTimeout(resolve, ms).unref()),
};

export class DeadlineExceededError extends Error {
  constructor(what: string) {
    super(`${what}: ran out of time in this invocation; the next invocation resumes from the observed state`);
    this.name = 'DeadlineExceededError';
  }
}

/** Sleeps `ms`, or until the deadline if that comes first. */
export function sleepWithin(clock: Clock, ms: number, deadline: number): Promise<void> {
  return clock.sleep(Math.min(ms, Math.max(0, deadline - clock.now())));
}

/**
 * Polls `check` with exponential backoff (base, ×1.6, capped) until it returns a value,
 * or throws DeadlineExceededError at the deadline.
 */
export async function pollUntil<T>(
  clock: Clock,
  what: string,
  deadline: number,
  check: () => Promise<T | undefined>,
  opts: { baseMs?: number; maxMs?: number } = {},
): Promise<T> {
  let delay = opts.baseMs ?? 500;
  const max = opts.maxMs ?? 4000;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    const left = deadline - clock.now();
    if (left <= 0) throw new DeadlineExceededError(what);
    await clock.sleep(Math.min(delay, left));
    delay = Math.min(max, delay * 1.6);
  }
}
