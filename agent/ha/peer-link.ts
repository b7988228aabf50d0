/**
 * Heartbeats between the LB instances over UDP (authenticated, ./peer-message.ts): each agent
 * sends one beat per interval to every peer and tracks when it last heard each. A peer not heard
 * for `lossAfterMs` is suspected; it is lost (reported once per episode) only when a second check
 * that does not depend on its event loop fails too (`confirmAlive`: in the agent, a TCP connect to
 * the peer's sync port, which its kernel answers — a connection, or a reset while its agent
 * restarts — however its process is doing; only a host that answers nothing is lost). Silence that overlaps a stall of this process's
 * own event loop does not count: the beats are still in the socket's queue. Heard again, it is back.
 */
import { createSocket, type Socket } from 'node:dgram';
import { encodeBeat, type PeerBeat, type Rejection, verifyBeat } from './peer-message.ts';

export interface PeerState {
  index: number;
  ip: string;
  lastHeardAt: number | undefined;
  /** What the peer said in its last accepted beat. */
  role: PeerBeat['role'] | undefined;
  instanceId: string | null | undefined;
  lost: boolean;
}

export interface PeerLinkOptions {
  /** The shared keys: the first signs this agent's beats, every one is accepted (a rotation's overlap). */
  keys: () => readonly Buffer[];
  deploymentId: string;
  self: { index: number; ip: string; port: number };
  peers: { index: number; ip: string; port: number }[];
  intervalMs: number;
  lossAfterMs: number;
  /** What this agent says about itself in each beat. */
  me: () => { role: PeerBeat['role']; instanceId: string | null };
  onLost: (peer: PeerState) => void;
  onBack: (peer: PeerState) => void;
  onRejected: (reason: Rejection, from: string) => void;
  /**
   * The second check on a suspected peer: resolves true when it is alive after all (e.g. its kernel
   * completes a TCP connection to it). Without one, silence alone decides.
   */
  confirmAlive?: (peer: PeerState) => Promise<boolean>;
  /** Told when a silent peer was found alive by the second check (once per episode). */
  onSilentButAlive?: (peer: PeerState) => void;
}

export class PeerLink {
  private readonly o: PeerLinkOptions;
  private socket: Socket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private seq = 0;
  private readonly lastAt = new Map<number, number>();
  readonly peers = new Map<number, PeerState>();
  private readonly peerIndexes: ReadonlySet<number>;
  readonly rejected = new Map<Rejection, number>();
  /** When this process's own event loop last came back from a stall (silence before it does not count). */
  private stallEndAt = 0;
  private lastTickAt = 0;
  /** Peers being checked a second time, and when a silent peer was last found alive. */
  private readonly confirming = new Set<number>();
  private readonly aliveAt = new Map<number, number>();
  /** Stalls of this process's own event loop seen (a tick more than two intervals late). */
  stalls = 0;

  constructor(o: PeerLinkOptions) {
    this.o = o;
    for (const p of o.peers) this.peers.set(p.index, { index: p.index, ip: p.ip, lastHeardAt: undefined, role: undefined, instanceId: undefined, lost: false });
    this.peerIndexes = new Set(this.peers.keys());
  }

  async start(): Promise<void> {
    const socket = createSocket('udp4');
    socket.on('message', (msg, from) => this.receive(msg, `${from.address}:${from.port}`));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(this.o.self.port, this.o.self.ip, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    socket.on('error', () => undefined);
    this.socket = socket;
    this.lastTickAt = 0;
    // Started again after a stop: the peers are judged from what is heard from now on, as a new
    // process would (a silence that began before the stop is not this run's to count).
    for (const p of this.peers.values()) Object.assign(p, { lastHeardAt: undefined, lost: false });
    this.aliveAt.clear();
    this.tick();
    this.timer = setInterval(() => this.tick(), this.o.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.socket?.close();
    this.socket = undefined;
  }

  private tick(): void {
    const now = Date.now();
    // A tick far later than its interval means this process was stalled (GC, CPU starvation): the
    // peers' beats are waiting in the socket's queue, delivered after this timer. Judge from here on.
    if (this.lastTickAt && now - this.lastTickAt > 2 * this.o.intervalMs) {
      this.stallEndAt = now;
      this.stalls++;
    }
    this.lastTickAt = now;
    const me = this.o.me();
    const datagram = encodeBeat(this.o.keys()[0]!, { v: 1, d: this.o.deploymentId, from: this.o.self.index, id: me.instanceId, role: me.role, seq: this.seq++, at: now });
    for (const p of this.o.peers) this.socket?.send(datagram, p.port, p.ip);
    for (const state of this.peers.values()) {
      if (state.lastHeardAt === undefined || state.lost || this.confirming.has(state.index)) continue;
      const silentSince = Math.max(state.lastHeardAt, this.stallEndAt, this.aliveAt.get(state.index) ?? 0);
      if (now - silentSince <= this.o.lossAfterMs) continue;
      if (!this.o.confirmAlive) {
        this.lose(state);
        continue;
      }
      this.confirming.add(state.index);
      this.o.confirmAlive({ ...state }).then(
        (alive) => this.confirmed(state, alive),
        () => this.confirmed(state, false),
      );
    }
  }

  private confirmed(state: PeerState, alive: boolean): void {
    this.confirming.delete(state.index);
    if (!this.socket) return;
    // Heard meanwhile: the silence is over, whatever the check said.
    if (state.lastHeardAt !== undefined && Date.now() - state.lastHeardAt <= this.o.lossAfterMs) return;
    if (alive) {
      // Alive by its kernel, silent on the heartbeat channel: look again after another full window.
      if (!this.aliveAt.has(state.index)) this.o.onSilentButAlive?.({ ...state });
      this.aliveAt.set(state.index, Date.now());
      return;
    }
    this.lose(state);
  }

  private lose(state: PeerState): void {
    if (state.lost) return;
    state.lost = true;
    this.o.onLost({ ...state });
  }

  private receive(datagram: Buffer, from: string): void {
    const now = Date.now();
    const v = verifyBeat(datagram, { keys: this.o.keys(), deploymentId: this.o.deploymentId, peers: this.peerIndexes, now, lastAt: this.lastAt });
    if (!v.ok) {
      this.rejected.set(v.reason, (this.rejected.get(v.reason) ?? 0) + 1);
      this.o.onRejected(v.reason, from);
      return;
    }
    const state = this.peers.get(v.beat.from)!;
    this.lastAt.set(v.beat.from, v.beat.at);
    state.lastHeardAt = now;
    state.role = v.beat.role;
    state.instanceId = v.beat.id;
    this.aliveAt.delete(v.beat.from);
    if (state.lost) {
      state.lost = false;
      this.o.onBack({ ...state });
    }
  }
}
