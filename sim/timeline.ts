/**
 * What happened during a demo run, in order: each mark is printed as a progress line when it
 * happens (time relative to the failure), then kept for the summary table and the HTML report.
 */

export const PHASES = ['setup', 'failure', 'detection', 'lease', 'ec2', 'eni', 'eip', 'role', 'traffic', 'sessions', 'done'] as const;
export type Phase = (typeof PHASES)[number];

export interface Mark {
  /** Epoch ms. */
  at: number;
  phase: Phase;
  label: string;
  /** For marks that span time (an EC2 call, the handler's run): how long, ms. */
  ms?: number;
}

export class Timeline {
  readonly marks: Mark[] = [];
  /** The failure (or the planned move's start): time zero of the printed lines. */
  zero: number | undefined;
  private readonly print: (line: string) => void;
  private readonly started = Date.now();

  constructor(print: (line: string) => void) {
    this.print = print;
  }

  mark(phase: Phase, label: string, o: { at?: number; ms?: number } = {}): Mark {
    const m: Mark = { at: o.at ?? Date.now(), phase, label, ...(o.ms !== undefined ? { ms: Math.round(o.ms) } : {}) };
    if (phase === 'failure' && this.zero === undefined) this.zero = m.at;
    this.marks.push(m);
    this.print(this.line(m));
    return m;
  }

  first(phase: Phase, after = this.zero ?? 0): Mark | undefined {
    return this.marks.filter((m) => m.phase === phase && m.at >= after).sort((a, b) => a.at - b.at)[0];
  }

  /** Seconds from the failure to `at`. */
  since(at: number): number {
    return Math.round((at - (this.zero ?? this.started)) / 10) / 100;
  }

  line(m: Mark): string {
    const t = this.since(m.at);
    const rel = `${t >= 0 ? '+' : ''}${t.toFixed(2)} s`.padStart(9);
    return `${rel}  ${m.phase.padEnd(9)}  ${m.label}${m.ms !== undefined ? ` (${m.ms} ms)` : ''}`;
  }

  /** One row per phase after the failure: when it first happened and how long its marks spanned. */
  summary(): { phase: Phase; firstS: number; lastS: number; marks: number; label: string }[] {
    const zero = this.zero ?? this.started;
    return PHASES.filter((p) => p !== 'setup')
      .map((phase) => {
        const ms = this.marks.filter((m) => m.phase === phase && m.at >= zero);
        if (!ms.length) return undefined;
        const first = Math.min(...ms.map((m) => m.at));
        const last = Math.max(...ms.map((m) => m.at + (m.ms ?? 0)));
        return { phase, firstS: this.since(first), lastS: this.since(last), marks: ms.length, label: ms[0]!.label };
      })
      .filter((r) => r !== undefined);
  }
}
