/**
 * One synced connection: what the owner's conntrack says about a load-balanced flow, in the
 * compact form the sync channel carries, checked on arrival against the receiver's own services,
 * and turned into the line the conntrack writer (./conntrack-netlink.py) puts into the kernel:
 * create with the NAT binding (both translated tuples, as the owner's kernel made them), update
 * (state, timeout, status), or delete, each by the original tuple. Pure.
 *
 * The peer's copy of a flow waits for the owner to say it ended, so it is loaded with at least
 * an hour to live (INJECT_MIN_TIMEOUT_S) whatever the owner's timer says: no periodic refresh is
 * needed for a UDP flow or a TCP flow still opening, and after a takeover the kernel resets the
 * timer to its own value with the flow's first packet.
 */
import { isIPv4 } from 'node:net';
import type { ConntrackEntry } from '../conntrack.ts';
import { type AddressAliases, MODE, type Service, serviceAddresses } from '../services/model.ts';
import { SERVICE_MARK_BIT, serviceMark } from '../datapath/render.ts';

export const TCP_STATES = ['SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2'] as const;
const TCP_STATE_SET: ReadonlySet<string> = new Set(TCP_STATES);

/** The longest timeout a synced entry may ask for: the kernel's TCP established default (5 days). */
export const MAX_TIMEOUT_S = 432_000;
/** The shortest time a loaded copy lives without news from the owner. */
export const INJECT_MIN_TIMEOUT_S = 3600;

export const FLAG = { seenReply: 1, assured: 2 } as const;

/**
 * `n`: a flow new on the owner (the peer cannot have it: one `-A`); `u`: create or update (`-A`,
 * then `-U` for a peer that has it already); `x`: the flow ended on the owner. Fields: op, protocol, original source,
 * destination, source port, destination port, reply source (the endpoint), reply destination (the
 * SNAT address), reply source port, reply destination port, ct mark, TCP state ('' for UDP),
 * timeout in seconds, FLAG bits.
 */
export type Op = 'n' | 'u' | 'x';
export type WireEntry = [op: Op, proto: 'tcp' | 'udp', src: string, dst: string, sport: number, dport: number, rsrc: string, rdst: string, rsport: number, rdport: number, mark: number, state: string, timeout: number, flags: number];

export function fromConntrack(op: Op, c: ConntrackEntry): WireEntry | undefined {
  if (c.protocol !== 'tcp' && c.protocol !== 'udp') return undefined;
  const flags = (c.seenReply ? FLAG.seenReply : 0) | (c.assured ? FLAG.assured : 0);
  return [op, c.protocol, c.src, c.dst, c.sport, c.dport, c.replySrc, c.replyDst, c.replySport, c.replyDport, c.mark >>> 0, c.protocol === 'tcp' ? c.state : '', Math.max(1, Math.min(MAX_TIMEOUT_S, c.timeout ?? 0)), flags];
}

/** The original tuple: one flow, whatever its state (the key the sender coalesces changes by). */
export const flowKey = (e: WireEntry) => `${e[1]} ${e[2]}:${e[4]} ${e[3]}:${e[5]}`;

export type EntryRejection = 'malformed' | 'foreign-flow';

/** The receiver's view of its services: by ct mark, the addresses, port and protocol the mark stands for. */
export interface ServiceIndex {
  byMark: ReadonlyMap<number, { protocol: string; port: number; addresses: ReadonlySet<string>; snat: string | undefined }>;
}

export function serviceIndex(services: readonly Service[], aliases?: AddressAliases): ServiceIndex {
  const byMark = new Map<number, { protocol: string; port: number; addresses: ReadonlySet<string>; snat: string | undefined }>();
  for (const s of services) {
    byMark.set(serviceMark(s), { protocol: s.protocol, port: s.port, addresses: new Set(serviceAddresses(s, aliases)), snat: s.mode === MODE.fullnat ? (s.privateIP ?? s.externalIP) : undefined });
  }
  return { byMark };
}

const port = (n: unknown) => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 65535;

/**
 * Checks one entry from the wire. Well-formed, and a flow of one of the receiver's services: its
 * mark is that service's, its original destination is the service's address and port, and with
 * full-NAT its reply goes to the service's SNAT address. Anything else is refused, never loaded.
 */
/**
 * Route strategy: a synced flow's original destination is the ingress IP of the peer that owned
 * it; on this instance its packets arrive at this instance's ingress IP. Only that address
 * changes (the endpoint side and the SNAT to the VIP stay). Anything else is returned as it came.
 */
export function rewriteDestination(x: unknown, to: ReadonlyMap<string, string>): unknown {
  if (!to.size || !Array.isArray(x) || typeof x[3] !== 'string') return x;
  const d = to.get(x[3]);
  if (d === undefined) return x;
  const y = [...x];
  y[3] = d;
  return y;
}

export function checkEntry(x: unknown, index: ServiceIndex): { ok: true; entry: WireEntry } | { ok: false; reason: EntryRejection } {
  if (!Array.isArray(x) || x.length !== 14) return { ok: false, reason: 'malformed' };
  const [op, proto, src, dst, sport, dport, rsrc, rdst, rsport, rdport, mark, state, timeout, flags] = x as unknown[];
  if (op !== 'n' && op !== 'u' && op !== 'x') return { ok: false, reason: 'malformed' };
  if (proto !== 'tcp' && proto !== 'udp') return { ok: false, reason: 'malformed' };
  for (const a of [src, dst, rsrc, rdst]) if (typeof a !== 'string' || !isIPv4(a)) return { ok: false, reason: 'malformed' };
  for (const p of [sport, dport, rsport, rdport]) if (!port(p)) return { ok: false, reason: 'malformed' };
  if (!Number.isInteger(mark) || (mark as number) < 0 || (mark as number) > 0xffffffff) return { ok: false, reason: 'malformed' };
  if (typeof state !== 'string' || (proto === 'tcp' ? !TCP_STATE_SET.has(state) : state !== '')) return { ok: false, reason: 'malformed' };
  if (!Number.isInteger(timeout) || (timeout as number) < 1 || (timeout as number) > MAX_TIMEOUT_S) return { ok: false, reason: 'malformed' };
  if (!Number.isInteger(flags) || (flags as number) < 0 || (flags as number) > 3) return { ok: false, reason: 'malformed' };
  const svc = ((mark as number) & SERVICE_MARK_BIT) === 0 ? undefined : index.byMark.get(mark as number);
  if (!svc || svc.protocol !== proto || svc.port !== dport || !svc.addresses.has(dst as string)) return { ok: false, reason: 'foreign-flow' };
  if (svc.snat !== undefined && rdst !== svc.snat) return { ok: false, reason: 'foreign-flow' };
  return { ok: true, entry: x as WireEntry };
}

/**
 * The writer's line for this entry: the wire fields in order, '-' for UDP's state, the timeout at
 * least INJECT_MIN_TIMEOUT_S. `n` creates (updating when the flow exists after all), `u` updates
 * (creating when it is missing), `x` deletes.
 */
export function injectLine(e: WireEntry): string {
  const [op, proto, src, dst, sport, dport, rsrc, rdst, rsport, rdport, mark, state, timeout, flags] = e;
  const ttl = op === 'x' ? 1 : Math.max(timeout, INJECT_MIN_TIMEOUT_S);
  return `${op} ${proto} ${src} ${dst} ${sport} ${dport} ${rsrc} ${rdst} ${rsport} ${rdport} ${mark} ${state || '-'} ${ttl} ${flags}`;
}

/** What a resync remembers of each of the owner's flows: its TCP state and timeout ('' for UDP). */
export type OwnerView = { state: string; timeout: number };

/**
 * At the end of a resync (the owner's flows were already loaded, each as a new flow), what one of
 * the receiver's own copies still needs: nothing, its TCP state moved (an update), or a delete
 * (the owner no longer has the flow). Undefined: nothing. Pure.
 */
export function reconcile(mine: WireEntry, owner: OwnerView | undefined): string | undefined {
  if (!owner) return injectLine(['x', ...mine.slice(1)] as WireEntry);
  if (mine[1] === 'tcp' && owner.state && mine[11] !== owner.state) {
    const moved = [...mine] as WireEntry;
    moved[0] = 'u';
    moved[11] = owner.state;
    moved[12] = owner.timeout;
    return injectLine(moved);
  }
  return undefined;
}

/**
 * Folds a later change of a flow into an earlier one not sent yet: a flow created and ended within
 * one batch never reaches the peer; a new flow stays new (one `-A` carrying its latest state).
 * Undefined: nothing to send.
 */
export function coalesce(earlier: WireEntry, later: WireEntry): WireEntry | undefined {
  if (earlier[0] === 'n' && later[0] === 'x') return undefined;
  if (earlier[0] === 'n' && later[0] === 'u') return ['n', ...later.slice(1)] as WireEntry;
  // The tuple reused after an end the peer has not heard of: it may still hold the old entry.
  if (earlier[0] === 'x' && later[0] === 'n') return ['u', ...later.slice(1)] as WireEntry;
  return later;
}
