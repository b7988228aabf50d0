/**
 * The services exchange on the session-sync channel (authenticated as every frame of a session):
 * a receiver whose services' digest differs from the one its owner sends (`sv`) for REPAIR_AFTER_MS
 * sends its ledger (`{t: 'svc', l}`: every service with when it was last changed, and the deletions
 * it remembers); the owner takes from it what is later than its own (../services/ledger.ts), then
 * answers with its own ledger, from which the receiver does the same. Both end with the same
 * services. Spoken only with a peer whose hello or welcome says `svc` (SYNC_CAPS).
 */
import { z } from 'zod';
import { TOMBSTONE_MAX, type LedgerView } from '../services/ledger.ts';
import type { Service } from '../services/model.ts';
import { ChannelError } from './channel.ts';

/** What the session needs of this agent's services. */
export interface ServicesPeer {
  digest(): string;
  view(): LedgerView;
  /** Takes the peer's later changes; resolves to how many services changed. */
  merge(theirs: LedgerView): Promise<number>;
}

/** A difference must last this long before the receiver sends its ledger (a change on its way to both agents is no difference). */
export const REPAIR_AFTER_MS = 2_000;
/** And it sends it at most this often while the difference lasts. */
export const ASK_EVERY_MS = 3_000;
/** At most this many services in one exchange (a frame's limit is 4 MB: about 300 bytes a service). */
export const EXCHANGE_MAX_SERVICES = 10_000;

const ipv4 = z.ipv4();
const serviceSchema = z
  .object({
    name: z.string().max(256),
    externalIP: ipv4,
    privateIP: ipv4.optional(),
    port: z.number().int().min(1).max(65535),
    protocol: z.enum(['tcp', 'udp']),
    sel: z.union([z.literal(0), z.literal(1), z.literal(2), z.literal(3)]),
    mode: z.union([z.literal(0), z.literal(2)]),
    monitor: z.boolean(),
    probe: z.object({ type: z.enum(['tcp', 'udp', 'http', 'https', 'ping', 'none']), port: z.number().int().min(0).max(65535), req: z.string().max(1024), resp: z.string().max(1024), retries: z.number().int().min(0).max(100), timeoutSeconds: z.number().min(0).max(3600) }),
    inactiveTimeOut: z.number().int().min(0),
    block: z.number().int().min(0),
    managed: z.boolean(),
    bgp: z.boolean(),
    endpoints: z.array(z.object({ ip: ipv4, port: z.number().int().min(1).max(65535), weight: z.number().int().min(0).max(1_000_000) })).max(4096),
    allowedSources: z.array(z.string().max(64)).max(1024),
    secondaryIPs: z.array(ipv4).max(64),
  })
  .strip();
const viewSchema = z.object({
  live: z.array(z.object({ service: serviceSchema, at: z.number().min(0) })).max(EXCHANGE_MAX_SERVICES),
  gone: z.array(z.object({ key: z.string().max(300), at: z.number().min(0) })).max(TOMBSTONE_MAX),
});

/** The ledger a frame carries, validated: a malformed one fails the session (as any malformed frame). */
export function readLedger(body: Record<string, unknown>): LedgerView {
  const r = viewSchema.safeParse(body.l);
  if (!r.success) throw new ChannelError('malformed', `a services ledger that does not parse: ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`);
  return { live: r.data.live.map((l) => ({ service: { ...l.service, privateIP: l.service.privateIP } as Service, at: l.at })), gone: r.data.gone };
}
