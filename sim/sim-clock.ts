/**
 * Virtual time for tests and the benchmark. Simulated time moves only when something
 * sleeps on this clock (modelled AWS latencies, polls, backoffs): a sleep of `ms` wakes
 * after `ms × scale` real milliseconds and then moves the clock to at least its wake
 * time. Concurrent sleeps overlap (two 400 ms calls in parallel cost 400 ms); the real
 * CPU time of moto and of our own code costs nothing, so figures do not depend on this
 * machine's speed.
 */
import type { Clock } from '../lambda/failover/clock.ts';

export class SimClock implements Clock {
  /** Real milliseconds per simulated one (see slower()). */
  scale: number;
  private t: number;

  constructor(scale: number, start = Date.now()) {
    this.scale = scale;
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  sleep(ms: number): Promise<void> {
    const wake = this.t + Math.max(0, ms);
    return new Promise((resolve) =>
      setTimeout(() => {
        if (wake > this.t) this.t = wake;
        resolve();
      }, Math.max(0, ms * this.scale)),
    );
  }

  /** Waits `ms` of simulated time's pace in real time, without moving simulated time (background loops). */
  idle(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms * this.scale)).unref());
  }

  /**
   * Runs `fn` with simulated time `factor` times slower. Many concurrent sleepers (runs waiting for
   * a lease, agents beating) move simulated time on while one run spends real time in moto; at a
   * larger scale real time weighs less against their sleeps.
   */
  async slower<T>(factor: number, fn: () => Promise<T>): Promise<T> {
    const scale = this.scale;
    this.scale = scale * factor;
    try {
      return await fn();
    } finally {
      this.scale = scale;
    }
  }

  /** Jumps simulated time forward without waiting (e.g. past a lease's expiry after a crash). */
  advance(ms: number): void {
    this.t += ms;
  }
}
