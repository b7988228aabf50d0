/** Thin adapter over the nft binary: apply a transaction, read counters and the applied revision, detect features. */
import { spawn } from 'node:child_process';
import { HelperShell } from '../helper-shell.ts';
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

export class Nft {
  private readonly table: string;
  private readonly netns: string | undefined;
  /** `nft -f` runs from a helper shell (../helper-shell.ts): forking the agent per transaction blocked its event loop for milliseconds. */
  private helper: HelperShell | undefined;

  constructor(table: string, netns?: string) {
    this.table = table;
    this.netns = netns;
  }

  /** Applies a complete ruleset text as one transaction (all or nothing). */
  async apply(text: string): Promise<void> {
    this.helper ??= new HelperShell({ name: 'nft', command: 'nft -f "$f"', netns: this.netns });
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
