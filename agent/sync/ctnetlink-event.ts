/**
 * Conntrack event messages as the kernel sends them (ctnetlink over netlink), read into the sync
 * channel's fields — pure, no I/O. The event reader (./conntrack-netlink.py `events`) passes the
 * kernel's messages through unparsed: parsing them here, compiled, costs a fraction of what the
 * same walk cost in Python (41 µs of the owner's CPU per new flow at 10,000 flows/s, most of its
 * budget), and the reader only moves bytes.
 *
 * Layout (linux/netlink.h, linux/netfilter/nfnetlink*.h): a 16-byte netlink header in the host's
 * byte order (little-endian on every instance type loxiha runs on, x86_64 and arm64), a 4-byte
 * nfgenmsg (family first), then attributes (length, type; payload padded to 4 bytes) whose numbers
 * are in network order.
 */
import { FLAG, MAX_TIMEOUT_S, type WireEntry } from './entry.ts';

const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const NLM_F_CREATE = 0x400;
const AF_INET = 2;
const NLA_TYPE_MASK = 0x3fff;
const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_REPLY = 2;
const CTA_STATUS = 3;
const CTA_PROTOINFO = 4;
const CTA_TIMEOUT = 7;
const CTA_MARK = 8;
const CTA_TUPLE_IP = 1;
const CTA_TUPLE_PROTO = 2;
const CTA_IP_V4_SRC = 1;
const CTA_IP_V4_DST = 2;
const CTA_PROTO_NUM = 1;
const CTA_PROTO_SRC_PORT = 2;
const CTA_PROTO_DST_PORT = 3;
const CTA_PROTOINFO_TCP = 1;
const CTA_PROTOINFO_TCP_STATE = 1;
const IPS_SEEN_REPLY = 2;
const IPS_ASSURED = 4;
/** conntrack's TCP states by number (linux/netfilter/nf_conntrack_tcp.h). */
const TCP_STATES = ['NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2'] as const;

const ipv4 = (b: Buffer, o: number) => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;

/** A tuple's addresses and ports, or undefined when one is missing (an ICMP flow, a partial tuple). */
function readTuple(b: Buffer, start: number, end: number): { src: string; dst: string; proto: number; sport: number; dport: number } | undefined {
  let src: string | undefined;
  let dst: string | undefined;
  let proto = -1;
  let sport = -1;
  let dport = -1;
  for (let o = start; o + 4 <= end; ) {
    const len = b.readUInt16LE(o);
    if (len < 4 || o + len > end) return undefined;
    const type = b.readUInt16LE(o + 2) & NLA_TYPE_MASK;
    for (let i = o + 4; i + 4 <= o + len; ) {
      const ilen = b.readUInt16LE(i);
      if (ilen < 4 || i + ilen > o + len) return undefined;
      const itype = b.readUInt16LE(i + 2) & NLA_TYPE_MASK;
      const p = i + 4;
      if (type === CTA_TUPLE_IP) {
        if (itype === CTA_IP_V4_SRC && ilen >= 8) src = ipv4(b, p);
        else if (itype === CTA_IP_V4_DST && ilen >= 8) dst = ipv4(b, p);
      } else if (type === CTA_TUPLE_PROTO) {
        if (itype === CTA_PROTO_NUM && ilen >= 5) proto = b[p]!;
        else if (itype === CTA_PROTO_SRC_PORT && ilen >= 6) sport = b.readUInt16BE(p);
        else if (itype === CTA_PROTO_DST_PORT && ilen >= 6) dport = b.readUInt16BE(p);
      }
      i += (ilen + 3) & ~3;
    }
    o += (len + 3) & ~3;
  }
  if (src === undefined || dst === undefined || proto < 0 || sport < 0 || dport < 0) return undefined;
  return { src, dst, proto, sport, dport };
}

function tcpState(b: Buffer, start: number, end: number): string {
  for (let o = start; o + 4 <= end; ) {
    const len = b.readUInt16LE(o);
    if (len < 4 || o + len > end) break;
    if ((b.readUInt16LE(o + 2) & NLA_TYPE_MASK) === CTA_PROTOINFO_TCP) {
      for (let i = o + 4; i + 4 <= o + len; ) {
        const ilen = b.readUInt16LE(i);
        if (ilen < 4) break;
        if ((b.readUInt16LE(i + 2) & NLA_TYPE_MASK) === CTA_PROTOINFO_TCP_STATE && ilen >= 5) return TCP_STATES[b[i + 4]!] ?? 'NONE';
        i += (ilen + 3) & ~3;
      }
    }
    o += (len + 3) & ~3;
  }
  return 'NONE';
}

/**
 * One event message at `off` (its length `len` read from its header): the change of a
 * load-balanced flow (ct mark has every bit of `mask`) in the channel's fields, or undefined —
 * another subsystem or family, another protocol than TCP and UDP, a flow not load-balanced, or a
 * change the agent's own writer made (`skipPortId`: the kernel stamps the writer's port id on
 * them; an injected copy is never streamed again).
 */
export function readCtEvent(b: Buffer, off: number, len: number, mask: number, skipPortId: number): WireEntry | undefined {
  if (len < 20) return undefined;
  const kind = b.readUInt16LE(off + 4);
  const flags = b.readUInt16LE(off + 6);
  if (kind >> 8 !== NFNL_SUBSYS_CTNETLINK || b[off + 16] !== AF_INET || b.readUInt32LE(off + 12) === skipPortId) return undefined;
  let orig = -1;
  let origEnd = -1;
  let reply = -1;
  let replyEnd = -1;
  let mark: number | undefined;
  let status = 0;
  let timeout = 1;
  let protoinfo = -1;
  let protoinfoEnd = -1;
  const end = off + len;
  for (let o = off + 20; o + 4 <= end; ) {
    const alen = b.readUInt16LE(o);
    if (alen < 4 || o + alen > end) return undefined;
    const type = b.readUInt16LE(o + 2) & NLA_TYPE_MASK;
    const p = o + 4;
    if (type === CTA_TUPLE_ORIG) (orig = p), (origEnd = o + alen);
    else if (type === CTA_TUPLE_REPLY) (reply = p), (replyEnd = o + alen);
    else if (type === CTA_MARK && alen >= 8) mark = b.readUInt32BE(p);
    else if (type === CTA_STATUS && alen >= 8) status = b.readUInt32BE(p);
    else if (type === CTA_TIMEOUT && alen >= 8) timeout = b.readUInt32BE(p);
    else if (type === CTA_PROTOINFO) (protoinfo = p), (protoinfoEnd = o + alen);
    o += (alen + 3) & ~3;
  }
  if (mark === undefined || ((mark & mask) >>> 0) !== mask >>> 0 || orig < 0 || reply < 0) return undefined;
  const t = readTuple(b, orig, origEnd);
  const r = readTuple(b, reply, replyEnd);
  if (!t || !r || (t.proto !== 6 && t.proto !== 17)) return undefined;
  const op = (kind & 0xff) === IPCTNL_MSG_CT_DELETE ? 'x' : flags & NLM_F_CREATE ? 'n' : 'u';
  const state = t.proto === 6 ? (protoinfo >= 0 ? tcpState(b, protoinfo, protoinfoEnd) : 'NONE') : '';
  const bits = (status & IPS_SEEN_REPLY ? FLAG.seenReply : 0) | (status & IPS_ASSURED ? FLAG.assured : 0);
  return [op, t.proto === 6 ? 'tcp' : 'udp', t.src, t.dst, t.sport, t.dport, r.src, r.dst, r.sport, r.dport, mark, state, Math.max(1, Math.min(MAX_TIMEOUT_S, timeout)), bits];
}

/**
 * Reads whole messages from `b` (the reader's output as it arrives), handing each load-balanced
 * flow's change to `onEntry`; returns how many bytes it consumed (a message cut at the end waits
 * for the next chunk). A length that cannot be a netlink message throws: the stream is lost.
 */
export function readCtEvents(b: Buffer, mask: number, skipPortId: number, onEntry: (e: WireEntry) => void): number {
  let off = 0;
  while (off + 16 <= b.length) {
    const len = b.readUInt32LE(off);
    if (len < 16 || len > 1 << 20) throw new Error(`not a netlink message (length ${len})`);
    if (off + len > b.length) break;
    const e = readCtEvent(b, off, len, mask, skipPortId);
    if (e) onEntry(e);
    off += (len + 3) & ~3;
  }
  return Math.min(off, b.length);
}
