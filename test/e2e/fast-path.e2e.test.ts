/**
 * Peer heartbeats and the fast path with the shipped agent bundle: two LB namespaces beat to each
 * other (UDP, HMAC under the sync key); lb1 holds the VIP (its IMDS stand-in shows loxi-eni). When
 * lb1's agent dies, lb2's asks the failover function (a Lambda stand-in) to move the VIP away from
 * lb1's instance.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentRunner, awsSection, IMDS_PORT } from '../../sim/agents.ts';
import { until } from '../../sim/flows.ts';
import { FIX } from '../harness/fixtures.ts';
import { BACK, Lab, type Proc, VIP } from '../../sim/netns.ts';
import { netnsAvailable } from '../harness/prerequisites.ts';

const IDS = ['i-0aaaaaaaaaaaaaaa1', 'i-0bbbbbbbbbbbbbbb2'];

describe.skipIf(!netnsAvailable)('peer heartbeats and the fast path (shipped bundle)', () => {
  let lab: Lab;
  let run: AgentRunner;
  let lambda: Proc;

  beforeAll(async () => {
    lab = new Lab();
    lab.build({ lbs: 2, backends: 1 });
    run = new AgentRunner(lab);
    for (const lb of [1, 2]) await run.startImds(lb, IDS[lb - 1]!);
    lab.exec('lb1', 'curl', ['-sf', '-X', 'POST', `http://127.0.0.1:${IMDS_PORT}/control/attach?vip=${VIP}`]);
    lambda = lab.spawn('lb2', process.execPath, [join(FIX, 'lambda.mjs'), '5002']);
    await lambda.waitFor(/lambda listening/);
    for (const lb of [1, 2]) {
      await run.startAgent(lb, {
        peers: [{ index: 2 - lb, ip: `${BACK}.${10 + (3 - lb)}` }],
        // Production timing: beats every 100 ms, suspected after 500 ms, confirmed by a TCP check.
        sync: { secretFile: run.syncKeyFile },
        aws: awsSection('http://127.0.0.1:5002'),
      });
    }
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
    run?.cleanup();
  });

  it('a MASTER whose agent is frozen (SIGSTOP, 2 s) is found alive by its kernel: no fast path', async () => {
    const [a1, a2] = [run.procs.get('agent1')!, run.procs.get('agent2')!];
    await a1.waitFor(/"msg":"HA role".*"role":"MASTER"/);
    await a2.waitFor(/"msg":"HA role".*"role":"BACKUP"/);
    await new Promise((r) => setTimeout(r, 800));
    a1.child.kill('SIGSTOP');
    await new Promise((r) => setTimeout(r, 2000));
    a1.child.kill('SIGCONT');
    await a2.waitFor(/peer silent on the heartbeat channel but alive/);
    await new Promise((r) => setTimeout(r, 500));
    expect(a2.output()).not.toMatch(/"msg":"peer lost"|fast path: failover requested/);
    expect(lambda.output()).not.toMatch(/"invoked"/);
  });

  it('a BACKUP that stops hearing the MASTER requests a failover from it, once', async () => {
    const [a1, a2] = [run.procs.get('agent1')!, run.procs.get('agent2')!];
    await new Promise((r) => setTimeout(r, 800)); // both hear each other again
    expect(a2.output()).not.toMatch(/peer lost|rejected a peer heartbeat/);
    await lab.kill(a1, 'SIGKILL');
    await a2.waitFor(/fast path: failover requested/, 10_000);
    await lambda.waitFor(/"invoked"/);
    // Long enough for a duplicate to show: several loss windows (500 ms) and heartbeat intervals go by.
    await new Promise((r) => setTimeout(r, 3000));
    const calls = lambda
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{"invoked"'))
      .map((l) => JSON.parse(l));
    expect(calls).toEqual([{ invoked: 'loxiha-failover', type: 'Event', payload: { action: 'failover', from: IDS[0], reason: 'peer-heartbeat-lost' } }]);
    expect(a2.output()).toMatch(/"msg":"peer lost".*"role":"MASTER".*"instanceId":"i-0aaaaaaaaaaaaaaa1"/);
  });

  it('a MASTER whose host answers nothing at all (a dead instance: no reset, the TCP check times out) is lost, once', async () => {
    // lb1's agent back, both hearing each other (a new "peer back", as MASTER with its instance id).
    const a2 = run.procs.get('agent2')!;
    const backs = () => (a2.output().match(/"msg":"peer back"/g) ?? []).length;
    const backsBefore = backs();
    const a1 = await run.startAgent(1, { peers: [{ index: 1, ip: `${BACK}.12` }], sync: { secretFile: run.syncKeyFile }, aws: awsSection('http://127.0.0.1:5002') });
    await until('lb2 hears lb1 again', async () => backs() > backsBefore, 10_000);
    await a1.waitFor(/beating to CloudWatch/, 10_000);
    await new Promise((r) => setTimeout(r, 500)); // a few beats carrying its instance id
    const invoked = () => lambda.output().split('\n').filter((l) => l.startsWith('{"invoked"')).length;
    const before = invoked();
    const lostBefore = (a2.output().match(/"msg":"peer lost"/g) ?? []).length;
    // The host goes dark: every packet in or out dropped (its agent still runs, so its kernel would answer a TCP check if anything got through).
    const dark = join(run.dir, 'dark.nft');
    writeFileSync(dark, 'table inet dark {\n chain in { type filter hook input priority -400; policy drop; }\n chain out { type filter hook output priority -400; policy drop; }\n}\n');
    lab.exec('lb1', 'nft', ['-f', dark]);
    try {
      const t0 = Date.now();
      await until('the fast path fires', async () => invoked() > before, 10_000);
      const detectMs = Date.now() - t0;
      await new Promise((r) => setTimeout(r, 3000));
      expect(invoked() - before).toBe(1);
      expect((a2.output().match(/"msg":"peer lost"/g) ?? []).length - lostBefore).toBe(1);
      // Heartbeats lost after 500 ms, then the TCP check's 300 ms without an answer: about a second.
      expect(detectMs).toBeLessThan(3000);
      console.log(JSON.stringify({ deadHostDetectMs: detectMs }));
    } finally {
      lab.exec('lb1', 'nft', ['delete', 'table', 'inet', 'dark']);
      await lab.kill(a1, 'SIGKILL');
    }
  }, 60_000);
});
