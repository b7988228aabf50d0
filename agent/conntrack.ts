/** Thin adapter over the conntrack tool: the kernel's connection table, as LoxiLB's `ctAttr` shows it. */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

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
  /** Seconds left before the kernel expires the entry (absent when the line has none). */
  timeout?: number;
  seenReply: boolean;
  assured: boolean;
  packets?: number;
  bytes?: number;
}

/**
 * Parses one line of `conntrack -L -o extended` (`ipv4 2 tcp 6 120 SYN_SENT src=… [UNREPLIED]
 * src=… mark=…`). One pass over the words: a resync's dump runs through here for every flow.
 */
export function parseConntrackLine(line: string): ConntrackEntry | undefined {
  const w = line.trim().split(/\s+/);
  let i = 0;
  if (w[i] !== 'ipv4') return undefined;
  const protocol = w[i + 2];
  i += 4; // ipv4 2 PROTO PROTONUM
  if (!protocol) return undefined;
  let timeout: number | undefined;
  let state: string | undefined;
  if (w[i] && /^\d+$/.test(w[i]!)) timeout = Number(w[i++]);
  if (w[i] && /^[A-Z_0-9]+$/.test(w[i]!)) state = w[i++];
  const src: string[] = [];
  const dst: string[] = [];
  const sport: number[] = [];
  const dport: number[] = [];
  let mark = 0;
  let unreplied = false;
  let assured = false;
  let packets: number | undefined;
  let bytes: number | undefined;
  for (; i < w.length; i++) {
    const t = w[i]!;
    const eq = t.indexOf('=');
    if (eq < 0) {
      if (t === '[UNREPLIED]') unreplied = true;
      else if (t === '[ASSURED]') assured = true;
      continue;
    }
    const k = t.slice(0, eq);
    const v = t.slice(eq + 1);
    if (k === 'src') src.push(v);
    else if (k === 'dst') dst.push(v);
    else if (k === 'sport') sport.push(Number(v));
    else if (k === 'dport') dport.push(Number(v));
    else if (k === 'mark') mark = Number(v);
    else if (k === 'packets' && packets === undefined) packets = Number(v);
    else if (k === 'bytes' && bytes === undefined) bytes = Number(v);
  }
  if (!src[0] || !dst[0]) return undefined;
  return {
    protocol,
    state: state ?? (unreplied ? 'UNREPLIED' : 'ACTIVE'),
    src: src[0],
    dst: dst[0],
    sport: sport[0] ?? 0,
    dport: dport[0] ?? 0,
    replySrc: src[1] ?? '',
    replyDst: dst[1] ?? '',
    replySport: sport[1] ?? 0,
    replyDport: dport[1] ?? 0,
    mark,
    ...(timeout !== undefined ? { timeout } : {}),
    seenReply: !unreplied,
    assured,
    packets,
    bytes,
  };
}

/**
 * The kernel's entries one at a time, optionally only those whose mark has the bits of `mark`
 * (`VALUE/MASK`). Read as they are consumed (the listing waits for the reader), so a large table
 * is never held in memory whole.
 */
export async function* conntrackEntries(o: { mark?: string } = {}): AsyncGenerator<ConntrackEntry> {
  const p = spawn('conntrack', ['-L', '-o', 'extended', ...(o.mark ? ['-m', o.mark] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  p.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-2000)));
  const exit = new Promise<number | null>((resolve) => {
    p.on('error', (e) => {
      err = e.message;
      resolve(-1);
    });
    p.on('close', resolve);
  });
  try {
    for await (const line of createInterface({ input: p.stdout, crlfDelay: Infinity })) {
      const e = parseConntrackLine(line);
      if (e) yield e;
    }
  } finally {
    if (p.exitCode === null) p.kill();
  }
  const code = await exit;
  if (code !== 0) throw new Error(`conntrack -L failed: ${err.trim()}`);
}

/** At most `limit` entries (the API's view). */
export async function listConntrack(o: { mark?: string; limit?: number } = {}): Promise<ConntrackEntry[]> {
  const limit = o.limit ?? 4096;
  const out: ConntrackEntry[] = [];
  for await (const e of conntrackEntries(o)) if (out.length < limit) out.push(e);
  return out;
}
