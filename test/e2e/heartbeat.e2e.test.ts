/**
 * The shipped agent bundle beats to CloudWatch: moto and an IMDSv2 stand-in run inside the LB
 * namespace this test makes (on its own loopback), the agent finds its instance id through
 * IMDSv2 and publishes; the failover function's adapter reads the heartbeat back as fresh.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentRunner, awsSection, FIX, IMDS_PORT } from '../harness/agents.ts';
import { motoAvailable } from '../harness/moto.ts';
import { Lab, netnsAvailable, VIP } from '../harness/netns.ts';

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

  it('publishes heartbeats the failover function reads as fresh (and "not in sync": there is no session sync yet)', async () => {
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
