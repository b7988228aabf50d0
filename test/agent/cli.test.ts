import { spawnSync } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApi } from '../../agent/api/server.ts';
import { cli, table } from '../../agent/cli.ts';
import { fakeAgent } from './fake-nft.ts';

let server: Server;
let api: string;

beforeAll(async () => {
  const { datapath, registry } = fakeAgent();
  server = createApi({
    registry,
    datapath,
    endpointStates: () => [],
    conntrack: async () => [],
    role: () => ({ instance: 'llb-inst0', state: 'MASTER', vip: '100.64.248.254', ready: 1, sync: 1, syncMode: 'sending', syncState: 'in-sync', syncLagSeconds: 0.012, syncEntries: 1234, syncResyncs: 1, syncRejected: { 'bad-mac': 2, 'kernel-refused': 3 }, syncKernelRefused: { ENOENT: 2, EBUSY: 1 } }),
    onRolePush: () => undefined,
    log: () => undefined,
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await fetch(`${api}/netlox/v1/config/loadbalancer`, {
    method: 'POST',
    body: JSON.stringify({ serviceArguments: { externalIP: '100.100.100.100', privateIP: '100.64.248.254', port: 80, protocol: 'tcp', mode: 2, name: 'web' }, endpoints: [{ endpointIP: '100.64.2.101', targetPort: 30080, weight: 1 }] }),
  });
});
afterAll(() => new Promise((r) => server.close(r)));

describe('loxiha CLI', () => {
  it('prints `get ha` like loxicmd', async () => {
    const out: string[] = [];
    expect(await cli(['get', 'ha', '--api', api], (s) => out.push(s))).toBe(0);
    expect(out[0]).toBe(
      [
        '| INSTANCE  | HASTATE | READY | SYNC    | STATE   | LAG(s) | ENTRIES | RESYNCS | REJECTED                                     |',
        '|-----------|---------|-------|---------|---------|--------|---------|---------|----------------------------------------------|',
        '| llb-inst0 | MASTER  | yes   | sending | in-sync | 0.012  | 1234    | 1       | bad-mac=2 kernel-refused=3(ENOENT=2,EBUSY=1) |',
      ].join('\n'),
    );
  });

  it('wait-ready: exits 0 once the agent reports ready, 1 with the reasons when it does not in time', async () => {
    const out: string[] = [];
    expect(await cli(['wait-ready', '--timeout', '5', '--api', api], (s) => out.push(s))).toBe(0);
    expect(out).toEqual(['ready']);
    const { datapath, registry } = fakeAgent();
    const notReady = createApi({
      registry,
      datapath,
      endpointStates: () => [],
      conntrack: async () => [],
      role: () => ({ instance: 'llb-inst1', state: 'BACKUP', vip: '100.64.248.254', sync: 0, ready: 0, notReady: ['net.ipv4.ip_forward is 0, needs 1: forwarding'] }),
      onRolePush: () => undefined,
      log: () => undefined,
    });
    await new Promise<void>((r) => notReady.listen(0, '127.0.0.1', r));
    try {
      const errors: string[] = [];
      const t0 = Date.now();
      expect(await cli(['wait-ready', '--timeout', '2', '--api', `http://127.0.0.1:${(notReady.address() as AddressInfo).port}`], () => {}, (s) => errors.push(s))).toBe(1);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
      expect(errors.join('\n')).toMatch(/did not report ready within 2 s \(not ready: net.ipv4.ip_forward is 0, needs 1/);
    } finally {
      await new Promise((r) => notReady.close(r));
    }
    const errors: string[] = [];
    expect(await cli(['wait-ready', '--timeout', '1', '--api', 'http://127.0.0.1:1'], () => {}, (s) => errors.push(s))).toBe(1);
    expect(errors.join('\n')).toMatch(/cannot reach the agent/);
    expect(await cli(['wait-ready', '--timeout', 'soon', '--api', api], () => {})).toBe(2);
  });

  it('prints load balancers as a table and as JSON', async () => {
    const out: string[] = [];
    await cli(['get', 'lb', '--api', api], (s) => out.push(s));
    expect(out[0]).toMatch(/\| EXT IP\s+\| PRIVATE IP\s+\| PORT \|/);
    expect(out[0]).toMatch(/\| 100\.100\.100\.100 \| 100\.64\.248\.254 \| 80\s+\| tcp\s+\| web\s+\|.*\| fullnat \| 100\.64\.2\.101 \| 30080 \| 1\s+\| active/);
    const json: string[] = [];
    await cli(['get', 'lb', '-o', 'json', '--api', api], (s) => json.push(s));
    expect(JSON.parse(json[0]!)[0].serviceArguments.name).toBe('web');
  });

  it('explains its usage on a wrong command, and with --help (exit 0)', async () => {
    const out: string[] = [];
    expect(await cli(['get', 'nothing'], (s) => out.push(s))).toBe(2);
    expect(out[0]).toMatch(/^usage: loxiha get ha\|lb\|ep\|ct/);
    for (const args of [['--help'], ['-h'], ['help']]) {
      const help: string[] = [];
      expect(await cli(args, (s) => help.push(s))).toBe(0);
      expect(help[0]).toMatch(/^usage: loxiha get/);
    }
    const errs: string[] = [];
    expect(await cli(['get', 'ha', '--bogus'], () => undefined, (s) => errs.push(s))).toBe(2);
    expect(errs).toEqual([expect.stringMatching(/^error: Unknown option '--bogus'/)]);
  });

  it('names the URL it tried when the agent is unreachable, in one line', async () => {
    // A port nothing listens on: taken from the system, then given back.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const errs: string[] = [];
    expect(await cli(['get', 'ha', '--api', `http://127.0.0.1:${port}`], () => undefined, (s) => errs.push(s))).toBe(1);
    expect(errs).toEqual([`error: cannot reach the agent at http://127.0.0.1:${port}/netlox/v1/config/cistate/all: ECONNREFUSED`]);
  });

  it('the agent itself: --help prints its usage and exits 0; a bad flag is one error line and exit 2', () => {
    const agent = (args: string[]) => spawnSync(process.execPath, [join(import.meta.dirname, '../../agent/main.ts'), ...args], { encoding: 'utf8' });
    const help = agent(['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^usage: agent \[--config FILE\]/);
    const bad = agent(['--probe-interval-ms', 'soon']);
    expect(bad.status).toBe(2);
    expect(bad.stderr.split('\n')[0]).toBe("error: --probe-interval-ms must be a whole number of milliseconds between 50 and 600000, got 'soon'");
  });

  it('pads columns to the widest cell', () => {
    expect(table(['A', 'B'], [['long value', 1]])).toBe('| A          | B |\n|------------|---|\n| long value | 1 |');
  });
});
