/**
 * The owner's stream of flow changes to one peer. Connects (authenticated, ./channel.ts), sends a
 * full copy of the load-balanced flows (a resync), then every change as it happens: changes are
 * coalesced by flow (the latest wins) and sent in batches — what arrived in one turn of the event
 * loop (the event reader hands over what the kernel queued in about a millisecond) — no timer: a
 * 5 ms flush window here and a 10 ms gathering window at the receiver were most of the stream's lag; the peer
 * acknowledges each batch once it is in its kernel. When the peer cannot keep up (too much
 * unsent or unacknowledged) the stream does not drop changes silently: it clears its queue and
 * resyncs. A lost connection is retried; every new connection starts with a resync.
 */
import { connect, type Socket } from 'node:net';
import { ChannelError, encodeHello, FrameReader, newNonce, readChallenge, SessionCodec, SYNC_CAPS } from './channel.ts';
import { readLedger, type ServicesPeer } from './services-exchange.ts';
import type { LedgerView } from '../services/ledger.ts';
import { coalesce, flowKey, type WireEntry } from './entry.ts';

/** Entries per batch frame. */
export const SYNC_BATCH_ENTRIES = 500;
/** Beyond this many flows waiting, or frames unacknowledged, the stream resyncs instead. */
export const SYNC_MAX_PENDING = 50_000;
export const SYNC_MAX_UNACKED_FRAMES = 256;
/** An idle stream still says it is alive (and is acknowledged) this often. */
export const SYNC_TICK_MS = 200;
/**
 * Resyncs asked for in a burst (lost events, a peer behind) start at most this often; under a
 * sustained overrun the interval doubles up to SYNC_MAX_RESYNC_INTERVAL_MS (each resync re-sends the
 * whole table, which is what the overloaded peer can least afford), and comes back down after a
 * quiet period.
 */
export const SYNC_MIN_RESYNC_INTERVAL_MS = 1000;
export const SYNC_MAX_RESYNC_INTERVAL_MS = 8000;
const QUIET_BEFORE_RESET_MS = 10_000;
/** In sync means: connected, resynced, and nothing older than this unacknowledged. */
export const SYNC_IN_SYNC_LAG_MS = 1000;

/**
 * The back-off of owed resyncs, pure: given the interval so far and the time since the last resync
 * began, the new interval (doubled from SYNC_MIN_RESYNC_INTERVAL_MS up to SYNC_MAX_RESYNC_INTERVAL_MS
 * under a sustained overrun; back to the minimum after a quiet period) and how long to wait now.
 */
export function resyncBackoff(intervalMs: number, sinceLastMs: number): { intervalMs: number; waitMs: number } {
  const next = sinceLastMs > intervalMs + QUIET_BEFORE_RESET_MS ? SYNC_MIN_RESYNC_INTERVAL_MS : Math.min(SYNC_MAX_RESYNC_INTERVAL_MS, intervalMs * 2);
  return { intervalMs: next, waitMs: Math.max(0, next - sinceLastMs) };
}

/** Resolves when the socket can take more, or is gone (never rejects). */
function drainedOrClosed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

export type StreamState = 'connecting' | 'resyncing' | 'streaming' | 'stopped';

export interface PeerStreamOptions {
  /** The peers' shared keys; the first opens sessions. */
  keys: () => readonly Buffer[];
  deploymentId: string;
  selfIndex: number;
  peer: { index: number; ip: string; port: number };
  /** Every load-balanced flow now, one at a time (for a resync). */
  dump: () => AsyncIterable<WireEntry>;
  log: (level: 'info' | 'warn', msg: string, extra?: Record<string, unknown>) => void;
  now?: () => number;
  /**
   * The digest of this instance's services (../services/digest.ts), sent with every frame (`sv`):
   * the peer compares it with its own. A receiver that does not know the field ignores it.
   */
  servicesDigest?: () => string;
  /** This agent's services for the services exchange (./services-exchange.ts); unset: not spoken. */
  servicesPeer?: ServicesPeer;
  /** Several VIP groups: the ones this instance owns, named at each resync (the receiver expires only their flows). */
  ownedGroups?: () => readonly string[];
}

export class PeerStream {
  private readonly o: PeerStreamOptions;
  private readonly now: () => number;
  state: StreamState = 'connecting';
  private socket: Socket | undefined;
  private codec: SessionCodec | undefined;
  private pending = new Map<string, { e: WireEntry; at: number }>();
  private readonly unacked = new Map<number, number>();
  private flushTimer: NodeJS.Immediate | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retries = 0;
  private resyncAgain = false;
  private resyncAckSeq: number | undefined;
  private lastResyncAt: number | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  /** Since when a resync is owed (changes were lost or dropped), if one is. */
  private owedSince: number | undefined;
  /** Half the minimum at first: the first owed resync doubles it to the minimum (1 s, then 2, 4, 8 s). */
  private resyncIntervalMs = SYNC_MIN_RESYNC_INTERVAL_MS / 2;
  /** Entries sent, resyncs done (the first of a connection included), when the peer last acknowledged. */
  sentEntries = 0;
  resyncs = 0;
  overflows = 0;
  lastAckAt: number | undefined;

  constructor(o: PeerStreamOptions) {
    this.o = o;
    this.now = o.now ?? Date.now;
  }

  start(): void {
    this.state = 'connecting';
    this.connect();
  }

  stop(): void {
    this.state = 'stopped';
    clearImmediate(this.flushTimer);
    clearInterval(this.tickTimer);
    clearTimeout(this.retryTimer);
    clearTimeout(this.resyncTimer);
    this.resyncTimer = undefined;
    this.socket?.destroy();
    this.socket = undefined;
    this.pending.clear();
    this.unacked.clear();
  }

  /** Events were lost: a resync is owed (after its back-off); what is queued still goes out. */
  resyncNow(): void {
    if (this.state === 'streaming' || this.state === 'resyncing') this.scheduleResync();
  }

  /** A change of one flow, observed at `at`. */
  offer(e: WireEntry, at: number): void {
    if (this.state !== 'streaming' && this.state !== 'resyncing') return; // a new connection resyncs anyway
    const k = flowKey(e);
    const prev = this.pending.get(k);
    const merged = prev ? coalesce(prev.e, e) : e;
    if (merged) this.pending.set(k, { e: merged, at: prev ? prev.at : at });
    else this.pending.delete(k);
    if (this.pending.size > SYNC_MAX_PENDING) return this.overflow('more changes waiting than the peer takes');
    if (this.state === 'streaming' && !this.flushTimer) this.flushTimer = setImmediate(() => this.flush());
  }

  /** Age of the oldest change not yet acknowledged by the peer (0 when none). */
  lagMs(): number {
    let oldest = Infinity;
    for (const at of this.unacked.values()) oldest = Math.min(oldest, at);
    for (const { at } of this.pending.values()) oldest = Math.min(oldest, at);
    if (this.owedSince !== undefined) oldest = Math.min(oldest, this.owedSince);
    return oldest === Infinity ? 0 : Math.max(0, this.now() - oldest);
  }

  inSync(): boolean {
    return this.state === 'streaming' && this.owedSince === undefined && this.resyncAckSeq === undefined && this.lastAckAt !== undefined && this.lagMs() < SYNC_IN_SYNC_LAG_MS;
  }

  private connect(): void {
    if (this.state === 'stopped') return;
    const socket = connect({ host: this.o.peer.ip, port: this.o.peer.port });
    socket.setNoDelay(true);
    this.socket = socket;
    const reader = new FrameReader();
    let challenge: string | undefined;
    let welcomed = false;
    let exchange = false;
    const fail = (why: string) => {
      if (this.socket !== socket) return;
      socket.destroy();
      this.disconnected(why);
    };
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const f of reader.push(chunk)) {
          if (!challenge) {
            challenge = readChallenge(f);
            const n = newNonce();
            // The current key (the first): the receiver accepts it during a rotation's overlap.
            const key = this.o.keys()[0]!;
            this.codec = new SessionCodec(key, challenge, n, 'sender');
            socket.write(encodeHello(key, challenge, { d: this.o.deploymentId, from: this.o.selfIndex, n, ...(this.o.servicesPeer ? { c: [SYNC_CAPS.services] } : {}) }));
            continue;
          }
          const body = this.codec!.decode(f);
          if (body.t === 'welcome' && !welcomed) {
            welcomed = true;
            exchange = !!this.o.servicesPeer && Array.isArray(body.c) && body.c.includes(SYNC_CAPS.services);
            void this.connected();
          } else if (body.t === 'svc' && exchange) this.exchangeServices(socket, readLedger(body));
          else if (body.t === 'ack' && Number.isInteger(body.upTo)) this.acked(body.upTo as number, Number.isInteger(body.expired) ? (body.expired as number) : 0);
          else throw new ChannelError('malformed', `unexpected ${String(body.t)}`);
        }
      } catch (e) {
        fail(`the peer's answer was refused: ${(e as Error).message}`);
      }
    });
    socket.on('error', (e) => fail(e.message));
    socket.on('close', () => fail('connection closed'));
  }

  private disconnected(why: string): void {
    if (this.state === 'stopped') return;
    const was = this.state;
    this.state = 'connecting';
    this.socket = undefined;
    this.codec = undefined;
    clearInterval(this.tickTimer);
    clearImmediate(this.flushTimer);
    this.flushTimer = undefined;
    this.pending.clear();
    this.unacked.clear();
    clearTimeout(this.resyncTimer);
    this.resyncTimer = undefined;
    this.owedSince = undefined;
    if (was !== 'connecting' || this.retries === 0) this.o.log('warn', 'session sync: lost the peer; reconnecting (then a full resync)', { peer: this.o.peer.ip, why });
    const delay = Math.min(2000, 100 * 2 ** Math.min(this.retries++, 5));
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private async connected(): Promise<void> {
    this.retries = 0;
    this.o.log('info', 'session sync: streaming to the peer', { peer: this.o.peer.ip });
    this.tickTimer = setInterval(() => this.tick(), SYNC_TICK_MS);
    this.owedSince = undefined; // a new connection's resync carries everything
    await this.resync();
  }

  /** Too much waiting: the queue is dropped and a resync owed instead (never a silent loss). */
  private overflow(why: string): void {
    this.overflows++;
    this.pending.clear();
    this.o.log('warn', 'session sync: the peer is behind; resyncing instead of dropping changes', { peer: this.o.peer.ip, why });
    this.scheduleResync();
  }

  /** Sends every load-balanced flow, then what changed meanwhile. */
  /**
   * A resync is owed (events lost, or changes cleared): it starts once the back-off allows; live
   * changes keep streaming meanwhile, and the stream says it is not in sync until it is done.
   */
  private scheduleResync(): void {
    this.owedSince ??= this.now();
    if (this.state === 'resyncing') {
      this.resyncAgain = true;
      return;
    }
    if (this.resyncTimer || this.state !== 'streaming') return;
    const since = this.now() - (this.lastResyncAt ?? -Infinity);
    const next = resyncBackoff(this.resyncIntervalMs, since);
    this.resyncIntervalMs = next.intervalMs;
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = undefined;
      void this.resync();
    }, next.waitMs);
  }

  /** Sends every load-balanced flow, then what changed meanwhile. */
  private async resync(): Promise<void> {
    const socket = this.socket;
    const codec = this.codec;
    if (!socket || !codec) return;
    this.state = 'resyncing';
    this.resyncAgain = false;
    this.lastResyncAt = this.now();
    this.resyncs++;
    const startedAt = this.now();
    const owed = this.owedSince;
    if (!(await this.write({ t: 'resync-begin', ...(this.o.ownedGroups ? { g: this.o.ownedGroups() } : {}) }, startedAt))) return;
    let n = 0;
    let part: WireEntry[] = [];
    try {
      for await (const e of this.o.dump()) {
        part.push(e);
        if (part.length < SYNC_BATCH_ENTRIES) continue;
        n += part.length;
        if (!(await this.write({ t: 'batch', r: 1, e: part }, startedAt))) return;
        this.sentEntries += part.length;
        part = [];
      }
    } catch (e) {
      this.o.log('warn', 'session sync: could not list the flows to resync; retrying', { error: (e as Error).message });
      this.resyncAgain = true;
    }
    if (part.length) {
      n += part.length;
      if (!(await this.write({ t: 'batch', r: 1, e: part }, startedAt))) return;
      this.sentEntries += part.length;
    }
    if (!(await this.write({ t: 'resync-end', n }, startedAt))) return;
    if (this.socket !== socket) return;
    this.resyncAckSeq = codec.sentSeq;
    this.state = 'streaming';
    // What was owed before this resync began is repaid by it; anything owed since needs another.
    if (this.owedSince === owed) this.owedSince = undefined;
    if (this.resyncAgain) this.scheduleResync();
    this.flush();
  }

  /** The receiver sent its ledger: take its later changes, then answer with this side's ledger (after them). */
  private exchangeServices(socket: Socket, theirs: LedgerView): void {
    const peer = this.o.servicesPeer!;
    void peer
      .merge(theirs)
      .then((n) => {
        this.o.log('info', 'services exchange: took the peer’s later changes; sending ours', { peer: this.o.peer.index, changed: n });
        if (this.socket === socket && !socket.destroyed && this.codec) socket.write(this.codec.encode({ t: 'svc', l: peer.view() }));
      })
      .catch((e: Error) => this.o.log('warn', 'services exchange: could not take the peer’s changes', { peer: this.o.peer.index, error: e.message }));
  }

  /** Sends one frame (waiting for the socket to drain); false when the connection is gone. */
  private async write(body: Record<string, unknown>, oldestAt: number): Promise<boolean> {
    const socket = this.socket;
    const codec = this.codec;
    if (!socket || !codec || socket.destroyed) return false;
    const ok = socket.write(codec.encode(this.o.servicesDigest ? { ...body, sv: this.o.servicesDigest() } : body));
    this.unacked.set(codec.sentSeq, oldestAt);
    if (this.unacked.size > SYNC_MAX_UNACKED_FRAMES && this.state === 'streaming') this.overflow('too many batches unacknowledged');
    if (!ok) await drainedOrClosed(socket);
    return this.socket === socket && !socket.destroyed;
  }

  private flush(): void {
    clearImmediate(this.flushTimer);
    this.flushTimer = undefined;
    if (this.state !== 'streaming' || !this.socket) return;
    while (this.pending.size) {
      const batch: WireEntry[] = [];
      let oldest = Infinity;
      for (const [k, { e, at }] of this.pending) {
        batch.push(e);
        oldest = Math.min(oldest, at);
        this.pending.delete(k);
        if (batch.length >= SYNC_BATCH_ENTRIES) break;
      }
      this.sentEntries += batch.length;
      void this.write({ t: 'batch', e: batch }, oldest);
      if (this.state !== 'streaming') return;
    }
  }

  private tick(): void {
    if (this.state === 'streaming' && this.unacked.size === 0) void this.write({ t: 'tick' }, this.now());
  }

  /**
   * The peer has everything up to frame `upTo`. When a resync made it expire stale copies, a flow of
   * ours whose reply tuple clashed with one of them could not be loaded meanwhile: one more resync
   * (after the back-off) loads it, now that the stale copy is gone.
   */
  private acked(upTo: number, expired: number): void {
    this.lastAckAt = this.now();
    for (const seq of this.unacked.keys()) if (seq <= upTo) this.unacked.delete(seq);
    if (this.resyncAckSeq !== undefined && upTo >= this.resyncAckSeq) {
      this.resyncAckSeq = undefined;
      if (expired > 0) this.scheduleResync();
    }
  }
}
