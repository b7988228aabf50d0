/**
 * Session sync as the agent runs it: every instance receives (./receiver.ts); the owner of the VIP
 * also watches its kernel's load-balanced flows (`conntrack -E`, ./conntrack-events.ts) and
 * streams them to every peer (./sender.ts). The peer's copies wait for the owner's end of each flow
 * (./entry.ts), so nothing is re-sent periodically. Lost events (the kernel says ENOBUFS) trigger a
 * resync of every stream, applied by the peer as a difference.
 */
import { spawnSync } from 'node:child_process';
import { conntrackEntries } from '../conntrack.ts';
import { servicesDigest } from '../services/digest.ts';
import type { LedgerView } from '../services/ledger.ts';
import type { ServicesPeer } from './services-exchange.ts';
import type { AddressAliases, Service } from '../services/model.ts';
import { ConntrackEvents, SERVICE_MARK_FILTER } from './conntrack-events.ts';
import { fromConntrack, serviceIndex, type WireEntry } from './entry.ts';
import { serviceMark } from '../datapath/render.ts';
import { conntrackWriter, Injector, type KernelRefusals } from './inject.ts';
import { SyncServer, type SyncRejection } from './receiver.ts';
import { raiseForSync } from './scheduling.ts';
import { PeerStream, type StreamState } from './sender.ts';

/** The kernel's refusals are logged at most this often (with everything refused since). */
export const REFUSAL_LOG_MS = 10_000;

export interface SessionSyncOptions {
  /** The peers' shared keys (a rotation's overlap): the first is used, every one accepted. */
  keys: () => readonly Buffer[];
  deploymentId: string;
  self: { index: number; ip: string; port: number };
  peers: { index: number; ip: string }[];
  services: () => Service[];
  /** Route strategy: this instance's ingress IP stands for the VIP, and the peers' ingress IPs in synced flows become it. */
  aliases?: AddressAliases;
  rewriteDestination?: ReadonlyMap<string, string>;
  /** SCHED_RR priority once syncing (config sync.realtimePriority; 0: nice -10 instead). */
  realtimePriority: number;
  /** The services exchange (./services-exchange.ts): ledger and merge; unset, the agents only compare digests. */
  ledger?: { view: () => LedgerView; merge: (theirs: LedgerView) => Promise<number> };
  log: (level: 'info' | 'warn', msg: string, extra?: Record<string, unknown>) => void;
  /**
   * Several VIP groups: every group's name and the group of a service. An owner names its groups as
   * it resyncs; a receiver's resync then expires only that owner's groups' copies, and in-sync is
   * reported per group (with the owner of each).
   */
  groups?: { names: readonly string[]; ofService: (s: Service) => string };
}

export interface SyncStatus {
  /** `sending` while this instance owns the VIP, `receiving` otherwise. */
  mode: 'sending' | 'receiving';
  inSync: boolean;
  lagSeconds: number;
  entries: number;
  resyncs: number;
  /** By reason; `kernel-refused`: entries that passed every check but the kernel would not take. */
  rejected: Partial<Record<SyncRejection | 'kernel-refused', number>>;
  /** The kernel's refusals by errno name (ENOENT, EBUSY…), when there were any. */
  kernelRefused?: Record<string, number>;
  peers: { index: number; ip: string; state: StreamState | 'receiving' | 'not-connected' }[];
  /** Several groups: in sync per group (owned here: every peer has this instance's flows; else: this instance has the owner's). */
  groups?: Record<string, boolean>;
}

async function* ourFlows(): AsyncGenerator<WireEntry> {
  for await (const c of conntrackEntries({ mark: SERVICE_MARK_FILTER })) {
    const e = fromConntrack('u', c);
    if (e) yield e;
  }
}

export class SessionSync {
  private readonly o: SessionSyncOptions;
  private readonly server: SyncServer;
  private readonly writer = conntrackWriter();
  private readonly injector = new Injector(this.writer);
  private streams: PeerStream[] = [];
  private events: ConntrackEvents | undefined;
  private owner = false;
  /** The VIP groups this instance owns (several groups). */
  private owned: readonly string[] = [];
  private groupByMark: Map<number, string> | undefined;
  private index: ReturnType<typeof serviceIndex> | undefined;
  /** This instance's services digest (../services/digest.ts), computed again after each change. */
  private digest: string | undefined;

  /** Refusals not logged yet (the log says at most once per REFUSAL_LOG_MS what the kernel refused since). */
  private refusalsUnlogged: { count: number; byErrno: Record<string, number>; samples: { errno: string; line: string }[] } | undefined;
  private refusalLogTimer: NodeJS.Timeout | undefined;

  constructor(o: SessionSyncOptions) {
    this.o = o;
    this.injector.onRefused = (r) => this.refusedByKernel(r);
    this.server = new SyncServer({
      keys: o.keys,
      deploymentId: o.deploymentId,
      peers: new Set(o.peers.map((p) => p.index)),
      listen: { ip: o.self.ip, port: o.self.port },
      services: () => (this.index ??= serviceIndex(o.services(), o.aliases)),
      rewriteDestination: o.rewriteDestination,
      injector: this.injector,
      isOwner: () => this.owner,
      ...(o.groups ? { groups: { ofMark: (m: number) => this.groupOfMark(m), ownedHere: () => this.owned } } : {}),
      listOurs: ourFlows,
      log: o.log,
      servicesDigest: () => (this.digest ??= servicesDigest(o.services())),
      ...(this.servicesPeer ? { servicesPeer: this.servicesPeer } : {}),
    });
  }

  /** What the services exchange needs of this agent, when it has a ledger. */
  private get servicesPeer(): ServicesPeer | undefined {
    const l = this.o.ledger;
    return l ? { digest: () => (this.digest ??= servicesDigest(this.o.services())), view: l.view, merge: l.merge } : undefined;
  }

  /**
   * The kernel refused synced entries: logged with the errno and the entries (the writer's fields:
   * op proto src dst sport dport, then the reply tuple), at once for the first, then at most once
   * per REFUSAL_LOG_MS with everything refused since.
   */
  private refusedByKernel(r: KernelRefusals): void {
    const u = (this.refusalsUnlogged ??= { count: 0, byErrno: {}, samples: [] });
    u.count += r.count;
    for (const [k, v] of Object.entries(r.byErrno)) u.byErrno[k] = (u.byErrno[k] ?? 0) + v;
    for (const x of r.samples) if (u.samples.length < 5) u.samples.push(x);
    if (this.refusalLogTimer) return;
    const flush = () => {
      const x = this.refusalsUnlogged;
      this.refusalsUnlogged = undefined;
      if (!x) {
        this.refusalLogTimer = undefined;
        return;
      }
      this.o.log('warn', 'session sync: the kernel refused synced entries', { refused: x.count, byErrno: x.byErrno, entries: x.samples.map((e) => `${e.errno} ${e.line}`) });
      this.refusalLogTimer = setTimeout(flush, REFUSAL_LOG_MS);
      this.refusalLogTimer.unref();
    };
    flush();
  }

  private groupOfMark(mark: number): string | undefined {
    const g = this.o.groups;
    if (!g) return undefined;
    this.groupByMark ??= new Map(this.o.services().map((s) => [serviceMark(s), g.ofService(s)]));
    return this.groupByMark.get(mark);
  }

  /**
   * Whether this instance takes other owners' flows now: a backup; with several VIP groups, every
   * instance (an owner of one group receives the others' owners' flows, and must hold their services too).
   */
  private get receiving(): boolean {
    return !this.owner || this.o.groups !== undefined;
  }

  /** The services changed: entries are checked against the new list from now on. */
  servicesChanged(): void {
    this.index = undefined;
    this.groupByMark = undefined;
    this.digest = undefined;
    if (this.receiving) this.server.servicesChanged();
  }

  /** The owner's flows refused since its last resync for want of their service here: this instance's services differ from the owner's. */
  foreignFlows(): number {
    return this.receiving ? this.server.foreignFlows() : 0;
  }

  /** The owner serves other services than this instance (the digests it sends and ours differ). */
  servicesDiffer(): boolean {
    return this.receiving && this.server.servicesDiffer();
  }

  start(): Promise<void> {
    // Ahead of ordinary work on this host (./scheduling.ts), before the helpers start: they inherit it.
    const scheduling = raiseForSync(this.o.realtimePriority);
    if (scheduling.kind === 'realtime') this.o.log('info', 'session sync: running real-time (SCHED_RR), as conntrackd does', { priority: scheduling.priority });
    else this.o.log('warn', 'session sync: not real-time; the stream lags when the host is busy', { scheduling: scheduling.kind, why: scheduling.why });
    // The event reader and the writer are Python (./conntrack-netlink.py): say so at once when it is missing.
    const python = spawnSync('python3', ['--version'], { stdio: 'ignore' });
    if (python.error || python.status !== 0) this.o.log('warn', 'session sync needs python3 (dnf install python3): no flow will be synced, and the heartbeats say so', { error: python.error?.message ?? `exit ${python.status}` });
    else this.writer.warm();
    return this.server.start();
  }

  stop(): void {
    clearTimeout(this.refusalLogTimer);
    this.setOwner(false);
    this.server.stop();
    this.writer.stop();
  }

  /**
   * Starts or stops streaming this host's flows, as the VIP arrives here or leaves (several groups:
   * `owned` names the groups here; a change of them while streaming resyncs every peer, which so
   * learns which groups' copies it holds from this instance).
   */
  setOwner(owner: boolean, owned: readonly string[] = []): void {
    const ownedChanged = owned.length !== this.owned.length || owned.some((g, i) => g !== this.owned[i]);
    this.owned = [...owned];
    if (owner === this.owner) {
      if (owner && ownedChanged && this.o.groups) for (const s of this.streams) s.resyncNow();
      return;
    }
    this.owner = owner;
    if (owner) {
      this.streams = this.o.peers.map((p) => new PeerStream({ keys: this.o.keys, deploymentId: this.o.deploymentId, selfIndex: this.o.self.index, peer: { ...p, port: this.o.self.port }, dump: ourFlows, log: this.o.log, servicesDigest: () => (this.digest ??= servicesDigest(this.o.services())), ...(this.servicesPeer ? { servicesPeer: this.servicesPeer } : {}), ...(this.o.groups ? { ownedGroups: () => this.owned } : {}) }));
      this.events = new ConntrackEvents({
        onEntry: (e, at) => {
          for (const s of this.streams) s.offer(e, at);
        },
        onLoss: (why) => {
          this.o.log('warn', 'session sync: kernel events were lost; resyncing every peer', { why });
          for (const s of this.streams) s.resyncNow();
        },
      });
      this.events.start();
      for (const s of this.streams) s.start();
      this.o.log('info', 'session sync: this instance owns the VIP; streaming its flows to the peers', { peers: this.o.peers.map((p) => p.ip) });
    } else {
      this.events?.stop();
      this.events = undefined;
      for (const s of this.streams) s.stop();
      this.streams = [];
    }
  }

  status(): SyncStatus {
    const rejected = Object.fromEntries(this.server.rejected) as SyncStatus['rejected'];
    const kernelRefused = this.injector.refused ? Object.fromEntries(this.injector.refusedByErrno) : undefined;
    if (this.injector.refused) rejected['kernel-refused'] = this.injector.refused;
    const streamsInSync = this.streams.length > 0 && this.streams.every((s) => s.inSync());
    const groups = this.o.groups ? Object.fromEntries(this.o.groups.names.map((g) => [g, this.owned.includes(g) ? streamsInSync : this.server.inSyncFor(g)])) : undefined;
    if (this.owner) {
      return {
        mode: 'sending',
        inSync: streamsInSync,
        lagSeconds: Math.max(0, ...this.streams.map((s) => s.lagMs())) / 1000,
        entries: this.streams.reduce((n, s) => n + s.sentEntries, 0),
        resyncs: this.streams.reduce((n, s) => n + s.resyncs, 0),
        rejected,
        kernelRefused,
        peers: this.o.peers.map((p, i) => ({ ...p, state: this.streams[i]?.state ?? 'not-connected' })),
        ...(groups ? { groups } : {}),
      };
    }
    const connected = new Set(this.server.connected());
    return {
      mode: 'receiving',
      inSync: this.server.inSync(),
      lagSeconds: this.server.lagMs() / 1000,
      entries: this.server.entries,
      resyncs: this.server.resyncs,
      rejected,
      kernelRefused,
      peers: this.o.peers.map((p) => ({ ...p, state: connected.has(p.index) ? 'receiving' : 'not-connected' })),
      ...(groups ? { groups } : {}),
    };
  }
}
