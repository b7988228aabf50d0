/**
 * Session sync as the agent runs it: every instance receives (./receiver.ts); the owner of the VIP
 * also watches its kernel's load-balanced flows (`conntrack -E`, ./conntrack-events.ts) and
 * streams them to every peer (./sender.ts). The peer's copies wait for the owner's end of each flow
 * (./entry.ts), so nothing is re-sent periodically. Lost events (the kernel says ENOBUFS) trigger a
 * resync of every stream, applied by the peer as a difference.
 */
import { spawnSync } from 'node:child_process';
import { conntrackEntries } from '../conntrack.ts';
import type { AddressAliases, Service } from '../services/model.ts';
import { ConntrackEvents, SERVICE_MARK_FILTER } from './conntrack-events.ts';
import { fromConntrack, serviceIndex, type WireEntry } from './entry.ts';
import { conntrackWriter, Injector } from './inject.ts';
import { SyncServer, type SyncRejection } from './receiver.ts';
import { PeerStream, type StreamState } from './sender.ts';

export interface SessionSyncOptions {
  key: Buffer;
  deploymentId: string;
  self: { index: number; ip: string; port: number };
  peers: { index: number; ip: string }[];
  services: () => Service[];
  /** Route strategy: this instance's ingress IP stands for the VIP, and the peers' ingress IPs in synced flows become it. */
  aliases?: AddressAliases;
  rewriteDestination?: ReadonlyMap<string, string>;
  log: (level: 'info' | 'warn', msg: string, extra?: Record<string, unknown>) => void;
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
  peers: { index: number; ip: string; state: StreamState | 'receiving' | 'not-connected' }[];
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
  private index: ReturnType<typeof serviceIndex> | undefined;

  constructor(o: SessionSyncOptions) {
    this.o = o;
    this.server = new SyncServer({
      key: o.key,
      deploymentId: o.deploymentId,
      peers: new Set(o.peers.map((p) => p.index)),
      listen: { ip: o.self.ip, port: o.self.port },
      services: () => (this.index ??= serviceIndex(o.services(), o.aliases)),
      rewriteDestination: o.rewriteDestination,
      injector: this.injector,
      isOwner: () => this.owner,
      listOurs: ourFlows,
      log: o.log,
    });
  }

  /** The services changed: entries are checked against the new list from now on. */
  servicesChanged(): void {
    this.index = undefined;
  }

  start(): Promise<void> {
    // The event reader and the writer are Python (./conntrack-netlink.py): say so at once when it is missing.
    const python = spawnSync('python3', ['--version'], { stdio: 'ignore' });
    if (python.error || python.status !== 0) this.o.log('warn', 'session sync needs python3 (dnf install python3): no flow will be synced, and the heartbeats say so', { error: python.error?.message ?? `exit ${python.status}` });
    return this.server.start();
  }

  stop(): void {
    this.setOwner(false);
    this.server.stop();
    this.writer.stop();
  }

  /** Starts or stops streaming this host's flows, as the VIP arrives here or leaves. */
  setOwner(owner: boolean): void {
    if (owner === this.owner) return;
    this.owner = owner;
    if (owner) {
      this.streams = this.o.peers.map((p) => new PeerStream({ key: this.o.key, deploymentId: this.o.deploymentId, selfIndex: this.o.self.index, peer: { ...p, port: this.o.self.port }, dump: ourFlows, log: this.o.log }));
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
    if (this.injector.refused) rejected['kernel-refused'] = this.injector.refused;
    if (this.owner) {
      return {
        mode: 'sending',
        inSync: this.streams.length > 0 && this.streams.every((s) => s.inSync()),
        lagSeconds: Math.max(0, ...this.streams.map((s) => s.lagMs())) / 1000,
        entries: this.streams.reduce((n, s) => n + s.sentEntries, 0),
        resyncs: this.streams.reduce((n, s) => n + s.resyncs, 0),
        rejected,
        peers: this.o.peers.map((p, i) => ({ ...p, state: this.streams[i]?.state ?? 'not-connected' })),
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
      peers: this.o.peers.map((p) => ({ ...p, state: connected.has(p.index) ? 'receiving' : 'not-connected' })),
    };
  }
}
