/**
 * The receiving end of session sync: listens on the sync port, lets in only a peer that proves
 * the key (./channel.ts), checks every entry against this agent's own services (./entry.ts) and
 * loads the accepted ones into the kernel (./inject.ts), acknowledging each frame once its
 * entries are there. A resync's flows are loaded as they come (updated where a copy is here,
 * created where not); at its end this kernel's copies are listed one by one, TCP states that
 * moved are updated and the copies of flows the owner no longer has are expired (unless this
 * instance is the owner now) — so repairing a stream costs little, in time and memory. Everything refused is counted by reason, logged once
 * per source and reason, and changes nothing. A connection that only opens and closes (the peers'
 * liveness check) is fine.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { listen } from '../net/listen.ts';
import { ChannelError, type ChannelRejection, encodeChallenge, FrameReader, newNonce, readHello, SessionCodec, SYNC_CAPS } from './channel.ts';
import { checkEntry, type EntryRejection, flowKey, injectLine, type OwnerView, reconcile, rewriteDestination, type ServiceIndex, type WireEntry } from './entry.ts';
import type { Injector } from './inject.ts';
import { ASK_EVERY_MS, readLedger, REPAIR_AFTER_MS, type ServicesPeer } from './services-exchange.ts';
import { SYNC_IN_SYNC_LAG_MS } from './sender.ts';
import { GROUP_NAME_PATTERN } from '../../lib/contract.ts';

export type SyncRejection = ChannelRejection | EntryRejection;

/** Most entries one frame may carry. */
export const SYNC_MAX_FRAME_ENTRIES = 10_000;
/** Beyond this many lines waiting for the kernel, the receiver stops reading (TCP pushes back on the owner). */
const MAX_QUEUED_LINES = 20_000;
const RESUME_QUEUED_LINES = 5_000;
/** A connection must say hello this soon. */
const HELLO_TIMEOUT_MS = 5000;
/** A session is live while frames (batches or ticks) arrive at least this often. */
const SESSION_SILENT_MS = 1000;

/**
 * A load's promise waits in the session's chain behind earlier frames: a rejection meanwhile must
 * not count as unhandled (it would end the process). The chain still sees it when it gets there.
 */
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

export interface SyncServerOptions {
  /** The peers' shared keys: a hello under any of them is accepted (a rotation's overlap). */
  keys: () => readonly Buffer[];
  deploymentId: string;
  peers: ReadonlySet<number>;
  listen: { ip: string; port: number };
  services: () => ServiceIndex;
  /** Original destinations rewritten on the way in (route strategy: each peer's ingress IP → this instance's). */
  rewriteDestination?: ReadonlyMap<string, string>;
  injector: Injector;
  /** Whether this instance owns the VIP now (a resync never expires its flows then). */
  isOwner: () => boolean;
  /**
   * Several VIP groups: the group a flow belongs to (by its ct mark, the service's), and the groups
   * this instance owns now. A sender then names its groups as it resyncs, and its resync expires
   * only copies of its own groups' flows — never another owner's, never this instance's own.
   */
  groups?: { ofMark: (mark: number) => string | undefined; ownedHere: () => readonly string[] };
  /** The load-balanced flows in this kernel, one at a time (to reconcile at the end of a resync). */
  listOurs: () => AsyncIterable<WireEntry>;
  /** The digest of this instance's services, compared with the one the owner sends (`sv`). */
  servicesDigest?: () => string;
  /** This agent's services for the services exchange (./services-exchange.ts); unset: not spoken. */
  servicesPeer?: ServicesPeer;
  log: (level: 'info' | 'warn', msg: string, extra?: Record<string, unknown>) => void;
  now?: () => number;
}

interface Session {
  from: number;
  socket: Socket;
  resynced: boolean;
  /** The owner's flows while a resync is under way: loaded as they come, reconciled at its end. */
  resyncing: Map<string, OwnerView> | undefined;
  lastFrameAt: number;
  /** Receive times of frames not yet applied, oldest first. */
  inFlight: number[];
  chain: Promise<void>;
  /** The acknowledgement owed (the latest frame applied, copies expired since the last one), sent once per turn of the event loop. */
  ack: { upTo: number; expired: number; timer: NodeJS.Immediate | undefined };
  /**
   * The owner's flows refused since its last resync began because no service here matches them
   * (`foreign-flow`): this instance's services differ from the owner's, so it is not in sync.
   */
  foreign: number;
  /** The owner's services digest, as its latest frame gave it (undefined: an owner that does not send it). */
  ownerServices: string | undefined;
  /** The owner speaks the services exchange (its hello said `svc`). */
  exchange: boolean;
  /** Since when the digests have differed; when this side last sent its ledger. */
  differSince: number | undefined;
  askedAt: number;
  /** The VIP groups the sender owned at its last resync (several groups; undefined: it did not say). */
  groups: ReadonlySet<string> | undefined;
}

/** How a sender names the groups it owns in `resync-begin` (`g`): at most 32 group names. */
function groupsOfFrame(g: unknown): ReadonlySet<string> | undefined {
  if (g === undefined) return undefined;
  if (!Array.isArray(g) || g.length > 32 || !g.every((x) => typeof x === 'string' && GROUP_NAME_PATTERN.test(x))) throw new ChannelError('malformed', 'resync-begin: g must list group names');
  return new Set(g as string[]);
}

/** At most one resync asked of an owner this often, however often the services change. */
const RESYNC_ASK_MIN_MS = 5_000;

export class SyncServer {
  private readonly o: SyncServerOptions;
  private readonly now: () => number;
  private server: Server | undefined;
  private readonly sessions = new Map<number, Session>();
  private readonly loggedRejections = new Set<string>();
  readonly rejected = new Map<SyncRejection, number>();
  /** Entries accepted and loaded, resyncs completed, flows expired by resyncs. */
  entries = 0;
  resyncs = 0;
  expired = 0;
  lastAppliedAt: number | undefined;

  constructor(o: SyncServerOptions) {
    this.o = o;
    this.now = o.now ?? Date.now;
  }

  async start(): Promise<void> {
    const server = createServer((socket) => this.accept(socket));
    await listen(server, this.o.listen.port, this.o.listen.ip);
    this.server = server;
  }

  stop(): void {
    for (const s of this.sessions.values()) s.socket.destroy();
    this.sessions.clear();
    this.server?.close();
  }

  /**
   * In sync: a live session from the owner, resynced, nothing received more than a second ago still
   * waiting for the kernel, and none of the owner's flows refused for want of its service here.
   */
  inSync(): boolean {
    for (const s of this.sessions.values()) if (this.sessionInSync(s)) return true;
    return false;
  }

  /** In sync with the owner of `group`: the session of the sender that named it at its last resync is. */
  inSyncFor(group: string): boolean {
    for (const s of this.sessions.values()) if (s.groups?.has(group) && this.sessionInSync(s)) return true;
    return false;
  }

  private sessionInSync(s: Session): boolean {
    return s.resynced && s.foreign === 0 && !this.differs(s) && this.now() - s.lastFrameAt < SESSION_SILENT_MS && this.lagMs() < SYNC_IN_SYNC_LAG_MS;
  }

  private differs(s: Session): boolean {
    return s.ownerServices !== undefined && this.o.servicesDigest !== undefined && s.ownerServices !== this.o.servicesDigest();
  }

  /** Whether the owner said (with its last frame) that it serves other services than this instance does. */
  servicesDiffer(): boolean {
    for (const s of this.sessions.values()) if (this.differs(s)) return true;
    return false;
  }

  /** The owner's flows refused since its last resync because this instance holds no service for them (its services differ). */
  foreignFlows(): number {
    let n = 0;
    for (const s of this.sessions.values()) n += s.foreign;
    return n;
  }

  private lastResyncAskAt = -Infinity;
  /** Per peer, the services digest a level-triggered resync was last asked under. */
  private readonly askedFor = new Map<number, string>();

  /**
   * This instance's services changed (kube-loxilb installed them, e.g. on a new instance): an owner
   * whose flows were refused for want of them is asked to send its table again — the session is
   * closed and the owner reconnects with a resync — so that the flows refused are loaded now.
   */
  servicesChanged(): void {
    const now = this.now();
    if (now - this.lastResyncAskAt < RESYNC_ASK_MIN_MS) return;
    for (const s of this.sessions.values()) {
      if (s.foreign === 0) continue;
      this.lastResyncAskAt = now;
      this.o.log('info', 'session sync: services changed after the owner’s flows were refused for want of them; asking the owner to resync', { peer: s.from, refused: s.foreign });
      s.socket.destroy();
    }
  }

  /** Age of the oldest received frame not yet in the kernel; without a session, how long since the last load. */
  lagMs(): number {
    const now = this.now();
    let oldest = Infinity;
    for (const s of this.sessions.values()) if (s.inFlight.length) oldest = Math.min(oldest, s.inFlight[0]!);
    if (oldest !== Infinity) return now - oldest;
    if (this.sessions.size === 0) return this.lastAppliedAt === undefined ? Infinity : now - this.lastAppliedAt;
    return 0;
  }

  connected(): number[] {
    return [...this.sessions.keys()];
  }

  /**
   * Level-triggered: flows of the owner were refused for want of their service, and this instance now
   * holds the owner's services (same digest) — ask the owner for a resync, once per digest (a flow
   * refused again under the same services is not a services problem: no resync loop). The
   * change-triggered ask (servicesChanged) can miss it: a second change within RESYNC_ASK_MIN_MS of
   * the first (the services exchange, then kube-loxilb's own calls) is not asked for.
   */
  private resyncIfServicesCaughtUp(s: Session, now: number): boolean {
    const own = this.o.servicesDigest?.();
    if (s.foreign === 0 || own === undefined || s.ownerServices !== own || this.askedFor.get(s.from) === own) return false;
    if (now - this.lastResyncAskAt < RESYNC_ASK_MIN_MS) return false;
    this.askedFor.set(s.from, own);
    this.lastResyncAskAt = now;
    this.o.log('info', 'session sync: this instance holds the owner’s services now, and refused some of its flows before; asking the owner to resync', { peer: s.from, refused: s.foreign });
    s.socket.destroy();
    return true;
  }

  /** Sends this side's ledger when the services have differed from the owner's long enough (and not too often). */
  private askIfDiffering(s: Session, codec: SessionCodec, now: number): void {
    if (s.ownerServices === undefined || s.ownerServices === this.o.servicesPeer!.digest()) {
      s.differSince = undefined;
      return;
    }
    s.differSince ??= now;
    if (now - s.differSince < REPAIR_AFTER_MS || now - s.askedAt < ASK_EVERY_MS || s.socket.destroyed) return;
    s.askedAt = now;
    const view = this.o.servicesPeer!.view();
    this.o.log('info', 'services exchange: services differ from the owner’s; sending ours', { peer: s.from, services: view.live.length, deletions: view.gone.length });
    s.socket.write(codec.encode({ t: 'svc', l: view }));
  }

  private reject(reason: SyncRejection, source: string, detail: string, n = 1): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + n);
    const k = `${source} ${reason}`;
    if (this.loggedRejections.has(k)) return;
    this.loggedRejections.add(k);
    this.o.log('warn', 'session sync: rejected', { reason, source, detail: detail.slice(0, 200) });
  }

  private accept(socket: Socket): void {
    const source = socket.remoteAddress ?? 'unknown';
    const challenge = newNonce();
    const reader = new FrameReader();
    let session: Session | undefined;
    let codec: SessionCodec | undefined;
    const helloTimer = setTimeout(() => socket.destroy(), HELLO_TIMEOUT_MS);
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(helloTimer);
      if (session && this.sessions.get(session.from) === session) this.sessions.delete(session.from);
    });
    socket.write(encodeChallenge(challenge));
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const f of reader.push(chunk)) {
          if (!codec) {
            const hello = readHello(this.o.keys(), challenge, f, { deploymentId: this.o.deploymentId, peers: this.o.peers });
            clearTimeout(helloTimer);
            codec = new SessionCodec(hello.key, challenge, hello.n, 'receiver');
            this.sessions.get(hello.from)?.socket.destroy();
            const exchange = !!this.o.servicesPeer && !!hello.c?.includes(SYNC_CAPS.services);
            session = { from: hello.from, socket, resynced: false, resyncing: undefined, lastFrameAt: this.now(), inFlight: [], chain: Promise.resolve(), ack: { upTo: 0, expired: 0, timer: undefined }, foreign: 0, ownerServices: undefined, exchange, differSince: undefined, askedAt: -Infinity, groups: undefined };
            this.sessions.set(hello.from, session);
            socket.write(codec.encode(this.o.servicesPeer ? { t: 'welcome', c: [SYNC_CAPS.services] } : { t: 'welcome' }));
            this.o.log('info', 'session sync: receiving from the peer', { peer: hello.from, source });
            continue;
          }
          this.frame(session!, codec, codec.decode(f), source);
        }
      } catch (e) {
        const reason = e instanceof ChannelError ? e.reason : 'malformed';
        this.reject(reason, source, (e as Error).message);
        socket.destroy();
      }
    });
  }

  private frame(s: Session, codec: SessionCodec, body: Record<string, unknown>, source: string): void {
    const seq = body.s as number;
    const at = this.now();
    s.lastFrameAt = at;
    if (typeof body.sv === 'string' && /^[0-9a-f]{16}$/.test(body.sv)) s.ownerServices = body.sv;
    if (s.exchange) this.askIfDiffering(s, codec, at);
    if (this.resyncIfServicesCaughtUp(s, at)) return;
    let lines: string[] = [];
    let accepted = 0;
    let after: (() => Promise<void>) | undefined;
    /** Copies a resync expired: a flow of the owner's that clashed with one of them needs another resync. */
    let expiredNow = 0;
    if (body.t === 'batch') {
      if (!Array.isArray(body.e) || body.e.length > SYNC_MAX_FRAME_ENTRIES) throw new ChannelError('malformed', 'a batch without entries, or too many');
      const index = this.o.services();
      for (const raw of body.e) {
        const x = this.o.rewriteDestination ? rewriteDestination(raw, this.o.rewriteDestination) : raw;
        const r = checkEntry(x, index);
        if (!r.ok) {
          if (r.reason === 'foreign-flow') s.foreign++;
          this.reject(r.reason, source, JSON.stringify(x) ?? '');
          continue;
        }
        accepted++;
        const e = r.entry;
        if (body.r === 1 && s.resyncing) {
          s.resyncing.set(flowKey(e), { state: e[11], timeout: e[12] });
          // Create-or-update, update first: a peer that reconnects holds most of the owner's flows already.
          lines.push(injectLine(['u', ...e.slice(1)] as WireEntry));
        } else lines.push(injectLine(e));
      }
    } else if (body.t === 'resync-begin') {
      s.groups = groupsOfFrame(body.g);
      s.resyncing = new Map();
      s.resynced = false;
      s.foreign = 0;
    } else if (body.t === 'resync-end') {
      const owner = s.resyncing ?? new Map<string, OwnerView>();
      s.resyncing = undefined;
      after = async () => {
        const owning = this.o.isOwner();
        // Several groups, a sender that named its own: expire only copies of its groups' flows, none of a group owned here.
        const scope = this.o.groups && s.groups ? { of: this.o.groups.ofMark, theirs: s.groups, ours: new Set(this.o.groups.ownedHere()) } : undefined;
        let fix: string[] = [];
        const loads: Promise<void>[] = [];
        for await (const mine of this.o.listOurs()) {
          const view = owner.get(flowKey(mine));
          if (!view && scope) {
            const g = scope.of(mine[10]);
            if (g === undefined || !scope.theirs.has(g) || scope.ours.has(g)) continue;
          } else if (!view && owning) continue; // never expire this instance's own flows
          const line = reconcile(mine, view);
          if (!view) {
            this.expired++;
            expiredNow++;
          }
          if (line) fix.push(line);
          if (fix.length >= 10_000) {
            const load = quiet(this.o.injector.add(fix));
            loads.push(load);
            fix = [];
            // The listing waits while the kernel catches up: a resync after a mass end (a flushed
            // table: 600,000 copies to delete) otherwise queued them all in memory at once.
            if (this.o.injector.queued > MAX_QUEUED_LINES) await load;
          }
        }
        if (fix.length) loads.push(quiet(this.o.injector.add(fix)));
        await Promise.all(loads);
        s.resynced = true;
        this.resyncs++;
      };
    } else if (body.t === 'svc') {
      // The owner's ledger, after it took ours: take what is later than ours.
      if (!s.exchange) throw new ChannelError('malformed', 'a services ledger on a session that did not offer the exchange');
      const theirs = readLedger(body);
      after = async () => {
        const n = await this.o.servicesPeer!.merge(theirs);
        this.o.log('info', 'services exchange: took the owner’s later changes', { peer: s.from, changed: n });
      };
    } else if (body.t !== 'tick') {
      throw new ChannelError('malformed', `unexpected frame ${String(body.t)}`);
    }
    s.inFlight.push(at);
    const load = lines.length ? quiet(this.o.injector.add(lines)) : Promise.resolve();
    if (this.o.injector.queued > MAX_QUEUED_LINES) s.socket.pause();
    s.chain = s.chain
      .then(() => load)
      .then(async () => {
        await after?.();
        this.entries += accepted;
        if (accepted) this.lastAppliedAt = this.now();
        s.inFlight.shift();
        if (s.socket.isPaused() && this.o.injector.queued < RESUME_QUEUED_LINES) s.socket.resume();
        // Acknowledgements are cumulative: frames applied in the same turn share one.
        s.ack.upTo = seq;
        s.ack.expired += expiredNow;
        s.ack.timer ??= setImmediate(() => {
          const { upTo, expired } = s.ack;
          s.ack.timer = undefined;
          s.ack.expired = 0;
          if (!s.socket.destroyed) s.socket.write(codec.encode(expired ? { t: 'ack', upTo, expired } : { t: 'ack', upTo }));
        });
      })
      .catch((e: Error) => {
        this.o.log('warn', 'session sync: could not load entries into the kernel; dropping the session (the owner resyncs)', { error: e.message });
        s.socket.destroy();
      });
  }
}
