/**
 * The agent's packet path end to end, in namespaces this test makes: client → VIP on the LB
 * namespace (real agent, real nftables) → three backends. Cleaned up by id even on failure.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { AgentRunner, lbEntry, PROGRAMS } from '../../sim/agents.ts';
import { BACK, FRONT, Lab, VIP } from '../../sim/netns.ts';
import { netnsAvailable } from '../harness/prerequisites.ts';

const count = (xs: string[]) => xs.reduce<Record<string, number>>((m, x) => ((m[x] = (m[x] ?? 0) + 1), m), {});

describe.skipIf(!netnsAvailable)('agent datapath in namespaces', () => {
  let lab: Lab;
  let run: AgentRunner;

  beforeAll(async () => {
    lab = new Lab();
    lab.build({ lbs: 2, backends: 3 });
    run = new AgentRunner(lab);
    await run.startBackends(3);
    await run.startAgent(1);
    await run.startAgent(2);
  });
  afterAll(async () => {
    await lab?.stop();
    run?.cleanup();
  });

  it('sends new TCP connections to the endpoints in the configured weights (1:1:2)', async () => {
    expect((await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3], weights: [1, 1, 2] }))).body).toEqual({ result: 'Success' });
    const { results } = run.client(['tcp', VIP, '80', '40']);
    expect(count(results)).toEqual({ be1: 10, be2: 10, be3: 20 });
  });

  it('full-NATs: endpoints see the VIP as the source, not the client', async () => {
    const out = lab.exec('cl0', 'curl', ['-s', `http://${VIP}/`]);
    expect(out).toMatch(new RegExp(`^be\\d ${VIP.replace(/\./g, '\\.')}:\\d+`));
  });

  it('balances UDP flows the same way', async () => {
    await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3], protocol: 'udp' }));
    // Fixed, distinct source ports: a random ephemeral port that repeats one still in conntrack would reuse that flow (found as a 10/11/9 flake).
    const { results } = run.client(['udp', VIP, '80', '30', '43000']);
    expect(count(results)).toEqual({ be1: 10, be2: 10, be3: 10 });
  });

  it('picks the same endpoint for the same flow on two LB instances (consistent hash, fixed seed)', async () => {
    const entry = lbEntry({ backends: [1, 2, 3], sel: 1 });
    await run.api(1, 'POST', '/config/loadbalancer', entry);
    await run.api(2, 'POST', '/config/loadbalancer', entry);
    const onLb1 = run.client(['tcp', VIP, '80', '20', '41000']).results as string[];
    lab.activate(2);
    try {
      // Same client ports again, now through lb2: TIME_WAIT on the client side is avoided by the fresh namespace-level tuple through another LB.
      const onLb2 = run.client(['tcp', VIP, '80', '20', '41000']).results as string[];
      expect(onLb2).toEqual(onLb1);
      expect(new Set(onLb1).size).toBeGreaterThan(1);
    } finally {
      lab.activate(1);
    }
  });

  it('sel 2 (priority): every new connection goes to the endpoint of the highest weight while it is there', async () => {
    expect((await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3], weights: [1, 3, 2], sel: 2 }))).status).toBe(200);
    expect(count(run.client(['tcp', VIP, '80', '20']).results)).toEqual({ be2: 20 });
    // Its weight lowered below another's: that one takes every new connection.
    expect((await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3], weights: [4, 3, 2], sel: 2 }))).status).toBe(200);
    expect(count(run.client(['tcp', VIP, '80', '20']).results)).toEqual({ be1: 20 });
  });

  it('mode 0 (DNAT): endpoints see the client’s own address, not the VIP', async () => {
    // Without SNAT the endpoints answer the client itself: as with LoxiLB's DNAT mode, their route to it goes through the LB.
    const backends = ['be1', 'be2', 'be3'];
    for (const b of backends) lab.exec(b, 'ip', ['route', 'replace', `${FRONT}.0/24`, 'via', `${BACK}.11`]);
    try {
      expect((await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3], mode: 0 }))).status).toBe(200);
      const out = lab.exec('cl0', 'curl', ['-s', '--max-time', '5', `http://${VIP}/`]);
      expect(out).toMatch(new RegExp(`^be\\d ${FRONT.replace(/\./g, '\\.')}\\.100:\\d+`));
    } finally {
      expect((await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3], mode: 2 }))).status).toBe(200);
      for (const b of backends) lab.exec(b, 'ip', ['route', 'del', `${FRONT}.0/24`]);
    }
    expect(lab.exec('cl0', 'curl', ['-s', '--max-time', '5', `http://${VIP}/`])).toMatch(new RegExp(`^be\\d ${VIP.replace(/\./g, '\\.')}:\\d+`));
  });

  it('keeps a client on one endpoint with session affinity (persist + timeout), while round-robin spreads', async () => {
    const sticky = lbEntry({ backends: [1, 2, 3], sel: 3 });
    (sticky.serviceArguments as Record<string, unknown>).inactiveTimeOut = 60;
    await run.api(1, 'POST', '/config/loadbalancer', sticky);
    const { results } = run.client(['tcp', VIP, '80', '12']);
    expect(new Set(results).size).toBe(1);
    expect(results[0]).toMatch(/^be\d$/);
  });

  it('takes a failed endpoint out of new flows within the probe time and leaves other flows alone', async () => {
    await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3], monitor: true }));
    // A long-lived connection, to whichever endpoint it lands on.
    const stream = run.stream();
    await stream.waitFor(/open/);
    stream.child.stdin!.write('ping1\n');
    const first = await stream.waitFor(/echo (be\d):ping1/);
    const streamBackend = /echo (be\d)/.exec(first)![1]!;
    const victim = ['be1', 'be2', 'be3'].find((b) => b !== streamBackend)!;
    await lab.kill(run.procs.get(victim)!);
    // Probes: 300 ms interval, 2 retries, 1 s timeout → out within a few seconds.
    const deadline = Date.now() + 8000;
    let lastResults: string[] = [];
    while (Date.now() < deadline) {
      lastResults = run.client(['tcp', VIP, '80', '12']).results;
      if (!lastResults.includes(victim) && !lastResults.some((r) => r.startsWith('error'))) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(lastResults).not.toContain(victim);
    expect(lastResults.some((r) => r.startsWith('error'))).toBe(false);
    const state = await run.api(1, 'GET', '/config/loadbalancer/all');
    const ep = state.body.lbAttr.find((e: any) => e.serviceArguments.protocol === 'tcp').endpoints.find((e: any) => e.endpointIP.endsWith(`.${100 + Number(victim.slice(2))}`));
    expect(ep.state).toBe('inactive');
    stream.child.stdin!.write('ping2\n');
    await stream.waitFor(new RegExp(`echo ${streamBackend}:ping2`));
    stream.child.stdin!.write('quit\n');
    // Bring the victim back: it rejoins when its probe succeeds.
    run.procs.set(victim, lab.spawn(victim, process.execPath, [join(PROGRAMS, 'backend.mjs'), victim, '8080']));
    const back = Date.now() + 8000;
    let seen = false;
    while (Date.now() < back && !seen) {
      seen = run.client(['tcp', VIP, '80', '6']).results.includes(victim);
      if (!seen) await new Promise((r) => setTimeout(r, 300));
    }
    expect(seen).toBe(true);
  });

  it('keeps a running connection through an agent crash and adopts the table on restart', async () => {
    await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3] }));
    const stream = run.stream();
    await stream.waitFor(/open/);
    stream.child.stdin!.write('a\n');
    const backend = /echo (be\d):a/.exec(await stream.waitFor(/echo (be\d):a/))![1]!;
    await lab.kill(run.procs.get('agent1')!, 'SIGKILL');
    stream.child.stdin!.write('b\n');
    await stream.waitFor(new RegExp(`echo ${backend}:b`));
    // New connections keep working with no agent at all: the kernel does the forwarding.
    expect(run.client(['tcp', VIP, '80', '3']).results.every((r: string) => r.startsWith('be'))).toBe(true);
    const agent = await run.startAgent(1);
    expect(agent.output()).toContain('adopted the existing nftables table unchanged');
    stream.child.stdin!.write('c\n');
    await stream.waitFor(new RegExp(`echo ${backend}:c`));
    stream.child.stdin!.write('quit\n');
    const listed = await run.api(1, 'GET', '/config/loadbalancer/all');
    expect(listed.body.lbAttr.length).toBeGreaterThan(0);
  });

  it('is ready only with the kernel set as an LB needs: a restart after forwarding was lost (a reboot) sets it back, says so, and serves', async () => {
    await lab.kill(run.procs.get('agent1')!);
    lab.exec('lb1', 'sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
    const agent = await run.startAgent(1);
    expect(agent.output()).toMatch(/kernel settings had drifted; set back.*net\.ipv4\.ip_forward=1 \(was 0\)/);
    expect(lab.exec('lb1', 'sysctl', ['-n', 'net.ipv4.ip_forward']).trim()).toBe('1');
    const ha = (await run.api(1, 'GET', '/config/cistate/all')).body.Attr[0];
    expect([ha.ready, ha.notReady]).toEqual([1, undefined]);
    await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3] }));
    expect(run.client(['tcp', VIP, '80', '3']).results.every((r: string) => r.startsWith('be'))).toBe(true);
  });

  it('applies API changes atomically under load: no failed connection, only valid endpoints', async () => {
    await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3] }));
    const load = lab.spawn('cl0', process.execPath, [join(PROGRAMS, 'client.mjs'), 'load', VIP, '80', '4000']);
    const sets = [[1, 2], [2, 3], [1, 3], [1, 2, 3], [3], [1, 2, 3]];
    for (let i = 0; i < 24; i++) {
      const r = await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: sets[i % sets.length]! }));
      expect(r.status).toBe(200);
      await new Promise((res) => setTimeout(res, 100));
    }
    const line = await load.waitFor(/\{"ok".*\}/, 20_000);
    const result = JSON.parse(line);
    expect(result.failures).toEqual([]);
    expect(result.ok).toBeGreaterThan(100);
    expect(Object.keys(result.seen).every((b) => ['be1', 'be2', 'be3'].includes(b))).toBe(true);
    // No connection met a half-applied state: the slot-miss guards never fired (they would hide it as a SYN retransmit).
    const misses = [...lab.exec('lb1', 'nft', ['list', 'table', 'ip', 'loxiha']).matchAll(/counter packets (\d+) bytes \d+ drop comment "slot miss"/g)].map((m) => Number(m[1]));
    expect(misses.length).toBeGreaterThan(0);
    expect(misses.every((n) => n === 0)).toBe(true);
  });

  it('drops clients outside the allowed source prefixes', async () => {
    await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1], allowedSources: ['100.64.9.0/24'] }));
    expect(run.client(['tcp', VIP, '80', '1']).results[0]).toMatch(/^error:/);
    await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1], allowedSources: ['100.64.1.0/24'] }));
    expect(run.client(['tcp', VIP, '80', '1']).results[0]).toBe('be1');
  });

  it('ships a CLI that prints the agent’s state like loxicmd', () => {
    const cli = run.agentBundle.replace(/agent\.mjs$/, 'cli.mjs');
    const get = (what: string) => lab.exec('lb1', process.execPath, [cli, 'get', what, '--token-file', run.tokenFile]);
    // This lab puts the VIP on loopback only (no interface holds it, as no loxi-eni is attached):
    // the role says BACKUP. No peers, no sync key: session sync is off, and `get ha` says so.
    expect(get('ha')).toMatch(/^\| INSTANCE  \| HASTATE \| READY \| SYNC \| STATE \|.*\n.*\n\| llb-inst0 \| BACKUP  \| yes   \|\s+\| off\s+\|/);
    expect(get('lb')).toMatch(/\| 100\.100\.100\.100 \| 100\.64\.248\.254 \| 80 /);
  });

  it('refuses API calls without the token or with a wrong one, changing nothing', async () => {
    const before = (await run.api(1, 'GET', '/config/loadbalancer/all')).body;
    expect((await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1], port: 81 }), null)).status).toBe(401);
    expect((await run.api(1, 'DELETE', '/config/loadbalancer/externalipaddress/100.100.100.100/port/80/protocol/tcp', undefined, 'not-the-token')).status).toBe(401);
    expect((await run.api(1, 'GET', '/config/loadbalancer/all', undefined, null)).status).toBe(401);
    expect((await run.api(1, 'GET', '/config/loadbalancer/all')).body).toEqual(before);
    // Liveness stays open, as kube-loxilb's health check expects.
    expect((await run.api(1, 'GET', '', undefined, null)).status).toBe(200);
  });

  it('reports per-service and per-endpoint counters read from the kernel', async () => {
    await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2] }));
    const before = (await run.api(1, 'GET', '/config/loadbalancer/all')).body.lbAttr.find((e: any) => e.serviceArguments.protocol === 'tcp');
    run.client(['tcp', VIP, '80', '10']);
    const after = (await run.api(1, 'GET', '/config/loadbalancer/all')).body.lbAttr.find((e: any) => e.serviceArguments.protocol === 'tcp');
    const packets = (c: string) => Number(c.split(':')[0]);
    expect(packets(after.counter) - packets(before.counter)).toBeGreaterThanOrEqual(10 * 3);
    for (const ep of after.endpoints) expect(packets(ep.counter)).toBeGreaterThan(0);
    const ct = await run.api(1, 'GET', '/config/conntrack/all');
    expect(Array.isArray(ct.body.ctAttr)).toBe(true);
  });
});
