/**
 * Peer heartbeats and the fast path with the shipped agent bundle: two LB namespaces beat to each
 * other (UDP, HMAC under the sync key); lb1 holds the VIP (its IMDS stand-in shows loxi-eni). When
 * lb1's agent dies, lb2's asks the failover function (a Lambda stand-in) to move the VIP away from
 * lb1's instance.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentRunner, ROOT } from '../harness/agents.ts';
import { BACK, Lab, netnsAvailable, type Proc, VIP } from '../harness/netns.ts';

const FIX = join(ROOT, 'test/e2e/fixtures');
const IDS = ['i-0aaaaaaaaaaaaaaa1', 'i-0bbbbbbbbbbbbbbb2'];

describe.skipIf(!netnsAvailable)('peer heartbeats and the fast path (shipped bundle)', () => {
  let lab: Lab;
  let run: AgentRunner;
  let lambda: Proc;

  beforeAll(async () => {
    lab = new Lab();
    lab.build({ lbs: 2, backends: 1 });
    run = new AgentRunner(lab);
    const keyFile = join(run.dir, 'sync-key');
    writeFileSync(keyFile, 's'.repeat(48), { mode: 0o600 });
    for (const lb of [1, 2]) {
      const imds = lab.spawn(`lb${lb}`, process.execPath, [join(FIX, 'imds.mjs'), '5001', IDS[lb - 1]!, `${BACK}.${10 + lb}`]);
      await imds.waitFor(/imds listening/);
    }
    lab.exec('lb1', 'curl', ['-sf', '-X', 'POST', `http://127.0.0.1:5001/control/attach?vip=${VIP}`]);
    lambda = lab.spawn('lb2', process.execPath, [join(FIX, 'lambda.mjs'), '5002']);
    await lambda.waitFor(/lambda listening/);
    for (const lb of [1, 2]) {
      await run.startAgent(
        lb,
        {
          peers: [{ index: 2 - lb, ip: `${BACK}.${10 + (3 - lb)}` }],
          sync: { secretFile: keyFile, heartbeatIntervalMs: 200, peerLossAfterMs: 1000 },
          aws: { region: 'us-east-1', failoverFunctionName: 'loxiha-failover', metricNamespace: 'Loxiha', endpoint: 'http://127.0.0.1:5002', imdsEndpoint: 'http://127.0.0.1:5001', heartbeatIntervalMs: 5000 },
        },
        300,
        { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' },
      );
    }
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
    run?.cleanup();
  });

  it('a BACKUP that stops hearing the MASTER requests a failover from it, once', async () => {
    const [a1, a2] = [run.procs.get('agent1')!, run.procs.get('agent2')!];
    await a1.waitFor(/"msg":"HA role".*"role":"MASTER"/);
    await a2.waitFor(/"msg":"HA role".*"role":"BACKUP"/);
    await new Promise((r) => setTimeout(r, 800)); // both have heard each other
    expect(a2.output()).not.toMatch(/peer lost|rejected a peer heartbeat/);
    await lab.kill(a1, 'SIGKILL');
    await a2.waitFor(/fast path: failover requested/, 10_000);
    await lambda.waitFor(/"invoked"/);
    const calls = lambda
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{"invoked"'))
      .map((l) => JSON.parse(l));
    expect(calls).toEqual([{ invoked: 'loxiha-failover', type: 'Event', payload: { action: 'failover', from: IDS[0], reason: 'peer-heartbeat-lost' } }]);
    expect(a2.output()).toMatch(/"msg":"peer lost".*"role":"MASTER".*"instanceId":"i-0aaaaaaaaaaaaaaa1"/);
  });
});
