/**
 * Traffic through the VIP while it moves between LBs (the e2e test and bench:sync): long-lived TCP
 * flows (some opened a moment before the move), UDP flows and a stream of fresh connections, run
 * by sim/programs/flows.mjs in the client namespace of a Lab built with buildVpc().
 */
import { join } from 'node:path';
import { type AgentRunner, PROGRAMS } from './agents.ts';
import { type Lab, type Proc, VIP } from './netns.ts';

export interface FlowsReport {
  flows: {
    id: number;
    kind: 'tcp' | 'udp';
    ageMs: number;
    backends: string[];
    /** Pings answered and sent (one every PING_INTERVAL_MS). */
    replies: number;
    sent: number;
    /** Time spent in pauses (silences over 200 ms: the moves), all together. */
    pausedMs: number;
    errors: string[];
    maxGapMs: number;
    maxGapEndAt: number | null;
    lastAt: number | null;
    /** Since the last reply when the report was taken. */
    tailGapMs: number;
  }[];
  fresh: { ok: number; failed: number; errors: Record<string, number>; maxGapMs: number };
  /** Per 100 ms (epoch ms of the bucket's start): fresh connections ok and failed, long-lived flows that answered. */
  series: { t: number; ok: number; failed: number; replies: number }[];
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits for a condition, looking every `everyMs`, at most `ms` (a test's wait: never a fixed sleep where a condition can be awaited). */
export async function until(what: string, f: () => boolean | Promise<boolean>, ms = 10_000, everyMs = 50): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(everyMs);
  }
}

/** The HA entry an agent reports (`GET /config/cistate/all`). */
export const haOf = async (run: AgentRunner, lb: number) => (await run.api(lb, 'GET', '/config/cistate/all')).body.Attr[0];

/**
 * The one definition of a kept flow, for every flow figure and test: it **keeps answering to the
 * end** — no error, only ever one backend, a reply within the last KEPT_TAIL_GAP_MS before the
 * report, and every ping answered but the last KEPT_ALLOWANCE (those still in flight). TCP
 * retransmits what a move delays, so a kept TCP flow answers every ping it ever sent; UDP pings
 * sent while the VIP had no home (the flow's pauses, one per move) are gone, which is the pause,
 * not a loss — any other unanswered ping is. A flow that stalls without an error, or whose UDP
 * replies stop, is lost.
 */
export const KEPT_TAIL_GAP_MS = 1000;
export const KEPT_ALLOWANCE = 50;
/** How often sim/programs/flows.mjs pings each flow. */
export const PING_INTERVAL_MS = 20;
export function whyLost(f: FlowsReport['flows'][number]): string | undefined {
  if (f.errors.length) return `error: ${f.errors.join(', ')}`;
  if (f.backends.length !== 1) return `backends: ${f.backends.join(', ') || 'none'}`;
  if (f.tailGapMs > KEPT_TAIL_GAP_MS) return `silent for the last ${f.tailGapMs} ms`;
  const goneInPauses = f.kind === 'udp' ? Math.ceil(f.pausedMs / PING_INTERVAL_MS) : 0;
  if (f.replies < f.sent - goneInPauses - KEPT_ALLOWANCE) return `${f.replies} of ${f.sent} pings answered${goneInPauses ? ` (${goneInPauses} sent during its pauses)` : ''}`;
  return undefined;
}
/** Lost with no way back: an error ended it, or another backend answered it. */
export const lostForGood = (f: FlowsReport['flows'][number]): boolean => f.errors.length > 0 || f.backends.length > 1;
export const lostFlows = (r: FlowsReport) => r.flows.filter((f) => whyLost(f) !== undefined);

/**
 * Asks the flow client for its report until every flow is kept (answering, and caught up with what
 * it sent), or `boundMs` has passed: a TCP flow back from a pause of seconds waits out its
 * retransmission back-off (it doubles while the path is down) and then drains its backlog from a
 * small congestion window, so a report taken at a fixed moment would call a recovering flow lost.
 * One that is not kept by the bound is lost. A flow lost for good (an error ended it, or a second
 * backend answered it) cannot come back and is not waited for.
 */
export async function reportWhenSettled(flows: Proc, boundMs = 20_000): Promise<FlowsReport> {
  const end = Date.now() + boundMs;
  for (let n = 1; ; n++) {
    // Each ask is tagged: the process's output is kept only in part, so answers are found by tag, not counted.
    const tag = `settle-${n}`;
    flows.child.stdin!.write(`report ${tag}\n`);
    const line = await flows.waitFor(new RegExp(`\\{"flows".*"tag":"${tag}"\\}\\n`), 10_000);
    const r = JSON.parse(line) as FlowsReport;
    // Settled: every flow kept (answering now, and caught up with what it sent) or lost for good, or the bound.
    if (r.flows.every((f) => whyLost(f) === undefined || lostForGood(f)) || Date.now() > end) return r;
    await sleep(250);
  }
}

/** The settled report, then the flow client ends. */
export async function finalReport(lab: Lab, flows: Proc): Promise<FlowsReport> {
  const r = await reportWhenSettled(flows);
  flows.child.stdin!.write('quit\n');
  await lab.kill(flows);
  return r;
}

/**
 * Opens 6 TCP and 4 UDP flows and fresh connections to `target` (the VIP by default), 3 more TCP
 * flows 0.5 s before the move, moves the VIP to LB `to` (by default as the ENI move does: loxi-eni
 * gone for 300 ms, then plugged into `to`; `move` does it another way), waits until `to` says
 * MASTER and 3 s more, and returns what the client saw.
 */
export async function moveUnderTraffic(lab: Lab, run: AgentRunner, to: number, o: { target?: string; move?: () => Promise<void> } = {}): Promise<FlowsReport> {
  const flows: Proc = lab.spawn('cl0', process.execPath, [join(PROGRAMS, 'flows.mjs'), o.target ?? VIP, '80']);
  await flows.waitFor(/flows ready/);
  flows.child.stdin!.write('tcp 6\nudp 4\nfresh\n');
  await sleep(1500);
  flows.child.stdin!.write('tcp 3\n');
  await sleep(500);
  if (o.move) await o.move();
  else {
    lab.unplugEni();
    await sleep(300);
    lab.plugEni(to);
  }
  await until(`lb${to} is MASTER`, async () => (await haOf(run, to)).state === 'MASTER');
  await sleep(3000);
  return finalReport(lab, flows);
}
