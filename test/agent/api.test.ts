import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ApiDeps, createApi } from '../../agent/api/server.ts';
import type { Datapath } from '../../agent/datapath/controller.ts';
import { StateStore } from '../../agent/services/store.ts';
import { fakeAgent, type FakeNft } from './fake-nft.ts';
import { kubeLoxilbDeleteLoop } from './fixtures/kube-loxilb.ts';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function entry(o: Record<string, unknown> = {}, endpoints = [{ endpointIP: '100.64.2.101', targetPort: 30080, weight: 1 }]) {
  return {
    serviceArguments: { externalIP: '100.100.100.100', privateIP: '100.64.248.254', port: 80, protocol: 'tcp', sel: 0, mode: 2, name: 'default_web', ...o },
    endpoints,
  };
}

let server: Server;
let base: string;
let nft: FakeNft;
let datapath: Datapath;
let store: StateStore;
let pushes: unknown[];

async function start(token?: string | (() => readonly string[]), extra: Partial<ApiDeps> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'loxiha-api-'));
  dirs.push(dir);
  store = new StateStore(dir);
  const agent = fakeAgent(store);
  nft = agent.nft;
  datapath = agent.datapath;
  pushes = [];
  server = createApi({
    registry: agent.registry,
    datapath,
    endpointStates: () => [],
    conntrack: async () => [],
    role: () => ({ instance: 'llb-inst0', state: 'BACKUP', vip: '100.64.248.254', sync: 0 }),
    onRolePush: (p) => pushes.push(p),
    token,
    log: () => undefined,
    ...extra,
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/netlox/v1`;
}

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(base + path, { method, headers: { 'content-type': 'application/json', ...headers }, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as any };
}

beforeEach(() => start());
afterEach(async () => {
  await new Promise((r) => server.close(r));
  await store.close();
});

describe('LoxiLB-compatible API', () => {
  it('answers liveness on GET /netlox/v1', async () => {
    expect((await call('GET', '')).status).toBe(200);
  });

  it('creates a load balancer (200 {"result":"Success"}) and lists it with the spec’s field names', async () => {
    expect(await call('POST', '/config/loadbalancer', entry())).toEqual({ status: 200, body: { result: 'Success' } });
    const all = await call('GET', '/config/loadbalancer/all');
    expect(all.body.lbAttr).toHaveLength(1);
    expect(all.body.lbAttr[0]).toMatchObject({
      serviceArguments: { externalIP: '100.100.100.100', privateIP: '100.64.248.254', port: 80, protocol: 'tcp', mode: 2, name: 'default_web' },
      endpoints: [{ endpointIP: '100.64.2.101', targetPort: 30080, weight: 1, state: 'active' }],
    });
    expect(nft.applied).toHaveLength(1);
  });

  it('accepts field names in any case, as Go clients send them (BGP, Monitor)', async () => {
    const body = entry();
    const args = body.serviceArguments as Record<string, unknown>;
    args.BGP = false;
    args.Monitor = true;
    expect((await call('POST', '/config/loadbalancer', body)).status).toBe(200);
    expect(datapath.list()[0]!.monitor).toBe(true);
  });

  it.each([
    ['not JSON', '{', /not valid JSON/],
    ['no endpoints', { serviceArguments: entry().serviceArguments }, /endpoints/],
    ['a bad IP', entry({ externalIP: '300.1.1.1' }), /externalIP: must be an IPv4 address/],
    ['an unsupported mode', entry({ mode: 3 }), /NAT mode 3 is not supported/],
    ['least-connections selection', entry({ sel: 4 }), /selection 4 is not supported/],
    ['sctp', entry({ protocol: 'sctp' }), /sctp is not supported/],
    ['an unknown field', entry({ bogus: 1 }), /bogus/],
    ['duplicate endpoints', entry({}, [{ endpointIP: '100.64.2.101', targetPort: 1, weight: 1 }, { endpointIP: '100.64.2.101', targetPort: 1, weight: 1 }]), /duplicate endpoint/],
    ['a bad allowed source', { ...entry(), allowedSources: [{ prefix: 'everyone' }] }, /IPv4 prefix/],
    ['a broadcast endpoint', entry({}, [{ endpointIP: '255.255.255.255', targetPort: 53, weight: 1 }]), /255\.255\.255\.255 can never be an endpoint: it is the broadcast address/],
    ['a multicast endpoint', entry({}, [{ endpointIP: '224.0.0.251', targetPort: 5353, weight: 1 }]), /multicast/],
    ['an unspecified endpoint', entry({}, [{ endpointIP: '0.0.0.0', targetPort: 80, weight: 1 }]), /this network/],
    ['a loopback endpoint', entry({}, [{ endpointIP: '127.0.0.1', targetPort: 80, weight: 1 }]), /loopback/],
    ['a reserved endpoint', entry({}, [{ endpointIP: '250.1.2.3', targetPort: 80, weight: 1 }]), /reserved/],
    ['the VIP as an endpoint', entry({}, [{ endpointIP: '100.64.248.254', targetPort: 30080, weight: 1 }]), /service's own address/],
    ['the external IP as an endpoint', entry({}, [{ endpointIP: '100.100.100.100', targetPort: 30080, weight: 1 }]), /service's own address/],
    ['an unspecified external IP', entry({ externalIP: '0.0.0.0' }), /externalIP: 0\.0\.0\.0 cannot be a service address/],
    ['an address taken by another service', entry({ externalIP: '100.100.100.101', port: 81 }), /100\.64\.248\.254 \. tcp \. 81 \(marks\) is already used by the service on 100\.100\.100\.100:81\/tcp/],
  ])('rejects %s with 400 and a message, changing nothing', async (_, body, message) => {
    await call('POST', '/config/loadbalancer', entry({ port: 81 }));
    const before = { list: datapath.list(), applies: nft.applied.length };
    const r = await call('POST', '/config/loadbalancer', body);
    expect(r.status).toBe(400);
    expect(r.body.message).toMatch(message);
    expect({ list: datapath.list(), applies: nft.applied.length }).toEqual(before);
  });

  it('accepts what older kube-loxilb builds send for empty lists (null)', async () => {
    const body = { ...entry(), secondaryIPs: null, allowedSources: null };
    expect((await call('POST', '/config/loadbalancer', body)).body).toEqual({ result: 'Success' });
    expect((await call('POST', '/config/loadbalancer', { ...entry({ port: 82 }), endpoints: null })).body).toEqual({ result: 'Success' });
    expect(datapath.list().map((s) => [s.port, s.endpoints.length, s.secondaryIPs, s.allowedSources])).toEqual([
      [80, 1, [], []],
      [82, 0, [], []],
    ]);
  });

  it("answers a second DELETE with LoxiLB's words, in a form that ends kube-loxilb's retries", async () => {
    await call('POST', '/config/loadbalancer', entry());
    const path = '/config/loadbalancer/externalipaddress/100.100.100.100/port/80/protocol/tcp';
    expect(await kubeLoxilbDeleteLoop([base], path, 5)).toBe(1);
    const again = await call('DELETE', path);
    expect(again).toEqual({ status: 404, body: { code: 404, result: 'no-rule error', message: 'no load balancer 100.100.100.100:80/tcp' } });
    // Both instances already without the service (the first delete's answers were lost): the loop still ends at once.
    expect(await kubeLoxilbDeleteLoop([base, base], path, 5)).toBe(1);
    expect(datapath.list()).toEqual([]);
  });

  it('applies concurrent changes together: one kernel change for many requests, each answered for itself', async () => {
    nft.latencyMs = 20;
    const applies = nft.applied.length;
    const bodies = Array.from({ length: 40 }, (_, i) => entry({ port: 2000 + i, name: `svc_${i}` }));
    // One bad request among them (it wants another service's address) fails alone.
    bodies.push(entry({ externalIP: '100.100.100.101', port: 2005 }));
    const answers = await Promise.all(bodies.map((b) => call('POST', '/config/loadbalancer', b)));
    expect(answers.slice(0, 40).every((a) => a.status === 200)).toBe(true);
    expect(answers[40]!.status).toBe(400);
    expect(datapath.list()).toHaveLength(40);
    expect(nft.applied.length - applies).toBeLessThan(10);
    expect(store.load().services).toHaveLength(40);
  });

  it('answers 500 and keeps the old state when the kernel rejects the change', async () => {
    await call('POST', '/config/loadbalancer', entry());
    nft.reject = 'Error: Could not process rule';
    const r = await call('POST', '/config/loadbalancer', entry({ port: 90 }));
    expect(r.status).toBe(500);
    expect(datapath.list().map((s) => s.port)).toEqual([80]);
  });

  it('deletes by external IP/port/protocol and by name; 404 for what does not exist', async () => {
    await call('POST', '/config/loadbalancer', entry());
    await call('POST', '/config/loadbalancer', entry({ port: 443, name: 'default_tls' }));
    expect((await call('DELETE', '/config/loadbalancer/externalipaddress/100.100.100.100/port/80/protocol/tcp')).body).toEqual({ result: 'Success' });
    expect((await call('DELETE', '/config/loadbalancer/externalipaddress/100.100.100.100/port/80/protocol/tcp')).status).toBe(404);
    expect((await call('DELETE', '/config/loadbalancer/name/default_tls')).status).toBe(200);
    expect(datapath.list()).toEqual([]);
  });

  it("deletes through LoxiLB's portmax path as through the plain one; a range it never held is a 400 that changes nothing", async () => {
    await call('POST', '/config/loadbalancer', entry());
    await call('POST', '/config/loadbalancer', entry({ port: 443, name: 'default_tls' }));
    await call('POST', '/config/loadbalancer', entry({ port: 53, protocol: 'udp', name: 'default_dns' }));
    const base = '/config/loadbalancer/externalipaddress/100.100.100.100/port';
    // A range (or a portmax below the port) is refused, before anything is deleted.
    for (const bad of ['80/portmax/90/protocol/tcp', '443/portmax/80/protocol/tcp']) {
      const r = await call('DELETE', `${base}/${bad}`);
      expect(r.status).toBe(400);
      expect(r.body.message).toMatch(/port ranges are not supported/);
    }
    expect(datapath.list()).toHaveLength(3);
    // portmax equal to the port, or 0 (what kube-loxilb sends for a single port): the same delete.
    expect(await call('DELETE', `${base}/80/portmax/80/protocol/tcp`)).toEqual({ status: 200, body: { result: 'Success' } });
    expect(await call('DELETE', `${base}/53/portmax/0/protocol/udp`)).toEqual({ status: 200, body: { result: 'Success' } });
    expect((await call('DELETE', `${base}/80/portmax/80/protocol/tcp`)).body).toMatchObject({ result: 'no-rule error' });
    expect(datapath.list().map((s) => [s.port, s.protocol])).toEqual([[443, 'tcp']]);
    expect(store.load().services.map((s) => s.port)).toEqual([443]);
  });

  it('attaches and detaches endpoints with oper 1 and 2', async () => {
    await call('POST', '/config/loadbalancer', entry());
    await call('POST', '/config/loadbalancer', entry({ oper: 1 }, [{ endpointIP: '100.64.2.102', targetPort: 30080, weight: 1 }]));
    expect(datapath.list()[0]!.endpoints.map((e) => e.ip)).toEqual(['100.64.2.101', '100.64.2.102']);
    await call('POST', '/config/loadbalancer', entry({ oper: 2 }, [{ endpointIP: '100.64.2.101', targetPort: 30080, weight: 1 }]));
    expect(datapath.list()[0]!.endpoints.map((e) => e.ip)).toEqual(['100.64.2.102']);
  });

  it('reports the role and accepts (but does not obey) a role push', async () => {
    expect((await call('GET', '/config/cistate/all')).body).toEqual({ Attr: [{ instance: 'llb-inst0', state: 'BACKUP', vip: '100.64.248.254', sync: 0 }] });
    expect((await call('POST', '/config/cistate', { instance: 'llb-inst0', state: 'MASTER', vip: '0.0.0.0' })).status).toBe(200);
    expect(pushes).toHaveLength(1);
    expect((await call('GET', '/config/cistate/all')).body.Attr[0].state).toBe('BACKUP');
    expect((await call('POST', '/config/cistate', { state: 'KING' })).status).toBe(400);
  });

  it('persists atomically, so a restarted agent gets the same services back', async () => {
    await call('POST', '/config/loadbalancer', entry());
    await call('POST', '/config/loadbalancer', entry({ port: 53, protocol: 'udp' }));
    expect(store.load()).toEqual({ services: datapath.list(), down: [] });
  });

  it('requires the bearer token when one is configured', async () => {
    await new Promise((r) => server.close(r));
    await start('s3cret-token');
    expect((await call('GET', '')).status).toBe(200);
    expect((await call('GET', '/config/loadbalancer/all')).status).toBe(401);
    expect((await call('POST', '/config/loadbalancer', entry(), { authorization: 'Bearer wrong' })).status).toBe(401);
    expect(datapath.list()).toEqual([]);
    expect((await call('POST', '/config/loadbalancer', entry(), { authorization: 'Bearer s3cret-token' })).status).toBe(200);
    // kube-loxilb's form: the token bare, as its ACCESS_TOKEN_<host> variable holds it.
    expect((await call('DELETE', '/config/loadbalancer/externalipaddress/100.100.100.100/port/80/protocol/tcp', undefined, { authorization: 's3cret-token' })).status).toBe(200);
    expect((await call('GET', '/config/loadbalancer/all', undefined, { authorization: 's3cret-tokenX' })).status).toBe(401);
    expect((await call('GET', '/config/loadbalancer/all', undefined, { authorization: 'Bearer' })).status).toBe(401);
    expect(datapath.list()).toEqual([]);
  });

  it('during a token rotation accepts the previous and the next token, and after it only the tokens the file holds', async () => {
    await new Promise((r) => server.close(r));
    let tokens = ['next-token', 'previous-token'];
    await start(() => tokens);
    expect((await call('GET', '/config/loadbalancer/all', undefined, { authorization: 'previous-token' })).status).toBe(200);
    expect((await call('GET', '/config/loadbalancer/all', undefined, { authorization: 'Bearer next-token' })).status).toBe(200);
    tokens = ['next-token'];
    expect((await call('GET', '/config/loadbalancer/all', undefined, { authorization: 'previous-token' })).status).toBe(401);
    expect((await call('GET', '/config/loadbalancer/all', undefined, { authorization: 'next-token' })).status).toBe(200);
  });

  it('hands kube-loxilb the newest token on its refresh path (either provider form), only for a token it accepts, and says which token opened each call', async () => {
    const used: string[] = [];
    let tokens = ['current-token', 'pending-token', 'previous-token'];
    await start(() => tokens, { refresh: { newest: () => 'pending-token', lifetimeSeconds: 360 }, onAuthorized: (t) => used.push(t) });
    // kube-loxilb's request: GET <base>/oauth/<provider>/token?token=…&refreshtoken=… with no header; an unset provider makes `oauth//token`.
    for (const provider of ['', 'google']) {
      const r = await call('GET', `/oauth/${provider}/token?token=previous-token&refreshtoken=previous-token`);
      expect(r).toEqual({ status: 200, body: { access_token: 'pending-token', token_type: 'Bearer', expires_in: 360, token: 'pending-token', expiresin: 360 } });
    }
    // The access token may have fallen out; the refresh token still authorises (and the other way round).
    expect((await call('GET', '/oauth//token?token=stale&refreshtoken=current-token')).status).toBe(200);
    expect((await call('GET', '/oauth//token?token=current-token&refreshtoken=stale')).status).toBe(200);
    const refused = await call('GET', '/oauth//token?token=stale&refreshtoken=older');
    expect(refused.status).toBe(401);
    expect(JSON.stringify(refused.body)).not.toContain('token-');
    expect((await call('GET', '/oauth//token')).status).toBe(401);
    expect((await call('POST', '/oauth//token?token=current-token')).status).toBe(405);
    expect(used).toEqual([]);
    await call('GET', '/config/loadbalancer/all', undefined, { authorization: 'pending-token' });
    await call('GET', '/config/loadbalancer/all', undefined, { authorization: 'previous-token' });
    await call('GET', '/config/loadbalancer/all', undefined, { authorization: 'wrong' });
    expect(used).toEqual(['pending-token', 'previous-token']);
    tokens = ['pending-token'];
    expect((await call('GET', '/oauth//token?token=previous-token&refreshtoken=previous-token')).status).toBe(401);
  });

  it('serves no refresh path when it has no token to hand out', async () => {
    await start(undefined);
    expect((await call('GET', '/oauth//token?token=a&refreshtoken=b')).status).toBe(404);
  });

  it('survives 10,000 fuzzed bodies: never a 5xx, and a rejection changes nothing', async () => {
    await call('POST', '/config/loadbalancer', entry({ port: 7 }));
    const valid = fc.record({
      serviceArguments: fc.record(
        {
          externalIP: fc.oneof(fc.ipV4(), fc.string()),
          privateIP: fc.oneof(fc.ipV4(), fc.constant('0.0.0.0'), fc.string()),
          port: fc.oneof(fc.integer({ min: -5, max: 30 }), fc.integer({ min: 65530, max: 70000 }), fc.string()),
          protocol: fc.constantFrom('tcp', 'udp', 'sctp', 'icmp', 'TCP', ''),
          sel: fc.integer({ min: -1, max: 8 }),
          mode: fc.integer({ min: -1, max: 6 }),
          monitor: fc.oneof(fc.boolean(), fc.string()),
          probetype: fc.constantFrom('tcp', 'udp', 'http', 'https', 'ping', 'none', 'sctp', 'x'),
          name: fc.string({ maxLength: 20 }),
          oper: fc.integer({ min: 0, max: 3 }),
        },
        { requiredKeys: [] },
      ),
      endpoints: fc.array(fc.record({ endpointIP: fc.oneof(fc.ipV4(), fc.string()), targetPort: fc.integer({ min: -1, max: 70000 }), weight: fc.integer({ min: -1, max: 70000 }) }, { requiredKeys: [] }), { maxLength: 4 }),
      allowedSources: fc.array(fc.record({ prefix: fc.oneof(fc.ipV4().map((ip) => `${ip}/24`), fc.string()) }), { maxLength: 2 }),
    });
    // Well-formed bodies with one field perturbed: exercise the accept path as well as the rejections.
    const perturbed = fc.record({ port: fc.integer({ min: 1, max: 20 }), protocol: fc.constantFrom('tcp', 'udp'), sel: fc.integer({ min: 0, max: 3 }), weight: fc.integer({ min: 0, max: 10 }), ip: fc.ipV4() }).map((v) =>
      entry({ port: v.port, protocol: v.protocol, sel: v.sel }, [{ endpointIP: v.ip, targetPort: 30080, weight: v.weight }]),
    );
    const bodies = fc.oneof({ weight: 3, arbitrary: valid }, { weight: 1, arbitrary: perturbed }, { weight: 1, arbitrary: fc.jsonValue() }, { weight: 1, arbitrary: fc.string() });
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(bodies, async (body) => {
        const before = JSON.stringify(datapath.list());
        const applies = nft.applied.length;
        const r = await call('POST', '/config/loadbalancer', typeof body === 'string' ? body : JSON.stringify(body));
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status >= 500) return false;
        if (r.status !== 200) return JSON.stringify(datapath.list()) === before && nft.applied.length === applies && typeof r.body.message === 'string';
        return true;
      }),
      { numRuns: 10_000 },
    );
    expect(statuses.get(400)).toBeGreaterThan(1000);
    expect(statuses.get(200)).toBeGreaterThan(10);
  }, 120_000);
});
