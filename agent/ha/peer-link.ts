/**
 * Heartbeats between the LB instances over UDP (authenticated, ./peer-message.ts): each agent
 * sends one beat per interval to every peer and tracks when it last heard each. A peer not heard
 * for `lossAfterMs` is lost (reported once per episode); heard again, it is back.
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
  key: Buffer;
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
    const me = this.o.me();
    const datagram = encodeBeat(this.o.key, { v: 1, d: this.o.deploymentId, from: this.o.self.index, id: me.instanceId, role: me.role, seq: this.seq++, at: now });
    for (const p of this.o.peers) this.socket?.send(datagram, p.port, p.ip);
    for (const state of this.peers.values()) {
      if (state.lastHeardAt !== undefined && !state.lost && now - state.lastHeardAt > this.o.lossAfterMs) {
        state.lost = true;
        this.o.onLost({ ...state });
      }
    }
  }

  private receive(datagram: Buffer, from: string): void {
    const now = Date.now();
    const v = verifyBeat(datagram, { key: this.o.key, deploymentId: this.o.deploymentId, peers: this.peerIndexes, now, lastAt: this.lastAt });
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
    if (state.lost) {
      state.lost = false;
      this.o.onBack({ ...state });
    }
  }
}
