/**
 * The shipped agent bundle beats to CloudWatch: moto and an IMDSv2 stand-in run inside the LB
 * namespace this test makes (on its own loopback), the agent finds its instance id through
 * IMDSv2 and publishes; the failover function's adapter reads the heartbeat back as fresh.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentRunner, awsSection, IMDS_PORT } from '../../sim/agents.ts';
import { FIX } from '../harness/fixtures.ts';

import { BACK, Lab, VIP } from '../../sim/netns.ts';
import { motoAvailable, netnsAvailable } from '../harness/prerequisites.ts';

const INSTANCE = 'i-0abcdef0123456789';
const MOTO = 'http://127.0.0.1:5000';

describe.skipIf(!netnsAvailable || !motoAvailable)('agent heartbeats (shipped bundle, IMDSv2, CloudWatch emulator)', () => {
  let lab: Lab;
  let run: AgentRunner;

  beforeAll(async () => {
    lab = new Lab();
    lab.build({ lbs: 1, backends: 1 });
    run = new AgentRunner(lab);
    const moto = lab.spawn('lb1', 'moto_server', ['-H', '127.0.0.1', '-p', '5000']);
    await run.startImds(1, INSTANCE);
    for (let i = 0; ; i++) {
      try {
        lab.exec('lb1', 'curl', ['-sf', `${MOTO}/moto-api/`]);
        break;
      } catch {
        if (i > 150) throw new Error(`moto did not start: ${moto.output()}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    await run.startAgent(1, { aws: awsSection(MOTO, { heartbeatIntervalMs: 1000 }) });
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
    run?.cleanup();
  });

  it('publishes heartbeats the failover function reads as fresh (and "not in sync": it has no peer to sync with)', async () => {
    const agent = run.procs.get('agent1')!;
    await agent.waitFor(new RegExp(`beating to CloudWatch.*${INSTANCE}`));
    await new Promise((r) => setTimeout(r, 2500));
    const report = JSON.parse(lab.exec('lb1', process.execPath, [join(FIX, 'heartbeats.mjs'), MOTO, 'loxiha-sim', INSTANCE]));
    expect(report.ageMs).not.toBeNull();
    expect(report.ageMs).toBeLessThan(15_000);
    expect(report.sessionsInSync).toBe(false);
    expect(agent.output()).not.toMatch(/did not reach CloudWatch/);
  });

  it('reports MASTER while loxi-eni (the VIP) is attached to its instance, BACKUP otherwise', async () => {
    const cli = run.agentBundle.replace(/agent\.mjs$/, 'cli.mjs');
    const hastate = () => /\| llb-inst0 \| (\w+)/.exec(lab.exec('lb1', process.execPath, [cli, 'get', 'ha', '--token-file', run.tokenFile]))?.[1];
    const until = async (want: string) => {
      for (let i = 0; i < 50 && hastate() !== want; i++) await new Promise((r) => setTimeout(r, 200));
      return hastate();
    };
    expect(await until('BACKUP')).toBe('BACKUP');
    lab.exec('lb1', 'curl', ['-sf', '-X', 'POST', `http://127.0.0.1:${IMDS_PORT}/control/attach?vip=${VIP}`]);
    expect(await until('MASTER')).toBe('MASTER');
    lab.exec('lb1', 'curl', ['-sf', '-X', 'POST', `http://127.0.0.1:${IMDS_PORT}/control/detach`]);
    expect(await until('BACKUP')).toBe('BACKUP');
  });
});

describe.skipIf(!netnsAvailable || !motoAvailable)('heartbeats say whether sessions are in sync (two shipped agents, IMDSv2, CloudWatch emulator)', () => {
  const IDS = ['i-0aaaaaaaaaaaaaaa1', 'i-0bbbbbbbbbbbbbbb2'];
  let lab: Lab;
  let run: AgentRunner;
  const inSync = (lb: number) => JSON.parse(lab.exec('lb1', process.execPath, [join(FIX, 'heartbeats.mjs'), MOTO, 'loxiha-sim', IDS[lb - 1]!])).sessionsInSync as boolean;
  const eventually = async (f: () => boolean, ms = 15_000) => {
    const end = Date.now() + ms;
    while (!f()) {
      if (Date.now() > end) return false;
      await new Promise((r) => setTimeout(r, 250));
    }
    return true;
  };

  beforeAll(async () => {
    lab = new Lab();
    lab.build({ lbs: 2, backends: 1 });
    run = new AgentRunner(lab);
    // One emulator for both instances, reachable from lb2 over the back network.
    lab.spawn('lb1', 'moto_server', ['-H', '0.0.0.0', '-p', '5000']);
    for (let i = 0; ; i++) {
      try {
        lab.exec('lb1', 'curl', ['-sf', `${MOTO}/moto-api/`]);
        break;
      } catch {
        if (i > 150) throw new Error('moto did not start');
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    for (const lb of [1, 2]) await run.startImds(lb, IDS[lb - 1]!);
    lab.exec('lb1', 'curl', ['-sf', '-X', 'POST', `http://127.0.0.1:${IMDS_PORT}/control/attach?vip=${VIP}`]);
    for (const lb of [1, 2]) {
      await run.startAgent(lb, {
        peers: [{ index: 2 - lb, ip: `${BACK}.${10 + (3 - lb)}` }],
        sync: { secretFile: run.syncKeyFile },
        aws: awsSection(lb === 1 ? MOTO : `http://${BACK}.11:5000`, { heartbeatIntervalMs: 1000 }),
      });
    }
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
    run?.cleanup();
  });

  it('the BACKUP beats "in sync" once the MASTER streams to it, and "not in sync" once the MASTER is gone', async () => {
    // The function reads the minimum of 10 s periods: "in sync" shows once a whole period is.
    expect(await eventually(() => inSync(2), 30_000)).toBe(true);
    expect(await eventually(() => inSync(1), 30_000)).toBe(true); // the MASTER: its peer acknowledged everything
    await lab.kill(run.procs.get('agent1')!, 'SIGKILL');
    expect(await eventually(() => !inSync(2), 20_000)).toBe(true);
  }, 90_000);
});
