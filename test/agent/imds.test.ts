import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Imds, ImdsError } from '../../agent/ha/imds.ts';
import { observeOnAws, type Role, RoleWatcher } from '../../agent/ha/role.ts';

/** A metadata service that behaves like IMDSv2: reads need a token it issued; tokens can be revoked. */
async function fakeImds(instanceId = 'i-0123456789abcdef0') {
  const tokens = new Set<string>();
  /** mac → addresses; the test attaches and detaches interfaces. */
  const interfaces = new Map<string, string[]>([['0e:00:00:00:00:01', ['100.64.0.10']]]);
  /** mac → its subnet's CIDR block. */
  const cidrs = new Map<string, string>();
  const seen = { puts: 0, unauthorized: 0 };
  /** Metadata reads (every request but the token's). */
  const reads = { n: 0 };
  let n = 0;
  const state = { fail: false };
  const server: Server = createServer((req, res) => {
    if (state.fail) return res.writeHead(500).end();
    if (req.method === 'PUT' && req.url === '/latest/api/token') {
      if (!req.headers['x-aws-ec2-metadata-token-ttl-seconds']) return res.writeHead(400).end();
      seen.puts++;
      const t = `token-${++n}`;
      tokens.add(t);
      return res.writeHead(200).end(t);
    }
    reads.n++;
    if (!tokens.has(String(req.headers['x-aws-ec2-metadata-token']))) {
      seen.unauthorized++;
      return res.writeHead(401).end();
    }
    if (req.url === '/latest/meta-data/instance-id') return res.writeHead(200).end(instanceId);
    const macs = '/latest/meta-data/network/interfaces/macs/';
    if (req.url === macs) return res.writeHead(200).end([...interfaces.keys()].map((m) => `${m}/`).join('\n'));
    const m = req.url?.startsWith(macs) ? /^([^/]+)\/local-ipv4s$/.exec(req.url.slice(macs.length)) : null;
    if (m && interfaces.has(m[1]!)) return res.writeHead(200).end(interfaces.get(m[1]!)!.join('\n'));
    const c = req.url?.startsWith(macs) ? /^([^/]+)\/subnet-ipv4-cidr-block$/.exec(req.url.slice(macs.length)) : null;
    if (c && cidrs.has(c[1]!)) return res.writeHead(200).end(cidrs.get(c[1]!));
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    tokens,
    seen,
    reads,
    interfaces,
    cidrs,
    /** Every answer a 500 while set (an IMDS outage). */
    set fail(v: boolean) {
      state.fail = v;
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

let close: (() => Promise<unknown>) | undefined;
afterEach(async () => {
  await close?.();
  close = undefined;
});

describe('IMDSv2 client', () => {
  it('reads the instance id with a session token, reusing the token', async () => {
    const f = await fakeImds();
    close = f.close;
    const imds = new Imds(f.url);
    expect(await imds.instanceId()).toBe('i-0123456789abcdef0');
    expect(await imds.instanceId()).toBe('i-0123456789abcdef0');
    expect(f.seen.puts).toBe(1);
  });

  it('fetches a new token once when the service no longer accepts the old one', async () => {
    const f = await fakeImds();
    close = f.close;
    const imds = new Imds(f.url);
    await imds.instanceId();
    f.tokens.clear();
    expect(await imds.instanceId()).toBe('i-0123456789abcdef0');
    expect(f.seen).toEqual({ puts: 2, unauthorized: 1 });
  });

  it('refuses an answer that is not an instance id, and a path that does not exist', async () => {
    const f = await fakeImds('<html>captive portal</html>');
    close = f.close;
    const imds = new Imds(f.url);
    await expect(imds.instanceId()).rejects.toBeInstanceOf(ImdsError);
    await expect(imds.get('/latest/meta-data/nothing')).rejects.toThrow(/HTTP 404/);
  });

  it('several VIP groups looking at once cost one look: reads of a path under way share its answer', async () => {
    const f = await fakeImds();
    close = f.close;
    f.interfaces.set('0e:00:00:00:00:02', ['100.64.248.254', '100.64.201.254']);
    const imds = new Imds(f.url);
    await imds.instanceId();
    const before = f.reads.n;
    const found = await Promise.all(['100.64.248.254', '100.64.201.254', '100.64.202.254'].map((vip) => imds.vipInterface(vip)));
    expect(found.map((x) => x?.mac)).toEqual(['0e:00:00:00:00:02', '0e:00:00:00:00:02', undefined]);
    // The MAC list, each interface's addresses, the one subnet: as one group's look, not three.
    expect(f.reads.n - before).toBe(4);
    // Shared only while under way: a later look reads again.
    await imds.vipInterface('100.64.248.254');
    expect(f.reads.n - before).toBeGreaterThan(4);
  });

  it('fails clearly when no metadata service answers', async () => {
    const f = await fakeImds();
    await f.close();
    await expect(new Imds(f.url).instanceId()).rejects.toThrow();
  });
});

describe('HA role from where the VIP lives', () => {
  it('is MASTER exactly when an interface of this instance carries the VIP, and finds that interface by the MAC IMDS names', async () => {
    const f = await fakeImds();
    close = f.close;
    const links = async () => JSON.stringify([{ ifname: 'ens5', address: '0e:00:00:00:00:01', addr_info: [] }, { ifname: 'ens6', address: '0e:00:00:00:00:02', addr_info: [] }]);
    const observe = observeOnAws(new Imds(f.url), '100.64.248.254', links);
    expect(await observe()).toEqual({ role: 'BACKUP', iface: undefined });
    f.interfaces.set('0e:00:00:00:00:02', ['100.64.248.25']);
    expect((await observe()).role).toBe('BACKUP');
    f.interfaces.set('0e:00:00:00:00:02', ['100.64.248.10', '100.64.248.254']);
    // Attached, but IMDS gives no subnet yet: MASTER, with no interface to route through.
    expect(await observe()).toEqual({ role: 'MASTER', iface: undefined });
    f.cidrs.set('0e:00:00:00:00:02', '100.64.248.0/24');
    expect(await observe()).toEqual({ role: 'MASTER', iface: { ifname: 'ens6', prefixLength: 24, gateway: '100.64.248.1' } });
  });

  it('follows loxi-eni as it is attached and detached; keeps the last role through an IMDS outage and says so once', async () => {
    const f = await fakeImds();
    close = f.close;
    const changes: [Role, Role | undefined][] = [];
    const errors: string[] = [];
    const w = new RoleWatcher({ observe: observeOnAws(new Imds(f.url), '100.64.248.254', async () => '[]'), intervalMs: 60_000, onChange: (r, p) => changes.push([r, p]), onError: (e) => errors.push(e.message) });
    await w.check();
    expect(w.current).toBe('BACKUP');
    f.interfaces.set('0e:00:00:00:00:02', ['100.64.248.10', '100.64.248.254']);
    await w.check();
    expect(w.current).toBe('MASTER');
    await w.check();
    f.tokens.clear();
    f.interfaces.delete('0e:00:00:00:00:02');
    await w.check();
    expect(changes).toEqual([
      ['BACKUP', undefined],
      ['MASTER', 'BACKUP'],
      ['BACKUP', 'MASTER'],
    ]);
    await f.close();
    close = undefined;
    await w.check();
    await w.check();
    expect(w.current).toBe('BACKUP');
    expect(errors).toHaveLength(1);
  });

  it('keeps MASTER through an IMDS outage (an error never demotes the owner), and follows IMDS again once it answers', async () => {
    const f = await fakeImds();
    close = f.close;
    const changes: [Role, Role | undefined][] = [];
    const errors: string[] = [];
    const w = new RoleWatcher({ observe: observeOnAws(new Imds(f.url), '100.64.248.254', async () => '[]'), intervalMs: 60_000, onChange: (r, p) => changes.push([r, p]), onError: (e) => errors.push(e.message) });
    f.interfaces.set('0e:00:00:00:00:02', ['100.64.248.10', '100.64.248.254']);
    await w.check();
    expect(w.current).toBe('MASTER');
    // IMDS answers 500 (tokens refused) for a while, then not at all.
    f.fail = true;
    for (let i = 0; i < 3; i++) await w.check();
    expect(w.current).toBe('MASTER');
    f.fail = false;
    await w.check();
    expect(w.current).toBe('MASTER');
    expect(changes).toEqual([['MASTER', undefined]]);
    expect(errors).toHaveLength(1);
  });
});
