/**
 * Thin adapter putting synced entries into this host's kernel: the lines collected while the
 * previous load ran go, as one batch, to the conntrack writer (./conntrack-netlink.py), a process
 * that stays up and sends one ctnetlink message per entry (create, update or delete by the
 * original tuple: a hash lookup in the kernel). Loads run one at a time, in order; each resolves
 * when its entries are in the kernel.
 *
 * Why not `conntrack -R` (what loaded them before, measured here with conntrack-tools 1.4.7): it
 * creates fast, but its `-U` and `-D` find their entry by dumping the whole table (14 ms a line
 * at 5,000 entries), and a `-U` in a `-R` file ends the whole load with "Protocol error" after a
 * few dozen lines, leaving the rest of the file unloaded. The writer creates as fast (≈ 9 µs an
 * entry, updates ≈ 7 µs, deletes ≈ 7 µs) at any table size. Node cannot open a netlink socket;
 * Python's standard library can, and Amazon Linux 2023 ships it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

/**
 * Loads one batch: chunks of writer lines (each chunk newline-separated, as one frame brought
 * them); resolves with how many entries the kernel refused. Chunks, not one joined text: a batch
 * of thousands of lines joined is a string V8 puts in its large-object space, which only a full
 * collection frees.
 */
export type LoadLines = (chunks: readonly string[]) => Promise<KernelRefusals | void>;

/** What the kernel would not take of one batch: how many, by errno name (ENOENT, EBUSY…), and the first few entries of each. */
export interface KernelRefusals {
  count: number;
  byErrno: Record<string, number>;
  samples: { errno: string; line: string }[];
}

/**
 * The writer's netlink port id (./conntrack-netlink.py WRITER_PORTID): the kernel stamps it on the
 * events of the writer's changes, and the event reader drops them.
 */
export const WRITER_PORT_ID = 0x4c580001;

/**
 * How the helpers' Python runs: isolated from the environment and the user's site directories, and
 * without importing `site` (standard library only; half of Python's start-up time here).
 */
export const PYTHON_FLAGS = ['-I', '-S'];

/** The ctnetlink helper (the writer, and the event reader in `events` mode): beside this module in the source tree, beside the bundle once built. */
export const CONNTRACK_HELPER = fileURLToPath(new URL('./conntrack-netlink.py', import.meta.url));

/**
 * The writer's answer to one batch (see ./conntrack-netlink.py): its "refused <errno> <line>"
 * lines, then "done … <failed> [<errno>:<count>…]".
 */
export function refusalsIn(answer: string, refusedLines: readonly string[] = []): KernelRefusals {
  const m = /^done \d+ \d+ \d+ \d+ \d+ (\d+)((?: [A-Z0-9]+:\d+)*)$/.exec(answer);
  if (!m) throw new Error(`the conntrack writer refused the batch: ${answer.slice(0, 200)}`);
  const byErrno: Record<string, number> = {};
  for (const kv of m[2]!.trim().split(' ').filter(Boolean)) {
    const [k, v] = kv.split(':');
    byErrno[k!] = Number(v);
  }
  const samples = refusedLines.map((l) => {
    const [, errno, line] = /^refused (\S+) (.*)$/.exec(l) ?? [];
    return { errno: errno ?? '?', line: line ?? l };
  });
  return { count: Number(m[1]), byErrno, samples };
}

/**
 * Starts the writer on first use (in `netns` for tests), and again after it dies: a load it was
 * doing fails (the receiver drops the session and the owner resyncs). A load not answered within
 * `timeoutMs` kills it.
 */
export function conntrackWriter(o: { netns?: string; python?: string; timeoutMs?: number; portId?: number } = {}): ((chunks: readonly string[]) => Promise<KernelRefusals>) & { stop: () => void; warm: () => void } {
  let proc: { child: ChildProcess; answer: ((line: string | Error) => void) | undefined; refused: string[] } | undefined;
  const start = () => {
    const argv = [o.python ?? 'python3', ...PYTHON_FLAGS, CONNTRACK_HELPER, 'write', String(o.portId ?? WRITER_PORT_ID)];
    const [cmd, args] = o.netns ? ['ip', ['netns', 'exec', o.netns, ...argv]] : [argv[0]!, argv.slice(1)];
    // It dies with this process (it checks that its parent is this one, then asks the kernel to signal it).
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LOXIHA_PARENT_PID: String(process.pid) } });
    const p: NonNullable<typeof proc> = { child, answer: undefined, refused: [] };
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('refused ')) {
        p.refused.push(line);
        return;
      }
      const a = p.answer;
      p.answer = undefined;
      a?.(line);
    });
    const gone = (e?: Error) => {
      if (proc === p) proc = undefined;
      const a = p.answer;
      p.answer = undefined;
      a?.(new Error(`the conntrack writer stopped${e ? `: ${e.message}` : ''}${stderr ? `: ${stderr.trim().split('\n').at(-1)}` : ''}`));
    };
    child.on('exit', () => gone());
    child.on('error', (e) => gone(e));
    child.stdin!.on('error', () => undefined);
    child.unref();
    return p;
  };
  const load = async (chunks: readonly string[]): Promise<KernelRefusals> => {
    proc ??= start();
    const p = proc;
    const ms = o.timeoutMs ?? 60_000;
    p.child.ref();
    let timer: NodeJS.Timeout | undefined;
    try {
      // The chunks are written here, not inside a closure: a closure that outlived the load (its
      // timer) kept every batch's lines alive for the whole timeout.
      p.refused.length = 0;
      const answer = new Promise<string | Error>((resolve) => (p.answer = resolve));
      for (const c of chunks) p.child.stdin!.write(`${c}\n`);
      p.child.stdin!.write('.\n');
      const late = new Promise<Error>((resolve) => (timer = setTimeout(() => resolve(new Error(`the conntrack writer did not answer within ${ms} ms`)), ms)));
      const line = await Promise.race([answer, late]);
      if (line instanceof Error) {
        if (p.answer) {
          // Timed out: this process is done; the next load starts another.
          p.answer = undefined;
          if (proc === p) proc = undefined;
          p.child.kill('SIGKILL');
        }
        throw line;
      }
      const refusedLines = p.refused.splice(0);
      return refusalsIn(line, refusedLines);
    } finally {
      clearTimeout(timer);
      p.child.unref();
    }
  };
  return Object.assign(load, {
    stop: () => proc?.child.kill('SIGKILL'),
    // Started ahead of the first load: Python takes 0.1–0.2 s to start here, and the first
    // entries of the first burst after a start waited that long (p99 0.4 s on the first rate).
    warm: () => {
      proc ??= start();
    },
  });
}

/**
 * A load waits this long for more lines (unless plenty are waiting already): a batch costs a round
 * trip to the writer and a wake-up of each side, which at a few entries a load dominated the
 * peer's cost per entry. 10 ms here was most of the stream's lag (with the sender's 5 ms); 2 ms
 * keeps the peer's CPU per flow within 1.5× conntrackd's at 10,000 flows/s.
 */
export const INJECT_GATHER_MS = 2;
const GATHER_ENOUGH_LINES = 5000;

/** Serializes loads and batches what arrives meanwhile. */
export class Injector {
  private readonly load: LoadLines;
  /** Lines waiting, one string per add (one large string lives cheaper than thousands of small ones). */
  private pending: { chunks: string[]; lines: number; done: ((e?: Error) => void)[] } = { chunks: [], lines: 0, done: [] };
  private running = false;
  /** Entries the kernel refused (counted, never retried: the owner's next change or resync brings them again). */
  refused = 0;
  /** The same, by the kernel's errno name. */
  readonly refusedByErrno = new Map<string, number>();
  /** Told of each batch's refusals (the agent logs them, rate-limited). */
  onRefused: ((r: KernelRefusals) => void) | undefined;

  private readonly gatherMs: number;

  constructor(load: LoadLines, gatherMs = INJECT_GATHER_MS) {
    this.load = load;
    this.gatherMs = gatherMs;
  }

  private count(r: KernelRefusals | void): void {
    if (!r || r.count === 0) return;
    this.refused += r.count;
    for (const [k, v] of Object.entries(r.byErrno)) this.refusedByErrno.set(k, (this.refusedByErrno.get(k) ?? 0) + v);
    this.onRefused?.(r);
  }

  /** Resolves once these lines have been loaded; rejects when the load could not run at all. */
  add(lines: string[]): Promise<void> {
    // Joined here, outside the promise's executor: a closure that referred to `lines` kept every
    // waiting add's array of line strings alive beside its joined copy (found in a heap snapshot
    // of the receiver after 120,000 flows ended at once: 65 MB of them).
    if (lines.length) {
      this.pending.chunks.push(lines.join('\n'));
      this.pending.lines += lines.length;
    }
    return new Promise((resolve, reject) => {
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
            this.count(await this.load(batch.chunks));
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
