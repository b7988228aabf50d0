/**
 * Every flow survives a failover: two LBs running the shipped agent, three backends, a client
 * behind a router namespace standing in for the VPC. The VIP moves as the ENI move does: the
 * interface carrying it disappears from one LB and a new one appears in the other. Long-lived TCP
 * flows (some opened a moment before the move), UDP flows and a stream of fresh connections run
 * through the VIP while it moves. With session sync, every flow goes on with its backend and no
 * reset; without it, flows are lost (so this test can fail).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentRunner, FIX, lbEntry } from '../harness/agents.ts';
import { BACK, Lab, netnsAvailable, type Proc, VIP } from '../harness/netns.ts';

interface Report {
  flows: { id: number; kind: 'tcp' | 'udp'; ageMs: number; backends: string[]; replies: number; errors: string[]; maxGapMs: number }[];
  fresh: { ok: number; failed: number; errors: Record<string, number>; maxGapMs: number };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!netnsAvailable)('session sync: flows survive the VIP moving between LBs', () => {
  let lab: Lab;
  let run: AgentRunner;

  const startAgents = async (sync: boolean) => {
    for (const lb of [1, 2]) {
      await run.startAgent(lb, { peers: [{ index: 2 - lb, ip: `${BACK}.${10 + (3 - lb)}` }], sync: sync ? { secretFile: run.syncKeyFile } : {} }, 300);
      for (const protocol of ['tcp', 'udp'] as const) expect((await run.api(lb, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3], protocol }))).status).toBe(200);
    }
  };
  const stopAgents = async () => {
    for (const lb of [1, 2]) await lab.kill(run.procs.get(`agent${lb}`)!);
  };
  const ha = async (lb: number) => (await run.api(lb, 'GET', '/config/cistate/all')).body.Attr[0];
  const until = async (what: string, f: () => Promise<boolean>, ms = 10_000) => {
    const end = Date.now() + ms;
    while (!(await f())) {
      if (Date.now() > end) throw new Error(`timed out: ${what}`);
      await sleep(50);
    }
  };

  /** Opens flows while `from` holds the VIP, moves it to `to` (gap: the ENI detach/attach), returns what the client saw. */
  const moveUnderTraffic = async (from: number, to: number): Promise<Report> => {
    const flows: Proc = lab.spawn('cl0', process.execPath, [join(FIX, 'flows.mjs'), VIP, '80']);
    await flows.waitFor(/flows ready/);
    flows.child.stdin!.write('tcp 6\nudp 4\nfresh\n');
    await sleep(1500);
    flows.child.stdin!.write('tcp 3\n'); // young flows: opened 0.5 s before the move
    await sleep(500);
    lab.unplugEni();
    await sleep(300);
    lab.plugEni(to);
    await until(`lb${to} is MASTER`, async () => (await ha(to)).state === 'MASTER');
    await sleep(3000);
    flows.child.stdin!.write('report\n');
    const line = await flows.waitFor(/\{"flows".*\n/);
    flows.child.stdin!.write('quit\n');
    await lab.kill(flows);
    void from;
    return JSON.parse(line) as Report;
  };

  beforeAll(async () => {
    lab = new Lab();
    lab.buildVpc({ lbs: 2, backends: 3 });
    run = new AgentRunner(lab);
    await run.startBackends(3);
    lab.plugEni(1);
    await startAgents(true);
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
    run?.cleanup();
  });

  it('follows the interface: the LB holding it is MASTER and routes the flows through it; the peer is in sync', async () => {
    await until('lb1 MASTER, lb2 BACKUP', async () => (await ha(1)).state === 'MASTER' && (await ha(2)).state === 'BACKUP');
    await until('the backup in sync', async () => (await ha(2)).sync === 1);
    expect(await ha(1)).toMatchObject({ syncMode: 'sending', sync: 1 });
    expect(await ha(2)).toMatchObject({ syncMode: 'receiving', syncState: 'in-sync' });
    const rules = lab.exec('lb1', 'ip', ['rule', 'show']);
    expect(rules).toMatch(/fwmark 0x40000000\/0x40000000 lookup 7410/);
    expect(lab.exec('lb1', 'ip', ['route', 'show', 'table', '7410'])).toMatch(/default via 100\.64\.248\.1 dev loxi-eni/);
    expect(lab.exec('lb2', 'ip', ['rule', 'show'])).not.toMatch(/lookup 7410/);
  });

  it('keeps every TCP and UDP flow, with its backend and no reset, when the VIP moves; fresh connections resume', async () => {
    const r = await moveUnderTraffic(1, 2);
    const lost = r.flows.filter((f) => f.errors.length || f.backends.length !== 1);
    expect(lost).toEqual([]);
    for (const f of r.flows) expect(f.maxGapMs).toBeLessThan(3000);
    expect(r.fresh.ok).toBeGreaterThan(20);
    console.log(JSON.stringify({ flowsKept: r.flows.length - lost.length, flowsTotal: r.flows.length, maxPauseMs: Math.max(...r.flows.map((f) => f.maxGapMs)), freshFailed: r.fresh.failed }));
    // The old owner's path is gone, the new owner's is up; the synced table now streams the other way.
    expect(lab.exec('lb1', 'ip', ['rule', 'show'])).not.toMatch(/lookup 7410/);
    expect(lab.exec('lb2', 'ip', ['rule', 'show'])).toMatch(/lookup 7410/);
    await until('lb1 in sync as the new backup', async () => (await ha(1)).sync === 1 && (await ha(1)).syncMode === 'receiving');
  }, 60_000);

  it('fails back the same way, keeping every flow', async () => {
    const r = await moveUnderTraffic(2, 1);
    expect(r.flows.filter((f) => f.errors.length || f.backends.length !== 1)).toEqual([]);
  }, 60_000);

  it('without session sync, the same move loses flows (the test can fail)', async () => {
    await stopAgents();
    for (const lb of [1, 2]) lab.exec(`lb${lb}`, 'conntrack', ['-F']);
    await startAgents(false);
    const r = await moveUnderTraffic(1, 2);
    const lost = r.flows.filter((f) => f.errors.length || f.backends.length !== 1);
    expect(lost.length).toBeGreaterThan(0);
    console.log(JSON.stringify({ withoutSync: { flowsKept: r.flows.length - lost.length, flowsTotal: r.flows.length } }));
  }, 90_000);
});
