/**
 * The agent under what production does to it, in namespaces this test makes: endpoints no probe
 * can reach, SIGKILLs at every point of a change, restarts with endpoints down, its table deleted
 * under traffic, idle timeouts in the kernel. Cleaned up by id even on failure.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fullText, renderModel } from '../../agent/datapath/render.ts';
import type { Service } from '../../agent/services/model.ts';
import { StateStore } from '../../agent/services/store.ts';
import { AgentRunner, BACKEND_PORT, lbEntry } from '../../sim/agents.ts';
import { FIX } from '../harness/fixtures.ts';
import { BACK, Lab, VIP } from '../../sim/netns.ts';
import { netnsAvailable } from '../harness/prerequisites.ts';
import { sleep, until } from '../../sim/flows.ts';

const SEED = 0x10a1ba;

describe.skipIf(!netnsAvailable)('agent hardening in namespaces', () => {
  let lab: Lab;
  let run: AgentRunner;

  beforeAll(async () => {
    lab = new Lab();
    lab.build({ lbs: 1, backends: 3 });
    run = new AgentRunner(lab);
    await run.startBackends(3);
  });
  afterAll(async () => {
    await lab?.stop();
    run?.cleanup();
  });

  const stopAgent = async (signal: NodeJS.Signals = 'SIGTERM') => {
    const p = run.procs.get('agent1');
    if (p) await lab.kill(p, signal);
    run.procs.delete('agent1');
  };
  const stateFile = () => join(run.dir, 'state1', 'services.json');
  /** Lines of the agent's table, one element per line, counters left out (order-free). */
  const tableLines = (ns: string) =>
    execFileSync('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'ip', 'loxiha'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.trim().replace(/^elements = \{ /, '').replace(/( \}|,)$/, '').replace(/ counter packets \d+ bytes \d+/, ''))
      .filter((l) => !/^counter packets/.test(l))
      .sort();
  /** The kernel holds exactly a full load of the saved state, and the API lists exactly the saved services. */
  async function expectConsistent(): Promise<Service[]> {
    const saved = new StateStore(join(run.dir, 'state1')).load();
    const listed = (await run.api(1, 'GET', '/config/loadbalancer/all')).body.lbAttr as { serviceArguments: { port: number }; endpoints: { endpointIP: string }[] }[];
    expect(listed.map((e) => `${e.serviceArguments.port} ${e.endpoints.map((x) => x.endpointIP).sort().join(',')}`).sort()).toEqual(
      saved.services.map((s) => `${s.port} ${s.endpoints.map((x) => x.ip).sort().join(',')}`).sort(),
    );
    const scratch = lab.ns('scratch');
    if (!lab.namespaces.includes(scratch)) {
      execFileSync('ip', ['netns', 'add', scratch]);
      lab.namespaces.push(scratch);
    }
    execFileSync('ip', ['netns', 'exec', scratch, 'nft', '-f', '-'], { input: fullText(renderModel({ table: 'loxiha', services: saved.services, down: new Set(saved.down), hashSeed: SEED }), 'loxiha') });
    expect(tableLines(lab.ns('lb1'))).toEqual(tableLines(scratch));
    return saved.services;
  }

  it('keeps the agent and its API up when no probe of any type can reach the endpoints (and across a restart)', async () => {
    await run.startAgent(1, {}, 200);
    // 100.127.0.0/16 has no route in the LB namespace: every probe fails at once (nothing leaves the namespace).
    const unreachable = [{ endpointIP: '100.127.0.5', targetPort: 53, weight: 1 }];
    const types = [
      ['udp', 'udp', 'ping', ''],
      ['udp', 'udp', 'ping', 'pong'],
      ['tcp', 'tcp', '', ''],
      ['tcp', 'http', '/healthz', 'ok'],
      ['tcp', 'https', '/healthz', ''],
      ['tcp', 'ping', '', ''],
    ] as const;
    for (const [i, [protocol, probetype, probereq, proberesp]] of types.entries()) {
      const body = { ...lbEntry({ backends: [], protocol, port: 7000 + i, name: `unreachable_${i}` }), endpoints: unreachable };
      Object.assign(body.serviceArguments, { monitor: true, probetype, probereq, proberesp, probeRetries: 1, probeTimeout: 1 });
      expect((await run.api(1, 'POST', '/config/loadbalancer', body)).status).toBe(200);
    }
    const agent = run.procs.get('agent1')!;
    const endpoints = async () => (await run.api(1, 'GET', '/config/endpoint/all')).body.Attr as { currState: string }[];
    await until('every unreachable endpoint probed down', async () => (await endpoints()).filter((e) => e.currState === 'red').length === 6, 10_000);
    expect(agent.child.exitCode).toBeNull();
    const eps = await endpoints();
    expect(eps).toHaveLength(6);
    expect(eps.every((e) => e.currState === 'red')).toBe(true);
    // Persisted: the restarted agent probes them again and still stays up.
    await stopAgent();
    await run.startAgent(1, {}, 200);
    await sleep(1500); // several probe rounds of the same unreachable endpoints: the agent stays up
    expect(run.procs.get('agent1')!.child.exitCode).toBeNull();
    expect((await run.api(1, 'GET', '')).status).toBe(200);
    expect((await run.api(1, 'DELETE', '/config/loadbalancer/all')).status).toBe(200);
    await stopAgent();
  });

  it('after a SIGKILL at every point of a create, an update and a delete, restarts into a kernel equal to its API and state file', async () => {
    const shimDir = join(run.dir, 'shim');
    mkdirSync(shimDir, { recursive: true });
    if (!existsSync(join(shimDir, 'nft'))) symlinkSync(join(FIX, 'nft-kill-shim.sh'), join(shimDir, 'nft'));
    const ctl = join(run.dir, 'shim-ctl');
    const count = join(run.dir, 'shim-count');
    const env = { PATH: `${shimDir}:${process.env.PATH}`, SHIM_REAL: '/usr/sbin/nft', SHIM_CTL: ctl, SHIM_COUNT: count };
    const base = [lbEntry({ backends: [1, 2, 3], port: 80, name: 'a' }), lbEntry({ backends: [1, 2], port: 81, name: 'b' })];
    const changes = {
      create: ['POST', '/config/loadbalancer', lbEntry({ backends: [2, 3], port: 82, name: 'c' })],
      update: ['POST', '/config/loadbalancer', lbEntry({ backends: [1, 2], port: 80, name: 'a' })],
      delete: ['DELETE', '/config/loadbalancer/externalipaddress/100.100.100.100/port/81/protocol/tcp'],
    } as const;
    const outcomes: string[] = [];
    for (const [name, [method, path, body]] of Object.entries(changes)) {
      for (const point of ['1 before', '1 after', '2 before', '2 after']) {
        writeFileSync(ctl, '');
        await run.startAgent(1, {}, 300, { env });
        await run.api(1, 'DELETE', '/config/loadbalancer/all');
        for (const b of base) await run.api(1, 'POST', '/config/loadbalancer', b);
        writeFileSync(count, '0');
        writeFileSync(ctl, `${point}\n`);
        const agent = run.procs.get('agent1')!;
        let answered = true;
        try {
          await run.api(1, method, path, body);
        } catch {
          answered = false; // the agent died under the call
        }
        // A call without an answer is one the kill point cut: wait for the agent's death to be seen.
        if (!answered) await until('the killed agent gone', () => agent.child.signalCode !== null, 5000);
        const killed = agent.child.signalCode === 'SIGKILL';
        if (!killed) {
          // This change has no such transaction (a create is one transaction): nothing to cut.
          await stopAgent();
          continue;
        }
        run.procs.delete('agent1');
        // A killed write leaves a temp file: the restarted agent removes it.
        writeFileSync(`${stateFile()}.99999.tmp`, '{"version":2,"services":[');
        const restarted = await run.startAgent(1);
        outcomes.push(`${name} ${point}: ${/adopted the existing nftables table unchanged/.test(restarted.output()) ? 'adopted' : 'replaced'}`);
        await expectConsistent();
        expect(existsSync(`${stateFile()}.99999.tmp`)).toBe(false);
        await stopAgent();
      }
    }
    // Every point was cut at least once per change, and the two-phase points were never adopted.
    expect(outcomes).toEqual([
      'create 1 before: adopted',
      'create 1 after: replaced',
      'update 1 before: adopted',
      'update 1 after: replaced',
      'update 2 before: replaced',
      'update 2 after: replaced',
      'delete 1 before: adopted',
      'delete 1 after: replaced',
      'delete 2 before: replaced',
      'delete 2 after: replaced',
    ]);
  });

  it('restarts with the last probe verdicts: a dead endpoint does not come back into the slots', async () => {
    await run.startAgent(1, {}, 200);
    await run.api(1, 'DELETE', '/config/loadbalancer/all');
    await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3], monitor: true }));
    await lab.kill(run.procs.get('be3')!);
    await until('be3 probed down', async () => ((await run.api(1, 'GET', '/config/endpoint/all')).body.Attr as { hostName: string; currState: string }[]).find((e) => e.hostName === `${BACK}.103`)?.currState === 'red', 10_000, 100);
    // The verdict is persisted (snapshot or journal) before the agent stops.
    const persisted = () => ['services.json', 'services.journal'].some((f) => existsSync(join(run.dir, 'state1', f)) && readFileSync(join(run.dir, 'state1', f), 'utf8').includes(`#${BACK}.103:`));
    await until('be3 down persisted', persisted, 5000);
    await stopAgent();
    const p = await run.startAgent(1, {}, 60_000);
    expect(p.output()).toMatch(/adopted the existing nftables table unchanged/);
    const slots = execFileSync('ip', ['netns', 'exec', lab.ns('lb1'), 'nft', 'list', 'table', 'ip', 'loxiha'], { encoding: 'utf8' });
    expect(slots).toContain(`${BACK}.101 . ${BACKEND_PORT}`);
    expect(slots).not.toContain(`${BACK}.103 . ${BACKEND_PORT}`);
    const { results } = run.client(['tcp', VIP, '80', '20']);
    expect(results.filter((r: string) => r === 'be3' || r.startsWith('error'))).toEqual([]);
    await stopAgent();
    await run.startBackends(3).catch(() => undefined);
  });

  it('replaces its table when it is deleted under traffic: a live stream keeps going, new connections work again', async () => {
    await run.startAgent(1, {}, 300, { args: ['--check-interval-ms', '500'] });
    await run.api(1, 'DELETE', '/config/loadbalancer/all');
    await run.api(1, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2] }));
    const stream = run.stream();
    await stream.waitFor(/open/);
    stream.child.stdin!.write('one\n');
    const backend = /echo (be\d):one/.exec(await stream.waitFor(/echo (be\d):one/))![1]!;
    execFileSync('ip', ['netns', 'exec', lab.ns('lb1'), 'nft', 'delete', 'table', 'ip', 'loxiha']);
    await run.procs.get('agent1')!.waitFor(/differs from what the agent applied/, 3000);
    const { results } = run.client(['tcp', VIP, '80', '10']);
    expect(results.every((r: string) => r === 'be1' || r === 'be2')).toBe(true);
    stream.child.stdin!.write('two\n');
    await stream.waitFor(new RegExp(`echo ${backend}:two`));
    stream.child.stdin!.write('quit\n');
    await stopAgent();
  });

  it('applies inactiveTimeOut as the idle timeout of the service’s flows (TCP and UDP), leaving other services at the kernel’s', async () => {
    await run.startAgent(1);
    await run.api(1, 'DELETE', '/config/loadbalancer/all');
    lab.exec('lb1', 'conntrack', ['-F']);
    const idle = lbEntry({ backends: [1], port: 80 });
    Object.assign(idle.serviceArguments, { inactiveTimeOut: 3 });
    const idleUdp = lbEntry({ backends: [1], port: 80, protocol: 'udp' });
    Object.assign(idleUdp.serviceArguments, { inactiveTimeOut: 3 });
    for (const b of [idle, idleUdp, lbEntry({ backends: [2], port: 81 })]) expect((await run.api(1, 'POST', '/config/loadbalancer', b)).status).toBe(200);
    const stream = run.stream();
    await stream.waitFor(/open/);
    stream.child.stdin!.write('x\n');
    await stream.waitFor(/echo be1:x/);
    run.client(['udp', VIP, '80', '1', '45000']);
    run.client(['tcp', VIP, '81', '1']);
    const entries = () => lab.exec('lb1', 'conntrack', ['-L', '-d', VIP]).split('\n').filter(Boolean);
    const timeoutOf = (re: RegExp) => Number(entries().find((l) => re.test(l))?.split(/\s+/)[2] ?? NaN);
    expect(timeoutOf(/^tcp .*ESTABLISHED .*dport=80 /)).toBeLessThanOrEqual(3);
    expect(timeoutOf(/^udp .*dport=80 /)).toBeLessThanOrEqual(3);
    // The other service's closed connection keeps the kernel's own (TIME_WAIT) timeout, untouched.
    expect(timeoutOf(/^tcp .*dport=81 /)).toBeGreaterThan(3);
    // Idle past the timeout: the established TCP flow and the UDP flow leave conntrack (3 s, and the kernel's GC pass).
    await until('the idle flows gone', () => entries().filter((l) => /^(tcp .*ESTABLISHED|udp) .* dport=80 /.test(l)).length === 0, 10_000, 200);
    stream.child.stdin!.write('quit\n');
    await stopAgent();
  });
});

describe.skipIf(!netnsAvailable)('probes: property', () => {
  it('no service the API accepts can make a probe throw (fuzzed, in a namespace nothing can leave)', () => {
    const lab = new Lab();
    try {
      const ns = lab.ns('fuzz');
      execFileSync('ip', ['netns', 'add', ns]);
      lab.namespaces.push(ns);
      execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      const out = execFileSync('ip', ['netns', 'exec', ns, process.execPath, join(FIX, 'probe-fuzz.ts'), '400', '7'], { encoding: 'utf8', timeout: 90_000 });
      const r = JSON.parse(out.trim().split('\n').pop()!) as { accepted: number; probes: number; escaped: string[] };
      expect(r.escaped).toEqual([]);
      expect(r.accepted).toBeGreaterThan(100);
      expect(r.probes).toBeGreaterThan(1000);
    } finally {
      void lab.stop();
    }
  }, 120_000);
});
