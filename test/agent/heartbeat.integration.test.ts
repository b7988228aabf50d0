/**
 * The agent's heartbeat against moto's CloudWatch, read back by the failover function's own
 * adapter: the two sides of the contract in lib/contract.ts agree.
 */
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { beatData, Heartbeat } from '../../agent/ha/heartbeat.ts';
import { METRICS } from '../../lib/contract.ts';
import { CloudWatchAdapter } from '../../lambda/failover/aws/cloudwatch.ts';
import { type Moto, startMoto } from '../../sim/moto.ts';
import { CREDENTIALS } from '../../sim/world.ts';
import { motoAvailable } from '../harness/prerequisites.ts';

describe('heartbeat data', () => {
  it('carries the deployment and instance, the beat and the lag per slot too, high resolution, sync state as 1/0, lag only when known', () => {
    const at = new Date('2026-11-27T00:00:00Z');
    const data = beatData({ deploymentId: 'd1', instanceId: 'i-0123456789abcdef0', slot: 1 }, { inSync: false }, at);
    const bySlot = [
      { Name: 'Deployment', Value: 'd1' },
      { Name: 'Slot', Value: '1' },
    ];
    const byInstance = [
      { Name: 'Deployment', Value: 'd1' },
      { Name: 'InstanceId', Value: 'i-0123456789abcdef0' },
    ];
    expect(data.map((d) => [d.MetricName, d.Value, d.Dimensions])).toEqual([
      [METRICS.heartbeat, 1, byInstance],
      [METRICS.heartbeat, 1, bySlot],
      [METRICS.sessionsInSync, 0, byInstance],
    ]);
    for (const d of data) {
      expect(d.StorageResolution).toBe(1);
      expect(d.Timestamp).toBe(at);
    }
    const synced = beatData({ deploymentId: 'd1', instanceId: 'i-1', slot: 0 }, { inSync: true, lagSeconds: -3 }, at);
    expect(synced.map((d) => [d.MetricName, d.Value, d.Dimensions?.[1]?.Name])).toEqual([
      [METRICS.heartbeat, 1, 'InstanceId'],
      [METRICS.heartbeat, 1, 'Slot'],
      [METRICS.sessionsInSync, 1, 'InstanceId'],
      [METRICS.syncLagSeconds, 0, 'InstanceId'],
      [METRICS.syncLagSeconds, 0, 'Slot'],
    ]);
    // Several groups: the owner names its slot per group it owns; every agent says whether it is in sync for each group.
    const grouped = beatData({ deploymentId: 'd1', instanceId: 'i-1', slot: 2 }, { inSync: true, groups: [{ name: 'default', owned: false, inSync: true }, { name: 'g1', owned: true, inSync: false }] }, at);
    const group = (g: string) => [{ Name: 'Deployment', Value: 'd1' }, { Name: 'Group', Value: g }];
    expect(grouped.filter((d) => d.Dimensions?.[1]?.Name === 'Group').map((d) => [d.MetricName, d.Value, d.Dimensions])).toEqual([
      [METRICS.sessionsInSync, 1, group('default')],
      [METRICS.groupOwnerSlot, 2, group('g1')],
      [METRICS.sessionsInSync, 0, group('g1')],
    ]);
    // Readiness rides with each beat once the agent knows it.
    expect(beatData({ deploymentId: 'd1', instanceId: 'i-1', slot: 0 }, { inSync: true, ready: false }, at).map((d) => [d.MetricName, d.Value])).toContainEqual([METRICS.agentReady, 0]);
    expect(beatData({ deploymentId: 'd1', instanceId: 'i-1', slot: 0 }, { inSync: true, ready: true }, at).map((d) => [d.MetricName, d.Value])).toContainEqual([METRICS.agentReady, 1]);
    expect(beatData({ deploymentId: 'd1', instanceId: 'i-1', slot: 0 }, { inSync: false, ready: true, servicesMatch: false }, at).map((d) => [d.MetricName, d.Value])).toContainEqual([METRICS.servicesMatch, 0]);
  });
});

describe.skipIf(!motoAvailable)('heartbeat against the emulator', () => {
  let moto: Moto;
  beforeAll(async () => {
    moto = await startMoto();
  });
  afterAll(async () => {
    await moto?.stop();
  });

  /**
   * Runs a heartbeat for `ms` against `cloudwatch` (or, with `untilSent`, until it has sent that many,
   * `ms` at most: moto's first answer can take a while on a loaded machine); returns it stopped and
   * what it logged ("level: message").
   */
  async function beatFor(cloudwatch: CloudWatchClient, intervalMs: number, ms: number, untilSent?: number) {
    const logs: string[] = [];
    const hb = new Heartbeat({
      cloudwatch,
      namespace: METRICS.namespace,
      deploymentId: 'loxiha-sim',
      instanceId: 'i-0123456789abcdef0',
      slot: 0,
      intervalMs,
      syncState: () => ({ inSync: false, ready: false, servicesMatch: false }),
      log: (level, msg) => logs.push(`${level}: ${msg}`),
    });
    hb.start();
    const end = Date.now() + ms;
    do await new Promise((r) => setTimeout(r, untilSent === undefined ? ms : 50));
    while (untilSent !== undefined && hb.sent < untilSent && Date.now() < end);
    await hb.stop();
    return { hb, logs };
  }

  it('beats on its interval and the failover function sees a fresh heartbeat', async () => {
    const cloudwatch = new CloudWatchClient({ region: 'us-east-1', endpoint: moto.endpoint, credentials: CREDENTIALS });
    const { hb, logs } = await beatFor(cloudwatch, 150, 10_000, 3);
    expect(hb.sent).toBeGreaterThanOrEqual(3);
    expect(hb.failed).toBe(0);
    expect(logs).toEqual([]);
    const reports = await new CloudWatchAdapter(cloudwatch, 'loxiha-sim').agentReports(['i-0123456789abcdef0', 'i-0fffffffffffffff0'], Date.now());
    const mine = reports.get('i-0123456789abcdef0')!;
    expect(Date.now() - mine.lastHeartbeatAt!).toBeLessThan(15_000);
    expect(mine.sessionsInSync).toBe(false);
    // Not ready, as the agent said, read back as the failover function reads it; unknown for an instance that said nothing.
    expect(mine.ready).toBe(false);
    expect(mine.servicesMatch).toBe(false);
    expect(reports.get('i-0fffffffffffffff0')!.lastHeartbeatAt).toBeUndefined();
    expect(reports.get('i-0fffffffffffffff0')!.ready).toBeUndefined();
    cloudwatch.destroy();
  });

  it('keeps beating on time when CloudWatch fails, and says so once per streak', async () => {
    const cloudwatch = new CloudWatchClient({ region: 'us-east-1', endpoint: 'http://127.0.0.1:9', credentials: CREDENTIALS, maxAttempts: 1 });
    const { hb, logs } = await beatFor(cloudwatch, 100, 550);
    expect(hb.failed).toBeGreaterThanOrEqual(3);
    expect(hb.sent).toBe(0);
    expect(logs).toEqual(['warn: a heartbeat did not reach CloudWatch; retrying every interval']);
    cloudwatch.destroy();
  });
});
