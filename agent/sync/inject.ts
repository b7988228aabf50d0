/**
 * Thin adapter loading synced entries into this host's kernel: the lines collected while the
 * previous load ran go into one file in memory-backed storage and one `conntrack -R` (about 100k
 * entries/s here; one process per entry would be 360/s). Loads run one at a time, in order; each
 * resolves when its lines are in the kernel. A line the kernel refuses (an entry that already
 * exists, an update of one that is gone) does not stop the rest of the file.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Loads `text`: conntrack -R lines, newline-separated. */
export type LoadLines = (text: string) => Promise<void>;

/** Files left by agents killed during a load (their process is gone); others' are left alone. */
export function removeStaleLoadFiles(dir: string): number {
  let removed = 0;
  for (const name of readdirSync(dir)) {
    const m = /^loxiha-sync-(\d+)\.conntrack$/.exec(name);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') continue;
      rmSync(join(dir, name), { force: true });
      removed++;
    }
  }
  return removed;
}

export function conntrackLoader(dir = existsSync('/dev/shm') ? '/dev/shm' : tmpdir()): LoadLines {
  const file = join(dir, `loxiha-sync-${process.pid}.conntrack`);
  removeStaleLoadFiles(dir);
  return async (text) => {
    await writeFile(file, `${text}\n`, { mode: 0o600 });
    try {
      await new Promise<void>((resolve, reject) => {
        // stdout: -U prints every entry it updates; stderr: refused lines (expected, see above).
        const p = spawn('conntrack', ['-R', file], { stdio: ['ignore', 'ignore', 'ignore'] });
        p.on('error', reject);
        p.on('close', () => resolve());
      });
    } finally {
      await rm(file, { force: true });
    }
  };
}

/**
 * A load waits this long for more lines (unless plenty are waiting already): each `conntrack -R`
 * process costs about a millisecond and a half of CPU to start, which at a few entries a load
 * dominated the peer's cost per entry.
 */
export const INJECT_GATHER_MS = 10;
const GATHER_ENOUGH_LINES = 5000;

/** Serializes loads and batches what arrives meanwhile. */
export class Injector {
  private readonly load: LoadLines;
  /** Lines waiting, one string per add (one large string lives cheaper than thousands of small ones). */
  private pending: { chunks: string[]; lines: number; done: ((e?: Error) => void)[] } = { chunks: [], lines: 0, done: [] };
  private running = false;

  private readonly gatherMs: number;

  constructor(load: LoadLines, gatherMs = INJECT_GATHER_MS) {
    this.load = load;
    this.gatherMs = gatherMs;
  }

  /** Resolves once these lines have been loaded; rejects when the load could not run at all. */
  add(lines: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      if (lines.length) {
        this.pending.chunks.push(lines.join('\n'));
        this.pending.lines += lines.length;
      }
      this.pending.done.push((e) => (e ? reject(e) : resolve()));
      void this.run();
    });
  }

  get queued(): number {
    return this.pending.lines;
  }

  private async run(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.pending.done.length) {
        if (this.gatherMs > 0 && this.pending.lines < GATHER_ENOUGH_LINES) await new Promise((r) => setTimeout(r, this.gatherMs));
        const batch = this.pending;
        this.pending = { chunks: [], lines: 0, done: [] };
        let error: Error | undefined;
        if (batch.lines) {
          try {
            await this.load(batch.chunks.join('\n'));
          } catch (e) {
            error = e as Error;
          }
        }
        for (const d of batch.done) d(error);
      }
    } finally {
      this.running = false;
    }
  }
}
