/** The API's bodies use the field names of loxilb-swagger.yml, for every operation implemented. */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApi } from '../../agent/api/server.ts';
import { fakeAgent } from './fake-nft.ts';

/** Field names per definition, extracted from loxilb-swagger.yml (kept in step with it by scripts/check-swagger-fields.ts). */
const FIELDS = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/spec-fields.json'), 'utf8')) as Record<string, string[]>;
const specKeys = (definition: string) => new Set(FIELDS[definition]);

function keysOf(v: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(v)) v.forEach((x) => keysOf(x, out));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) (out.add(k), keysOf(x, out));
  return out;
}

let server: Server;
let base: string;
beforeAll(async () => {
  const { datapath, registry } = fakeAgent();
  server = createApi({
    registry,
    datapath,
    endpointStates: () => [{ service: '100.100.100.100|80|tcp', endpoint: '100.64.2.101:30080', probeType: 'tcp', up: true, failures: 0, lastMs: [3, 4] }],
    conntrack: async () => [{ protocol: 'tcp', state: 'ESTABLISHED', src: '100.64.1.100', dst: '100.64.248.254', sport: 40000, dport: 80, replySrc: '100.64.2.101', replySport: 30080, replyDst: '100.64.248.254', replyDport: 40000, mark: 1, seenReply: true, assured: true, packets: 3, bytes: 180 }],
    role: () => ({ instance: 'llb-inst0', state: 'MASTER', vip: '100.64.248.254', sync: 0 }),
    onRolePush: () => undefined,
    log: () => undefined,
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/netlox/v1`;
  const setup = await fetch(`${base}/config/loadbalancer`, {
    method: 'POST',
    body: JSON.stringify({
      serviceArguments: { externalIP: '100.100.100.100', privateIP: '100.64.248.254', port: 80, protocol: 'tcp', mode: 2, name: 'web' },
      endpoints: [{ endpointIP: '100.64.2.101', targetPort: 30080, weight: 1 }],
      allowedSources: [{ prefix: '100.64.0.0/10' }],
      secondaryIPs: [{ secondaryIP: '100.64.248.253' }],
    }),
  });
  // The service the checks below read back must exist: a refused setup would leave bodies with nothing to check.
  expect(setup.status).toBe(200);
});

/** The keys a body must carry (what kube-loxilb and loxicmd read), so that an empty body does not pass for "no unknown keys". */
const expectKeys = (body: unknown, required: string[]) => {
  const have = keysOf(body);
  expect(required.filter((k) => !have.has(k))).toEqual([]);
};
afterAll(() => new Promise((r) => server.close(r)));

const get = async (path: string): Promise<any> => (await fetch(base + path)).json();


describe('responses use the spec’s field names', () => {
  it('GET /config/loadbalancer/all → LoadbalanceEntry (plus a documented service `counter`)', async () => {
    const body = await get('/config/loadbalancer/all');
    const allowed = new Set([...specKeys('LoadbalanceEntry'), 'lbAttr', 'counter']);
    expect([...keysOf(body)].filter((k) => !allowed.has(k))).toEqual([]);
    expect(body.lbAttr).toHaveLength(1);
    expectKeys(body, ['serviceArguments', 'externalIP', 'port', 'protocol', 'mode', 'name', 'endpoints', 'endpointIP', 'targetPort', 'weight', 'allowedSources', 'prefix', 'secondaryIPs', 'secondaryIP']);
    expect(body.lbAttr[0].serviceArguments).toMatchObject({ externalIP: '100.100.100.100', port: 80, protocol: 'tcp', name: 'web' });
    expect(body.lbAttr[0].endpoints).toEqual([expect.objectContaining({ endpointIP: '100.64.2.101', targetPort: 30080, weight: 1 })]);
  });

  it('GET /config/cistate/all → CIStatusGetEntry', async () => {
    const body = await get('/config/cistate/all');
    const allowed = new Set([...specKeys('CIStatusGetEntry'), 'Attr']);
    expect([...keysOf(body)].filter((k) => !allowed.has(k))).toEqual([]);
    expect(body.Attr).toEqual([expect.objectContaining({ instance: 'llb-inst0', state: 'MASTER', vip: '100.64.248.254' })]);
  });

  it('GET /config/conntrack/all → ConntrackEntry', async () => {
    const body = await get('/config/conntrack/all');
    expect(body.ctAttr).toHaveLength(1);
    const allowed = new Set([...specKeys('ConntrackEntry'), 'ctAttr']);
    expect([...keysOf(body)].filter((k) => !allowed.has(k))).toEqual([]);
    expectKeys(body, ['sourceIP', 'destinationIP', 'sourcePort', 'destinationPort', 'protocol', 'conntrackState', 'conntrackAct', 'packets', 'bytes', 'servName']);
  });

  it('GET /config/endpoint/all → EndPointGetEntry', async () => {
    const body = await get('/config/endpoint/all');
    expect(body.Attr).toHaveLength(1);
    const allowed = new Set([...specKeys('EndPointGetEntry'), 'Attr']);
    expect([...keysOf(body)].filter((k) => !allowed.has(k))).toEqual([]);
    expectKeys(body, ['hostName', 'name', 'probeType', 'currState']);
  });

  it('errors → Error', async () => {
    const r = await fetch(`${base}/config/loadbalancer`, { method: 'POST', body: '{}' });
    expect(r.status).toBe(400);
    const allowed = specKeys('Error');
    const err = await r.json();
    expect([...keysOf(err)].filter((k) => !allowed.has(k))).toEqual([]);
    expectKeys(err, ['code', 'message']);
  });
});
