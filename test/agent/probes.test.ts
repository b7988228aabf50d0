/** Probes against servers this test starts on loopback. */
import { createSocket } from 'node:dgram';
import { createServer as createHttp } from 'node:http';
import { createServer as createTcp } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultProbe, Prober } from '../../agent/probes.ts';
import type { Probe } from '../../agent/services/model.ts';
import { svc } from './fixtures/service.ts';
import { sleep, until } from '../../sim/flows.ts';

const probe = (o: Partial<Probe>): Probe => ({ type: 'tcp', port: 0, req: '', resp: '', retries: 2, timeoutSeconds: 1, ...o });
let tcpPort = 0;
let httpPort = 0;
let udpPort = 0;
const servers: { close: (cb?: () => void) => unknown }[] = [];

beforeAll(async () => {
  const tcp = createTcp((s) => s.end()).listen(0, '127.0.0.1');
  const http = createHttp((req, res) => (req.url === '/healthz' ? res.end('I am OK') : ((res.statusCode = 503), res.end('no')))).listen(0, '127.0.0.1');
  const udp = createSocket('udp4');
  udp.on('message', (m, r) => udp.send(`pong ${m}`, r.port, r.address));
  await Promise.all([new Promise((r) => tcp.once('listening', r)), new Promise((r) => http.once('listening', r)), new Promise<void>((r) => udp.bind(0, '127.0.0.1', r))]);
  tcpPort = (tcp.address() as AddressInfo).port;
  httpPort = (http.address() as AddressInfo).port;
  udpPort = udp.address().port;
  servers.push(tcp, http, udp);
});
afterAll(() => servers.forEach((s) => s.close()));

describe('probes', () => {
  it('tcp: up when it connects, down when refused', async () => {
    expect(await defaultProbe('127.0.0.1', tcpPort, probe({ type: 'tcp' }))).toBe(true);
    expect(await defaultProbe('127.0.0.1', 1, probe({ type: 'tcp' }))).toBe(false);
  });

  it('http: checks the status and the expected response text', async () => {
    expect(await defaultProbe('127.0.0.1', httpPort, probe({ type: 'http', req: '/healthz', resp: 'OK' }))).toBe(true);
    expect(await defaultProbe('127.0.0.1', httpPort, probe({ type: 'http', req: '/healthz', resp: 'great' }))).toBe(false);
    expect(await defaultProbe('127.0.0.1', httpPort, probe({ type: 'http', req: '/other' }))).toBe(false);
  });

  it('udp: up on the expected answer, down on port unreachable', async () => {
    expect(await defaultProbe('127.0.0.1', udpPort, probe({ type: 'udp', req: 'ping', resp: 'pong' }))).toBe(true);
    expect(await defaultProbe('127.0.0.1', 9, probe({ type: 'udp', timeoutSeconds: 1 }))).toBe(false);
  });

  it('ping: up for loopback', async () => {
    expect(await defaultProbe('127.0.0.1', 0, probe({ type: 'ping' }))).toBe(true);
  });

  it('a probe that cannot even start (broadcast, a port 0) says down and throws nothing out of the event loop', async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    try {
      for (const type of ['udp', 'tcp', 'http', 'https', 'ping'] as const) {
        for (const [ip, port] of [['255.255.255.255', 53], ['127.0.0.1', 0]] as const) {
          expect(await defaultProbe(ip, port, probe({ type, timeoutSeconds: 1, req: 'x', resp: type === 'udp' ? '' : 'y' })), `${type} ${ip}:${port}`).toBe(type === 'ping' && ip === '127.0.0.1');
        }
      }
      // Socket callbacks run after the probe settles: a window for one to throw.
      await sleep(200);
      expect(uncaught).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });

  it('a probe function that throws, even synchronously, only marks its endpoint down', async () => {
    const prober = new Prober({ intervalMs: 10, onChange: () => undefined, probe: () => { throw new Error('boom'); } });
    prober.sync([svc({ monitor: true, probe: probe({ retries: 1 }) })]);
    await until('every endpoint down', () => prober.down().size === 3);
    expect(prober.down().size).toBe(3);
    prober.stop();
  });

  it('starts endpoints from their last verdicts (a restart does not put a dead endpoint back)', async () => {
    const prober = new Prober({ intervalMs: 60_000, onChange: () => undefined, probe: async () => true });
    const s = svc({ monitor: true, probe: probe({ retries: 2 }) });
    prober.sync([s], new Set(['100.100.100.100|80|tcp#100.64.2.103:30080']));
    expect([...prober.down()]).toEqual(['100.100.100.100|80|tcp#100.64.2.103:30080']);
    prober.stop();
  });

  it('probeport overrides the endpoint port', async () => {
    expect(await defaultProbe('127.0.0.1', 1, probe({ type: 'tcp', port: tcpPort }))).toBe(true);
  });

  it('marks an endpoint down after `retries` failures and up again on success', async () => {
    let healthy = true;
    let probes = 0;
    let failuresWhenDown: number | undefined;
    const changes: string[][] = [];
    const prober = new Prober({
      intervalMs: 20,
      onChange: (d) => {
        changes.push([...d]);
        if (d.size) failuresWhenDown = prober.states()[0]!.failures;
      },
      probe: async () => (probes++, healthy),
    });
    const s = svc({ monitor: true, probe: probe({ type: 'tcp', retries: 3 }), endpoints: [{ ip: '100.64.2.101', port: 30080, weight: 1 }] });
    prober.sync([s]);
    await until('a few healthy probes', () => probes >= 3);
    expect(prober.down().size).toBe(0);
    healthy = false;
    await until('the endpoint down', () => prober.down().size === 1);
    expect([...prober.down()]).toEqual(['100.100.100.100|80|tcp#100.64.2.101:30080']);
    // Down only after `retries` failures in a row, not at the first.
    expect(failuresWhenDown).toBeGreaterThanOrEqual(3);
    healthy = true;
    await until('the endpoint up again', () => prober.down().size === 0);
    expect(changes.length).toBe(2);
    prober.stop();
  });
});
