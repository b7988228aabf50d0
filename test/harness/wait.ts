/**
 * Waiting in tests: for a condition, with a deadline (never a fixed sleep where a condition can be
 * awaited); and, to show that something does not happen, a window named as such.
 */
export async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, ms = 5000, everyMs = 10): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Lets `ms` pass: for a test that something does not happen (a duplicate, a loss) within that long. */
export const quietWindow = (ms: number) => new Promise((r) => setTimeout(r, ms));
