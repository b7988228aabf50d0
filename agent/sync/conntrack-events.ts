/**
 * Thin adapter over `conntrack -E`: the kernel's changes to the load-balanced flows (ct mark with
 * SERVICE_MARK_BIT), line by line, with their NAT tuples (`-o extended`). The netlink socket gets
 * a large buffer; when the kernel still drops events (the tool says ENOBUFS) the caller is told,
 * so that it resyncs instead of silently missing changes. A tool that exits is restarted (and
 * reported as a loss: events were missed meanwhile).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { type ConntrackEntry, type ConntrackEvent, parseConntrackLine } from '../conntrack.ts';
import { SERVICE_MARK_BIT } from '../datapath/render.ts';

export const SERVICE_MARK_FILTER = `0x${SERVICE_MARK_BIT.toString(16)}/0x${SERVICE_MARK_BIT.toString(16)}`;
const RECEIVE_BUFFER_BYTES = 64 * 1024 * 1024;

export interface ConntrackEventsOptions {
  onEvent: (event: ConntrackEvent, entry: ConntrackEntry, at: number) => void;
  /** Events were lost (kernel buffer overrun, or the tool died and was restarted). */
  onLoss: (why: string) => void;
  /** Overridable for tests: the command and its arguments. */
  command?: [string, string[]];
}

export class ConntrackEvents {
  private child: ChildProcess | undefined;
  private stopped = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly o: ConntrackEventsOptions;
  /** Set once the tool has been running: the first start is not a loss. */
  private started = false;

  constructor(o: ConntrackEventsOptions) {
    this.o = o;
  }

  start(): void {
    this.stopped = false;
    const [cmd, args] = this.o.command ?? ['conntrack', ['-E', '-o', 'extended', '-e', 'NEW,UPDATE,DESTROY', '-m', SERVICE_MARK_FILTER, '-b', String(RECEIVE_BUFFER_BYTES)]];
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    if (this.started) this.o.onLoss('the conntrack event stream was restarted');
    this.started = true;
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      const at = Date.now();
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const e = parseConntrackLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (e?.event) this.o.onEvent(e.event, e, at);
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      if (/ENOBUFS|losing events/i.test(d)) this.o.onLoss('the kernel dropped conntrack events (ENOBUFS)');
    });
    child.on('error', () => undefined);
    child.on('close', () => {
      if (this.child !== child || this.stopped) return;
      this.child = undefined;
      this.restartTimer = setTimeout(() => this.start(), 200);
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
