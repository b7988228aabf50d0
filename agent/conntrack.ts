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
  packets?: number;
  bytes?: number;
}

/** Parses one line of `conntrack -L -o extended`. */
export function parseConntrackLine(line: string): ConntrackEntry | undefined {
  const m = /^ipv4\s+\d+\s+(\w+)\s+\d+\s+\d+\s+(?:([A-Z_]+)\s+)?(.*)$/.exec(line.trim());
  if (!m) return undefined;
  const rest = m[3]!;
  const kv = [...rest.matchAll(/(\w+)=(\S+)/g)].map((x) => [x[1]!, x[2]!] as const);
  const first = (k: string, nth = 0) => kv.filter(([key]) => key === k)[nth]?.[1];
  const src = first('src');
  const dst = first('dst');
  if (!src || !dst) return undefined;
  const packets = first('packets');
  const bytes = first('bytes');
  return {
    protocol: m[1]!,
    state: m[2] ?? (rest.includes('[UNREPLIED]') ? 'UNREPLIED' : 'ACTIVE'),
    src,
    dst,
    sport: Number(first('sport') ?? 0),
    dport: Number(first('dport') ?? 0),
    replySrc: first('src', 1) ?? '',
    replyDst: first('dst', 1) ?? '',
    replySport: Number(first('sport', 1) ?? 0),
    replyDport: Number(first('dport', 1) ?? 0),
    mark: Number(first('mark') ?? 0),
    packets: packets === undefined ? undefined : Number(packets),
    bytes: bytes === undefined ? undefined : Number(bytes),
  };
}

export function listConntrack(netns?: string, limit = 4096): Promise<ConntrackEntry[]> {
  const [cmd, argv] = netns ? ['ip', ['netns', 'exec', netns, 'conntrack', '-L', '-o', 'extended']] : ['conntrack', ['-L', '-o', 'extended']];
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
