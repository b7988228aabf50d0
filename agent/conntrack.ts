/** Thin adapter over the conntrack tool: the kernel's connection table, as LoxiLB's `ctAttr` shows it. */
import { spawn } from 'node:child_process';

export interface ConntrackEntry {
  protocol: string;
  state: string;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** Reply tuple: where the flow went (endpoint) and as what it left (SNAT). */
  replySrc: string;
  replySport: number;
  replyDst: string;
  replyDport: number;
  mark: number;
  /** Seconds left before the kernel expires the entry (absent in destroy events). */
  timeout?: number;
  seenReply: boolean;
  assured: boolean;
  packets?: number;
  bytes?: number;
}

export type ConntrackEvent = 'NEW' | 'UPDATE' | 'DESTROY';

/**
 * Parses one line of `conntrack -L -o extended` or `conntrack -E -o extended`
 * (`[NEW] ipv4 2 tcp 6 120 SYN_SENT src=… [UNREPLIED] src=… mark=…`).
 */
export function parseConntrackLine(line: string): (ConntrackEntry & { event?: ConntrackEvent }) | undefined {
  const m = /^\s*(?:\[(NEW|UPDATE|DESTROY)\]\s+)?ipv4\s+\d+\s+(\w+)\s+\d+\s+(?:(\d+)\s+)?(?:([A-Z_0-9]+)\s+)?(src=.*)$/.exec(line);
  if (!m) return undefined;
  const rest = m[5]!;
  const kv = [...rest.matchAll(/(\w+)=(\S+)/g)].map((x) => [x[1]!, x[2]!] as const);
  const first = (k: string, nth = 0) => kv.filter(([key]) => key === k)[nth]?.[1];
  const src = first('src');
  const dst = first('dst');
  if (!src || !dst) return undefined;
  const packets = first('packets');
  const bytes = first('bytes');
  const unreplied = rest.includes('[UNREPLIED]');
  return {
    ...(m[1] ? { event: m[1] as ConntrackEvent } : {}),
    protocol: m[2]!,
    state: m[4] ?? (unreplied ? 'UNREPLIED' : 'ACTIVE'),
    src,
    dst,
    sport: Number(first('sport') ?? 0),
    dport: Number(first('dport') ?? 0),
    replySrc: first('src', 1) ?? '',
    replyDst: first('dst', 1) ?? '',
    replySport: Number(first('sport', 1) ?? 0),
    replyDport: Number(first('dport', 1) ?? 0),
    mark: Number(first('mark') ?? 0),
    ...(m[3] !== undefined ? { timeout: Number(m[3]) } : {}),
    seenReply: !unreplied,
    assured: rest.includes('[ASSURED]'),
    packets: packets === undefined ? undefined : Number(packets),
    bytes: bytes === undefined ? undefined : Number(bytes),
  };
}

/**
 * The kernel's entries, optionally only those whose mark has the bits of `mark` (`VALUE/MASK`),
 * at most `limit` of them.
 */
export function listConntrack(o: { mark?: string; limit?: number } = {}): Promise<ConntrackEntry[]> {
  const limit = o.limit ?? 4096;
  const [cmd, argv] = ['conntrack', ['-L', '-o', 'extended', ...(o.mark ? ['-m', o.mark] : [])]];
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: ConntrackEntry[] = [];
    let buf = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const e = parseConntrackLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (e && out.length < limit) out.push(e);
      }
    });
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`conntrack -L failed: ${err.trim()}`))));
  });
}
