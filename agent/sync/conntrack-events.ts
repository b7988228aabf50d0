/**
 * Thin adapter over the kernel's changes to the load-balanced flows (ct mark with
 * SERVICE_MARK_BIT): the ctnetlink helper's event reader (./conntrack-netlink.py `events`) prints
 * each one in the sync channel's own fields, on a socket whose receive buffer it sizes itself.
 * (`conntrack -E -b`, which this replaced, applies its size to a socket that is not the one
 * subscribed to the events: the events kept the kernel's 208 KB and were lost whenever the agent
 * paused for longer than ≈ 70 ms at 15,000 new flows/s.) When the kernel still drops events
 * (ENOBUFS) the caller is told, so that it resyncs instead of silently missing changes. A reader
 * that exits is restarted (and reported as a loss: events were missed meanwhile).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { SERVICE_MARK_BIT } from '../datapath/render.ts';
import { type WireEntry } from './entry.ts';
import { CONNTRACK_HELPER } from './inject.ts';

export const SERVICE_MARK_FILTER = `0x${SERVICE_MARK_BIT.toString(16)}/0x${SERVICE_MARK_BIT.toString(16)}`;

export interface ConntrackEventsOptions {
  onEntry: (entry: WireEntry, at: number) => void;
  /** Events were lost (kernel buffer overrun, or the reader died and was restarted). */
  onLoss: (why: string) => void;
  /** Overridable for tests: the command and its arguments. */
  command?: [string, string[]];
}

/** One event line of the reader (the writer's format: '-' for UDP's state), or undefined. */
export function parseEventLine(line: string): WireEntry | undefined {
  const f = line.split(' ');
  if (f.length !== 14 || (f[0] !== 'n' && f[0] !== 'u' && f[0] !== 'x') || (f[1] !== 'tcp' && f[1] !== 'udp')) return undefined;
  const n = [4, 5, 8, 9, 10, 12, 13].map((i) => Number(f[i]));
  if (!n.every(Number.isInteger)) return undefined;
  const [sport, dport, rsport, rdport, mark, timeout, flags] = n as [number, number, number, number, number, number, number];
  return [f[0], f[1], f[2]!, f[3]!, sport, dport, f[6]!, f[7]!, rsport, rdport, mark, f[11] === '-' ? '' : f[11]!, timeout, flags];
}

export class ConntrackEvents {
  private child: ChildProcess | undefined;
  private stopped = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly o: ConntrackEventsOptions;
  /** Set once the reader has been running: the first start is not a loss. */
  private started = false;
  /** The reader is subscribed (it said so): changes from now on arrive. */
  ready = false;
  /** Readers in a row that died within a second of starting (python3 missing, no permission): restarts back off. */
  private quickFailures = 0;
  /** Why the last reader ended, for the loss report. */
  private lastFailure = '';

  constructor(o: ConntrackEventsOptions) {
    this.o = o;
  }

  start(): void {
    this.stopped = false;
    const [cmd, args] = this.o.command ?? ['python3', [CONNTRACK_HELPER, 'events', `0x${SERVICE_MARK_BIT.toString(16)}`]];
    // stdin is a pipe only so that the reader sees it close when this process ends, however it ends
    // (it also asks the kernel to signal it when its parent dies): a reader never outlives its agent.
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LOXIHA_PARENT_PID: String(process.pid) } });
    child.stdin!.on('error', () => undefined);
    this.child = child;
    this.ready = false;
    if (this.started) this.o.onLoss(`the conntrack event reader was restarted${this.lastFailure ? ` (it ended: ${this.lastFailure})` : ''}`);
    this.started = true;
    this.lastFailure = '';
    const startedAt = Date.now();
    let stderr = '';
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      const at = Date.now();
      buf += d;
      const end = buf.lastIndexOf('\n');
      if (end < 0) return;
      const lines = buf.slice(0, end).split('\n');
      buf = buf.slice(end + 1);
      for (const line of lines) {
        if (line.startsWith('ready ')) this.ready = true;
        else if (line.startsWith('lost ')) this.o.onLoss(line.slice(5));
        else {
          const e = parseEventLine(line);
          if (e) this.o.onEntry(e, at);
        }
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-500)));
    child.on('error', (e) => (this.lastFailure = e.message));
    child.on('close', (code, signal) => {
      if (this.child !== child || this.stopped) return;
      this.child = undefined;
      this.lastFailure ||= stderr.trim().split('\n').at(-1) || `exit ${code ?? signal}`;
      this.quickFailures = Date.now() - startedAt < 1000 ? this.quickFailures + 1 : 0;
      this.restartTimer = setTimeout(() => this.start(), Math.min(10_000, 200 * 2 ** this.quickFailures));
    });
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    this.child?.kill('SIGKILL');
    this.child = undefined;
    this.started = false;
  }
}
