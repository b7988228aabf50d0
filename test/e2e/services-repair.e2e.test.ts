/**
 * The agents agree on services, or repair it: kube-loxilb sends every change to each agent and
 * never retries one that failed, so one agent can miss a create, an update or a delete. Two LBs
 * running the shipped agent with session sync: a change one agent refused, a delete seen by one
 * agent only, an agent restarted during a burst of changes — each converges (the time is printed
 * as a JSON line), a delete is never undone, and a failover afterwards keeps every flow.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentRunner, lbEntry } from '../../sim/agents.ts';
import { haOf, lostFlows, moveUnderTraffic, sleep, until, whyLost } from '../../sim/flows.ts';
import { BACK, Lab } from '../../sim/netns.ts';
import { netnsAvailable } from '../harness/prerequisites.ts';

describe.skipIf(!netnsAvailable)('services repair between the agents', () => {
  let lab: Lab;
  let run: AgentRunner;
  const startAgent = (lb: number) => run.startAgent(lb, { peers: [{ index: 2 - lb, ip: `${BACK}.${10 + (3 - lb)}` }], sync: { secretFile: run.syncKeyFile } }, 300);
  const ports = async (lb: number) => ((await run.api(lb, 'GET', '/config/loadbalancer/all')).body.lbAttr as { serviceArguments: { port: number }; endpoints: unknown[] }[]).map((e) => `${e.serviceArguments.port}/${e.endpoints.length}`).sort();
  /** An API call that lets the event loop run meanwhile (run.api blocks it): curl in the LB's namespace; its HTTP status, 0 when refused. */
  const callAsync = (lb: number, method: string, path: string, body?: unknown): Promise<number> => {
    const args = ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-X', method, `http://127.0.0.1:11111/netlox/v1${path}`, '-H', `authorization: ${run.token}`];
    if (body !== undefined) args.push('-H', 'content-type: application/json', '--data-binary', JSON.stringify(body));
    const p = lab.spawn(`lb${lb}`, 'curl', args);
    return new Promise((resolve) => p.child.on('exit', () => resolve(Number(p.output().trim()) || 0)));
  };
  const agree = async () => JSON.stringify(await ports(1)) === JSON.stringify(await ports(2));
  /** Until both agents list the same services; the seconds it took. */
  const converged = async (what: string, since: number) => {
    await until(`both agents hold the same services (${what})`, agree, 30_000);
    const seconds = (Date.now() - since) / 1000;
    console.log(JSON.stringify({ metric: 'services-converged-seconds', case: what, value: seconds }));
    return seconds;
  };

  beforeAll(async () => {
    lab = new Lab();
    lab.buildVpc({ lbs: 2, backends: 3 });
    run = new AgentRunner(lab);
    await run.startBackends(3);
    lab.plugEni(1);
    for (const lb of [1, 2]) {
      await startAgent(lb);
      for (const protocol of ['tcp', 'udp'] as const) expect((await run.api(lb, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3], protocol }))).status).toBe(200);
    }
    await until('lb1 MASTER, lb2 BACKUP, in sync', async () => (await haOf(run, 1)).state === 'MASTER' && (await haOf(run, 2)).sync === 1);
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
    run?.cleanup();
  });

  it('takes a create one agent refused from the other (the owner refused it: 401), and says the services differ until then', async () => {
    const entry = lbEntry({ backends: [1, 2], port: 81 });
    expect((await run.api(1, 'POST', '/config/loadbalancer', entry, 'wrong-token')).status).toBe(401);
    const at = Date.now();
    expect((await run.api(2, 'POST', '/config/loadbalancer', entry)).status).toBe(200);
    expect(await ports(1)).not.toContain('81/2');
    // The backup says it is not ready while it differs from the owner.
    await until('lb2 reports the difference', async () => (await haOf(run, 2)).ready === 0, 10_000);
    await converged('a create the owner refused', at);
    expect(await ports(1)).toContain('81/2');
    await until('lb2 ready again', async () => (await haOf(run, 2)).ready === 1, 10_000);
  });

  it('takes an update one agent missed: the later change wins, whichever agent saw it', async () => {
    const at = Date.now();
    expect((await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3], port: 81 }))).status).toBe(200);
    await converged('an update the backup missed', at);
    expect(await ports(2)).toContain('81/3');
  });

  it('applies a delete one agent missed, and never brings the service back', async () => {
    const at = Date.now();
    expect((await run.api(1, 'DELETE', '/config/loadbalancer/externalipaddress/100.100.100.100/port/81/protocol/tcp')).status).toBe(200);
    await converged('a delete the backup missed', at);
    expect(await ports(2)).not.toContain('81/3');
    await sleep(4000);
    for (const lb of [1, 2]) expect(await ports(lb)).not.toContain('81/3');
  });

  it('catches up after a restart in the middle of a burst of changes (60 creates, 20 deletes), then keeps every flow through a failover', async () => {
    const entry = (i: number) => lbEntry({ backends: [1 + (i % 3)], port: 2000 + i });
    const missed = { 1: 0, 2: 0 };
    const burst = (async () => {
      for (let i = 0; i < 60; i++) {
        for (const lb of [1, 2] as const) if ((await callAsync(lb, 'POST', '/config/loadbalancer', entry(i))) !== 200) missed[lb]++;
        if (i >= 20 && i < 40) for (const lb of [1, 2] as const) if ((await callAsync(lb, 'DELETE', `/config/loadbalancer/externalipaddress/100.100.100.100/port/${2000 + i - 20}/protocol/tcp`)) !== 200) missed[lb]++;
      }
    })();
    await sleep(1000);
    await lab.kill(run.procs.get('agent2')!, 'SIGKILL');
    await sleep(1000);
    await startAgent(2);
    await burst;
    // lb2 missed changes while it was down; lb1 none.
    expect(missed[1]).toBe(0);
    expect(missed[2]).toBeGreaterThan(0);
    const at = Date.now();
    await converged('an agent restarted mid-burst', at);
    const held = await ports(2);
    // Ports 2020–2059 stay; 2000–2019 were deleted.
    expect(held.filter((p) => /^2\d{3}\//.test(p))).toEqual(Array.from({ length: 40 }, (_, i) => `${2020 + i}/1`));
    await until('lb2 in sync and ready', async () => {
      const h = await haOf(run, 2);
      return h.sync === 1 && h.ready === 1;
    }, 30_000);
    const r = await moveUnderTraffic(lab, run, 2);
    expect(lostFlows(r).map((f) => `${f.kind} ${f.id}: ${whyLost(f)}`)).toEqual([]);
  }, 120_000);
});
