/**
 * Runs one tool command at a time for the agent from a small shell that stays up. Forking the
 * agent itself (a ~100 MB process) costs about a millisecond and a half of blocked event loop per
 * command; the shell's fork costs a fraction of that, and not on the agent's event loop. The
 * agent runs every ruleset transaction and every `ip` look of the VIP's path (several a second)
 * through one.
 *
 * Protocol: the input of a command goes into a file in the helper's private directory (in memory
 * when /dev/shm exists); the agent writes the file's path on the shell's stdin; the shell runs the
 * command on it (`"$f"`), with its output and errors in files beside it, and answers the exit code
 * on a line. One command at a time, in order. A command that does not answer in time has its
 * process group killed (the shell is started again on the next command); a shell that dies fails
 * what was waiting and is started again on the next command.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export interface HelperResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface HelperShellOptions {
  /** What the helper is for: names its directory (`loxiha-<name>-<pid>-…`). */
  name: string;
  /** The command, as shell text reading its input from the file "$f" (e.g. `nft -f "$f"`). */
  command: string;
  /** Run the shell in this network namespace (tests). */
  netns?: string;
  /** Keep the command's standard output (off: it goes to /dev/null). */
  stdout?: boolean;
  /** A command not done by then is killed and the call rejected. */
  timeoutMs?: number;
  /** Where the directory lives (default: /dev/shm when it exists, else the temp directory). */
  dir?: string;
}

const memoryDir = () => (existsSync('/dev/shm') ? '/dev/shm' : tmpdir());

/** Directories (and older versions' load files) left by agents that were killed (their process is gone); others' are left alone. */
export function removeStaleHelperDirs(dir: string): number {
  let removed = 0;
  for (const name of readdirSync(dir)) {
    const m = /^loxiha-[a-z]+-(\d+)[-.]/.exec(name);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') continue;
      rmSync(join(dir, name), { recursive: true, force: true });
      removed++;
    }
  }
  return removed;
}

export class HelperShell {
  private readonly o: HelperShellOptions;
  private readonly dir: string;
  /** The shell now, and the answers it owes (oldest first). */
  private proc: { child: ChildProcess; waiting: ((code: number) => void)[] } | undefined;
  private n = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(o: HelperShellOptions) {
    this.o = o;
    const parent = o.dir ?? memoryDir();
    removeStaleHelperDirs(parent);
    this.dir = mkdtempSync(join(parent, `loxiha-${o.name}-${process.pid}-`));
  }

  /** Runs the command on `input` (written to "$f"); resolves with its exit code and what it printed. */
  run(input: string): Promise<HelperResult> {
    const next = this.queue.then(() => this.once(input));
    this.queue = next.catch(() => undefined);
    return next;
  }

  stop(): void {
    this.stopped = true;
    this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private start(): { child: ChildProcess; waiting: ((code: number) => void)[] } {
    const out = this.o.stdout ? '"$f.out"' : '/dev/null';
    const script = `while IFS= read -r f; do { ${this.o.command}; } </dev/null >${out} 2>"$f.err"; echo "$?"; done`;
    const [cmd, argv] = this.o.netns ? ['ip', ['netns', 'exec', this.o.netns, 'sh', '-c', script]] : ['sh', ['-c', script]];
    // Its own process group: a command that hangs is killed with the shell.
    const child = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'ignore'], detached: true });
    const proc = { child, waiting: [] as ((code: number) => void)[] };
    createInterface({ input: child.stdout! }).on('line', (line) => proc.waiting.shift()?.(Number(line)));
    const fail = () => {
      if (this.proc === proc) this.proc = undefined;
      for (const w of proc.waiting.splice(0)) w(-1);
    };
    child.on('exit', fail);
    child.on('error', fail);
    child.stdin!.on('error', () => undefined);
    // Idle, the helper does not keep the agent alive; while a command is out, its answer does.
    child.unref();
    this.ref(child, false);
    return proc;
  }

  private ref(child: ChildProcess, on: boolean): void {
    for (const s of [child.stdout, child.stdin] as unknown as { ref?: () => void; unref?: () => void }[]) (on ? s.ref : s.unref)?.call(s);
  }

  private kill(): void {
    const pid = this.proc?.child.pid;
    this.proc = undefined;
    if (pid === undefined) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }

  private async once(input: string): Promise<HelperResult> {
    if (this.stopped) throw new Error(`the ${this.o.name} helper was stopped`);
    const file = join(this.dir, `c${this.n++ % 4}`);
    writeFileSync(file, input, { mode: 0o600 });
    this.proc ??= this.start();
    const proc = this.proc;
    const child = proc.child;
    this.ref(child, true);
    let timer: NodeJS.Timeout | undefined;
    const code = await new Promise<number>((resolve) => {
      proc.waiting.push(resolve);
      child.stdin!.write(`${file}\n`);
      if (this.o.timeoutMs) {
        timer = setTimeout(() => {
          proc.waiting.splice(proc.waiting.indexOf(resolve), 1);
          if (this.proc === proc) this.kill();
          resolve(-2);
        }, this.o.timeoutMs);
      }
    });
    clearTimeout(timer);
    this.ref(child, false);
    if (code === -2) throw new Error(`${this.o.command.split(' ')[0]} did not finish within ${this.o.timeoutMs} ms`);
    const read = (f: string) => {
      try {
        return readFileSync(f, 'utf8');
      } catch {
        return '';
      }
    };
    const result = { code, stdout: this.o.stdout ? read(`${file}.out`) : '', stderr: code === -1 ? `the ${this.o.name} helper shell stopped` : read(`${file}.err`) };
    rmSync(file, { force: true });
    return result;
  }
}
