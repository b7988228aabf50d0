/**
 * Thin adapter over the kernel's changes to the load-balanced flows (ct mark with
 * SERVICE_MARK_BIT): the ctnetlink helper's event reader (./conntrack-netlink.py `events`) passes
 * the kernel's event messages through, from a socket whose receive buffer it sizes itself, and
 * ./ctnetlink-event.ts reads them into the sync channel's fields.
 * (`conntrack -E -b`, which this replaced, applies its size to a socket that is not the one
 * subscribed to the events: the events kept the kernel's 208 KB and were lost whenever the agent
 * paused for longer than ≈ 70 ms at 15,000 new flows/s.) When the kernel still drops events
 * (ENOBUFS) the caller is told, so that it resyncs instead of silently missing changes. A reader
 * that exits is restarted (and reported as a loss: events were missed meanwhile).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { SERVICE_MARK_BIT } from '../datapath/render.ts';
import { readCtEvents } from './ctnetlink-event.ts';
import { type WireEntry } from './entry.ts';
import { CONNTRACK_HELPER, PYTHON_FLAGS, WRITER_PORT_ID } from './inject.ts';

export const SERVICE_MARK_FILTER = `0x${SERVICE_MARK_BIT.toString(16)}/0x${SERVICE_MARK_BIT.toString(16)}`;

export interface ConntrackEventsOptions {
  onEntry: (entry: WireEntry, at: number) => void;
  /** Events were lost (kernel buffer overrun, or the reader died and was restarted). */
  onLoss: (why: string) => void;
  /** Overridable for tests: the command and its arguments. */
  command?: [string, string[]];
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
    const [cmd, args] = this.o.command ?? ['python3', [...PYTHON_FLAGS, CONNTRACK_HELPER, 'events', String(WRITER_PORT_ID)]];
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
    let lineBuf = '';
    let rest: Buffer | undefined;
    child.stdout!.on('data', (d: Buffer) => {
      const at = Date.now();
      const b = rest ? Buffer.concat([rest, d]) : d;
      let used: number;
      try {
        used = readCtEvents(b, SERVICE_MARK_BIT, WRITER_PORT_ID, (e) => this.o.onEntry(e, at));
      } catch (e) {
        this.lastFailure = (e as Error).message;
        child.kill('SIGKILL');
        return;
      }
      rest = used < b.length ? Buffer.from(b.subarray(used)) : undefined;
    });
    // Its status (and, when it fails, why) comes on stderr, a line at a time.
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      lineBuf += d;
      let i: number;
      while ((i = lineBuf.indexOf('\n')) >= 0) {
        const line = lineBuf.slice(0, i);
        lineBuf = lineBuf.slice(i + 1);
        if (line.startsWith('ready ')) this.ready = true;
        else if (line.startsWith('lost ')) this.o.onLoss(line.slice(5));
        else if (line) stderr = `${stderr}\n${line}`.slice(-500);
      }
    });
    child.on('error', (e) => (this.lastFailure = e.message));
    child.on('close', (code, signal) => {
      if (this.child !== child || this.stopped) return;
      this.child = undefined;
      this.lastFailure ||= lineBuf.trim() || stderr.trim().split('\n').at(-1) || `exit ${code ?? signal}`;
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
