/** Thin adapter over the nft binary: apply a transaction, read counters and the applied revision, detect features. */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { type CounterValue, parseRevision } from './render.ts';

export interface NftResult {
  stdout: string;
  stderr: string;
  code: number;
}

export function runNft(args: string[], input?: string, netns?: string): Promise<NftResult> {
  const [cmd, argv] = netns ? ['ip', ['netns', 'exec', netns, 'nft', ...args]] : ['nft', args];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ stdout, stderr, code: code ?? -1 }));
    if (input !== undefined) {
      // nft may exit before reading all of it (a syntax error): its exit code and stderr say why, not EPIPE.
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(input);
    }
  });
}

/**
 * Runs `nft -f` for the agent from a small shell that stays up: forking the agent itself (a
 * 100 MB process) for every transaction cost milliseconds of blocked event loop each time, a
 * shell's fork costs microseconds. One transaction at a time, each from its own file; the shell
 * answers with nft's exit code, and is started again if it ever dies.
 */
class NftHelper {
  private readonly netns: string | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), 'loxiha-nft-'));
  private child: ChildProcess | undefined;
  private waiting: ((code: number) => void)[] = [];
  private n = 0;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(netns: string | undefined) {
    this.netns = netns;
  }

  private start(): ChildProcess {
    const script = 'while IFS= read -r f; do nft -f "$f" 2>"$f.err"; echo "$?"; done';
    const [cmd, argv] = this.netns ? ['ip', ['netns', 'exec', this.netns, 'sh', '-c', script]] : ['sh', ['-c', script]];
    const child = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: child.stdout! }).on('line', (line) => this.waiting.shift()?.(Number(line)));
    const fail = () => {
      if (this.child === child) this.child = undefined;
      for (const w of this.waiting.splice(0)) w(-1);
    };
    child.on('exit', fail);
    child.on('error', fail);
    child.stdin!.on('error', () => undefined);
    // Idle, the helper does not keep the process alive; while a transaction is out, its answer does.
    child.unref();
    this.idle(child);
    return child;
  }

  private idle(child: ChildProcess): void {
    for (const s of [child.stdout, child.stdin] as unknown as { unref?: () => void }[]) s.unref?.();
  }

  private busy(child: ChildProcess): void {
    for (const s of [child.stdout, child.stdin] as unknown as { ref?: () => void }[]) s.ref?.();
  }

  run(text: string): Promise<NftResult> {
    const next = this.queue.then(() => this.once(text));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async once(text: string): Promise<NftResult> {
    const file = join(this.dir, `t${this.n++ % 4}.nft`);
    writeFileSync(file, text);
    this.child ??= this.start();
    const child = this.child;
    this.busy(child);
    const code = await new Promise<number>((resolve) => {
      this.waiting.push(resolve);
      child.stdin!.write(`${file}\n`);
    });
    this.idle(child);
    let stderr = '';
    try {
      stderr = readFileSync(`${file}.err`, 'utf8');
    } catch {
      stderr = 'the nft helper shell stopped';
    }
    return { stdout: '', stderr, code };
  }

  stop(): void {
    this.child?.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export class Nft {
  private readonly table: string;
  private readonly netns: string | undefined;
  private helper: NftHelper | undefined;

  constructor(table: string, netns?: string) {
    this.table = table;
    this.netns = netns;
  }

  /** Applies a complete ruleset text as one transaction (all or nothing). */
  async apply(text: string): Promise<void> {
    this.helper ??= new NftHelper(this.netns);
    const r = await this.helper.run(text);
    if (r.code !== 0) throw new Error(`nft rejected the ruleset: ${r.stderr.trim().split('\n').slice(0, 6).join(' | ') || `exit ${r.code}`}`);
  }

  /** Stops the helper shell (the table stays). */
  close(): void {
    this.helper?.stop();
    this.helper = undefined;
  }

  /** The table's revision as the kernel holds it (its `revision` set); undefined when the table or the set is absent. */
  async revision(): Promise<{ hash: string; inFlight: boolean } | undefined> {
    const r = await runNft(['list', 'set', 'ip', this.table, 'revision'], undefined, this.netns);
    if (r.code !== 0) return undefined;
    return parseRevision(r.stdout);
  }

  async exists(): Promise<boolean> {
    return (await runNft(['list', 'table', 'ip', this.table], undefined, this.netns)).code === 0;
  }

  /** Element counters of the counted sets, keyed as the renderer writes elements (`0x…` marks, `ip . proto . port`). */
  async counters(): Promise<Map<string, CounterValue>> {
    const out = new Map<string, CounterValue>();
    for (const set of ['ep_stats']) {
      const r = await runNft(['-j', 'list', 'set', 'ip', this.table, set], undefined, this.netns);
      if (r.code !== 0) continue;
      for (const [key, value] of parseSetCounters(r.stdout)) out.set(key, value);
    }
    return out;
  }

  /** Whether this kernel has nftables flowtables (AL2023 does; some minimal kernels do not). */
  async flowtablesSupported(device = 'lo'): Promise<boolean> {
    const probe = `table ip loxiha_probe_ft {\n\tflowtable f {\n\t\thook ingress priority filter\n\t\tdevices = { ${device} }\n\t}\n}\n`;
    return (await runNft(['-c', '-f', '-'], probe, this.netns)).code === 0;
  }
}

type Elem = { elem?: { val: unknown; counter?: { packets: number; bytes: number } } };

/** Reads `nft -j list set` output into element key → counter. */
export function parseSetCounters(json: string): Map<string, CounterValue> {
  const out = new Map<string, CounterValue>();
  const doc = JSON.parse(json) as { nftables: Array<{ set?: { type: string | string[]; elem?: Elem[] } }> };
  for (const item of doc.nftables) {
    const set = item.set;
    if (!set?.elem) continue;
    for (const e of set.elem) {
      if (!e.elem?.counter) continue;
      const v = e.elem.val as number | string | { concat: (string | number)[] };
      const types = [set.type].flat();
      const part = (x: string | number, i: number) => (types[i] === 'mark' ? `0x${Number(x).toString(16)}` : String(x));
      const key = typeof v === 'object' ? v.concat.map(part).join(' . ') : part(v, 0);
      out.set(key, { packets: e.elem.counter.packets, bytes: e.elem.counter.bytes });
    }
  }
  return out;
}
