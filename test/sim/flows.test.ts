/**
 * The one definition of a kept flow (sim/flows.ts `whyLost`): a flow is kept when it keeps
 * answering to the end. Checked on reports made up for each case, and on the flow client itself
 * (sim/programs/flows.mjs) against the test backend in a namespace of its own: flows that answer
 * are kept; the same flows frozen (SIGSTOP of the backend, no error anywhere) are lost.
 */
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROGRAMS } from '../../sim/agents.ts';
import { type FlowsReport, KEPT_ALLOWANCE, lostFlows, whyLost } from '../../sim/flows.ts';
import { netnsAvailable } from '../harness/prerequisites.ts';

type Flow = FlowsReport['flows'][number];
const healthy = (o: Partial<Flow> = {}): Flow => ({
  id: 0,
  kind: 'tcp',
  ageMs: 8000,
  backends: ['be1'],
  replies: 400,
  sent: 400,
  pausedMs: 4000,
  errors: [],
  maxGapMs: 4000,
  maxGapEndAt: 1,
  lastAt: 1,
  tailGapMs: 20,
  ...o,
});

describe('a kept flow keeps answering to the end', () => {
  it('keeps a flow that paused for the move and answered everything since', () => {
    expect(whyLost(healthy())).toBeUndefined();
    // UDP: pings sent while the VIP had no home are gone (4 s of pauses: 200 pings); every other one is answered.
    expect(whyLost(healthy({ kind: 'udp', replies: 200, sent: 400 }))).toBeUndefined();
    // The last pings may still be in flight.
    expect(whyLost(healthy({ replies: 400 - KEPT_ALLOWANCE }))).toBeUndefined();
  });

  it('counts as lost a flow that stalled without an error, one whose replies stopped, and one that lost pings after the move', () => {
    expect(whyLost(healthy({ tailGapMs: 3000 }))).toMatch(/silent for the last 3000 ms/);
    expect(whyLost(healthy({ kind: 'udp', tailGapMs: 1500 }))).toMatch(/silent/);
    expect(whyLost(healthy({ replies: 300 }))).toMatch(/300 of 400 pings answered/);
    expect(whyLost(healthy({ kind: 'udp', replies: 100, sent: 400 }))).toMatch(/100 of 400 pings answered \(200 sent during its pauses\)/);
    expect(whyLost(healthy({ errors: ['ECONNRESET'] }))).toMatch(/ECONNRESET/);
    expect(whyLost(healthy({ backends: ['be1', 'be2'] }))).toMatch(/backends/);
    expect(lostFlows({ flows: [healthy(), healthy({ tailGapMs: 5000 })], fresh: { ok: 0, failed: 0, errors: {}, maxGapMs: 0 }, series: [] })).toHaveLength(1);
  });
});

describe.skipIf(!netnsAvailable)('the flow client against a backend that freezes', () => {
  const ns = `lxf${process.pid}`;
  const inNs = (cmd: string, args: string[]) => spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  let backend: ReturnType<typeof spawn>;
  let flows: ReturnType<typeof spawn>;
  let out = '';
  const line = (re: RegExp, ms = 10_000) =>
    new Promise<string>((resolve, reject) => {
      const end = Date.now() + ms;
      const tick = () => {
        const m = re.exec(out);
        if (m) {
          out = out.slice(m.index + m[0].length);
          return resolve(m[0]);
        }
        if (Date.now() > end) return reject(new Error(`timed out waiting for ${re}`));
        setTimeout(tick, 20);
      };
      tick();
    });
  const report = async (): Promise<FlowsReport> => {
    flows.stdin!.write('report\n');
    return JSON.parse(await line(/\{"flows".*\n/));
  };

  beforeAll(async () => {
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    backend = inNs(process.execPath, [join(PROGRAMS, 'backend.mjs'), 'be1', '8080']);
    await new Promise<void>((r) => backend.stdout!.on('data', (d) => String(d).includes('udp') && r()));
    flows = inNs(process.execPath, [join(PROGRAMS, 'flows.mjs'), '127.0.0.1', '8080']);
    flows.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    await line(/flows ready/);
  });
  afterAll(() => {
    flows?.kill('SIGKILL');
    backend?.kill('SIGCONT');
    backend?.kill('SIGKILL');
    execFileSync('ip', ['netns', 'del', ns]);
  });

  it('answering flows are kept; frozen ones — no error, no reset — are lost', async () => {
    flows.stdin!.write('tcp 3\nudp 3\n');
    await new Promise((r) => setTimeout(r, 1500));
    const before = await report();
    expect(before.flows).toHaveLength(6);
    expect(lostFlows(before).map((f) => whyLost(f))).toEqual([]);
    // The backend stops answering: nothing closes, nothing errors; the flows just go silent.
    backend.kill('SIGSTOP');
    await new Promise((r) => setTimeout(r, 2000));
    const stalled = await report();
    backend.kill('SIGCONT');
    expect(stalled.flows.every((f) => f.errors.length === 0)).toBe(true);
    expect(lostFlows(stalled)).toHaveLength(6);
    for (const f of stalled.flows) expect(whyLost(f)).toMatch(/silent for the last \d+ ms/);
  }, 30_000);
});
