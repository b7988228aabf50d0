/**
 * Peer heartbeats and the fast path with the shipped agent bundle: two LB namespaces beat to each
 * other (UDP, HMAC under the sync key); lb1 holds the VIP (its IMDS stand-in shows loxi-eni). When
 * lb1's host dies (answers nothing), lb2's asks the failover function (a Lambda stand-in) to move the
 * VIP away from lb1's instance; when only lb1's agent dies or stalls (its host answers), nothing moves.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentRunner, awsSection, IMDS_PORT } from '../../sim/agents.ts';
import { haOf, until } from '../../sim/flows.ts';
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
    await a2.waitFor(/peer silent on the heartbeat channel but its host answers/);
    await new Promise((r) => setTimeout(r, 500));
    expect(a2.output()).not.toMatch(/"msg":"peer lost"|fast path: failover requested/);
    expect(lambda.output()).not.toMatch(/"invoked"/);
  });

  it('a MASTER whose agent is killed while its host runs on (its sync port resets) is not failed over; restarted, it is heard again and streams again', async () => {
    const [a1, a2] = [run.procs.get('agent1')!, run.procs.get('agent2')!];
    await new Promise((r) => setTimeout(r, 800)); // both hear each other again
    expect(a2.output()).not.toMatch(/peer lost|rejected a peer heartbeat/);
    const invokedBefore = lambda.output().split('\n').filter((l) => l.startsWith('{"invoked"')).length;
    const silentChecks = () => (a2.output().match(/peer silent on the heartbeat channel but its host answers/g) ?? []).length;
    const checksBefore = silentChecks();
    // An agent crash or upgrade: the process goes, the host and its kernel (the datapath) stay.
    await lab.kill(a1, 'SIGKILL');
    await until('lb2 noticed the silence and found the host answering', async () => silentChecks() > checksBefore, 10_000);
    await new Promise((r) => setTimeout(r, 2000)); // four loss windows with the agent down
    expect(a2.output()).not.toMatch(/"msg":"peer lost"|fast path: failover requested/);
    expect(lambda.output().split('\n').filter((l) => l.startsWith('{"invoked"')).length).toBe(invokedBefore);
    // The agent back (systemd restarts it): heard again, and its stream to lb2 resumes with a resync.
    const resyncsBefore = (await haOf(run, 2)).syncResyncs ?? 0;
    await run.startAgent(1, { peers: [{ index: 1, ip: `${BACK}.12` }], sync: { secretFile: run.syncKeyFile }, aws: awsSection('http://127.0.0.1:5002') });
    await until('lb2 in sync with the restarted lb1', async () => {
      const h = await haOf(run, 2);
      return h.sync === 1 && (h.syncResyncs ?? 0) > resyncsBefore;
    }, 20_000);
    expect(a2.output()).not.toMatch(/"msg":"peer lost"/);
  });

  it('a MASTER whose host answers nothing at all (a dead instance: no reset, the TCP check times out) is lost, once', async () => {
    // lb1's agent (restarted by the test before) beats with its instance id.
    const [a1, a2] = [run.procs.get('agent1')!, run.procs.get('agent2')!];
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
      // Long enough for a duplicate to show: several loss windows (500 ms) and heartbeat intervals go by.
      await new Promise((r) => setTimeout(r, 3000));
      expect(invoked() - before).toBe(1);
      const call = lambda.output().split('\n').filter((l) => l.startsWith('{"invoked"')).map((l) => JSON.parse(l)).at(-1);
      expect(call).toEqual({ invoked: 'loxiha-failover', type: 'Event', payload: { action: 'failover', from: IDS[0], reason: 'peer-heartbeat-lost' } });
      expect(a2.output()).toMatch(/"msg":"peer lost".*"role":"MASTER".*"instanceId":"i-0aaaaaaaaaaaaaaa1"/);
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
