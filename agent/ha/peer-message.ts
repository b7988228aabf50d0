/**
 * The peer heartbeat datagram: a small JSON body and an HMAC-SHA256 of it under the peers'
 * shared key. A receiver accepts it only if the MAC is right, it comes from this deployment and a
 * configured peer, it is fresh, and it is newer than the last one accepted from that peer
 * (no replay). Everything else is counted by reason and changes nothing.
 */
import { HA_ROLE } from '../../lib/contract.ts';
import { createHmac, timingSafeEqual } from 'node:crypto';
import * as z from 'zod';

export const PEER_MESSAGE_MAX_BYTES = 512;
/** A beat older or further in the future than this is refused (clock skew between peers included). */
export const PEER_MESSAGE_MAX_SKEW_MS = 10_000;

const bodySchema = z
  .object({
    v: z.literal(1),
    d: z.string().min(1).max(64),
    from: z.number().int().min(0).max(63),
    id: z.string().regex(/^i-[0-9a-f]{8,17}$/).nullable(),
    role: z.enum([HA_ROLE.master, HA_ROLE.backup, HA_ROLE.notDefined]),
    seq: z.number().int().min(0),
    at: z.number().int().min(0),
  })
  .strict();
const messageSchema = bodySchema.extend({ mac: z.string().regex(/^[0-9a-f]{64}$/) }).strict();

export type PeerBeat = z.infer<typeof bodySchema>;
export type Rejection = 'malformed' | 'bad-mac' | 'wrong-deployment' | 'unknown-peer' | 'stale' | 'replay';
export type Verdict = { ok: true; beat: PeerBeat } | { ok: false; reason: Rejection };

/** The exact bytes the MAC covers: the body's fields in a fixed order. */
function canonical(b: PeerBeat): string {
  return JSON.stringify([b.v, b.d, b.from, b.id, b.role, b.seq, b.at]);
}

function mac(key: Buffer, b: PeerBeat): Buffer {
  return createHmac('sha256', key).update(canonical(b)).digest();
}

export function encodeBeat(key: Buffer, b: PeerBeat): Buffer {
  return Buffer.from(JSON.stringify({ ...b, mac: mac(key, b).toString('hex') }));
}

export interface VerifyContext {
  /** Every key accepted (a rotation's overlap: the current one first, the previous or next after it). */
  keys: readonly Buffer[];
  deploymentId: string;
  peers: ReadonlySet<number>;
  now: number;
  /** The `at` of the last beat accepted from each peer. */
  lastAt: ReadonlyMap<number, number>;
}

export function verifyBeat(datagram: Buffer, c: VerifyContext): Verdict {
  if (datagram.length > PEER_MESSAGE_MAX_BYTES) return { ok: false, reason: 'malformed' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(datagram.toString('utf8'));
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  const r = messageSchema.safeParse(parsed);
  if (!r.success) return { ok: false, reason: 'malformed' };
  const { mac: given, ...beat } = r.data;
  const got = Buffer.from(given, 'hex');
  if (!c.keys.some((k) => timingSafeEqual(got, mac(k, beat)))) return { ok: false, reason: 'bad-mac' };
  if (beat.d !== c.deploymentId) return { ok: false, reason: 'wrong-deployment' };
  if (!c.peers.has(beat.from)) return { ok: false, reason: 'unknown-peer' };
  if (Math.abs(c.now - beat.at) > PEER_MESSAGE_MAX_SKEW_MS) return { ok: false, reason: 'stale' };
  if (beat.at <= (c.lastAt.get(beat.from) ?? -1)) return { ok: false, reason: 'replay' };
  return { ok: true, beat };
}
