/**
 * Session sync's protocol on loopback, with the kernel replaced by a recorder of the lines that
 * would be loaded: what gets in, what is refused, how a stream recovers.
 */
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeHello, FrameReader, newNonce, readChallenge, SessionCodec } from '../../agent/sync/channel.ts';
import { checkEntry, injectLine, serviceIndex, type WireEntry } from '../../agent/sync/entry.ts';
import { Injector } from '../../agent/sync/inject.ts';
import { SyncServer } from '../../agent/sync/receiver.ts';
import { PeerStream, resyncBackoff, SYNC_MAX_RESYNC_INTERVAL_MS, SYNC_MIN_RESYNC_INTERVAL_MS } from '../../agent/sync/sender.ts';
import { serviceMark } from '../../agent/datapath/render.ts';
import { servicesDigest } from '../../agent/services/digest.ts';
import { type Service, MODE } from '../../agent/services/model.ts';
import { loadbalanceEntrySchema, toService } from '../../agent/api/schemas.ts';

const KEY = Buffer.from('k'.repeat(48));
const DEPLOYMENT = 'sim';
const svc: Service = toService(loadbalanceEntrySchema.parse({ serviceArguments: { externalIP: '100.100.100.100', privateIP: '100.64.248.254', port: 80, protocol: 'tcp', mode: MODE.fullnat, name: 'web' }, endpoints: [{ endpointIP: '100.64.2.11', targetPort: 8080, weight: 1 }] }));
const MARK = serviceMark(svc);
const INDEX = serviceIndex([svc]);

function flow(i: number, op: 'n' | 'u' | 'x' = 'u'): WireEntry {
  return [op, 'tcp', `100.101.${(i >> 8) & 255}.${i & 255}`, '100.100.100.100', 10000 + (i % 50000), 80, '100.64.2.11', '100.64.248.254', 8080, 10000 + (i % 50000), MARK, 'ESTABLISHED', 300, 3];
}

/** How a resync's entry is loaded: create-or-update, update first. */
const asResynced = (e: WireEntry) => ['u', ...e.slice(1)] as WireEntry;

const until = async (f: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

const stops: (() => void)[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s();
});

async function receiver(o: { key?: Buffer; keys?: () => readonly Buffer[]; isOwner?: boolean; kernel?: WireEntry[]; services?: () => ReturnType<typeof serviceIndex>; servicesDigest?: () => string } = {}) {
  const loaded: string[] = [];
  const server = new SyncServer({
    keys: o.keys ?? (() => [o.key ?? KEY]),
    deploymentId: DEPLOYMENT,
    peers: new Set([0]),
    listen: { ip: '127.0.0.1', port: 0 },
    services: o.services ?? (() => INDEX),
    injector: new Injector(async (chunks) => void loaded.push(...chunks.join('\n').split('\n'))),
    isOwner: () => o.isOwner ?? false,
    listOurs: async function* () {
      yield* o.kernel ?? [];
    },
    log: () => undefined,
    servicesDigest: o.servicesDigest,
  });
  await server.start();
  stops.push(() => server.stop());
  const port = (server as unknown as { server: { address: () => { port: number } } }).server.address().port;
  return { server, loaded, port };
}

function sender(port: number, dump: () => Promise<WireEntry[]>, o: { key?: Buffer; deploymentId?: string; selfIndex?: number; servicesDigest?: () => string } = {}) {
  const logs: string[] = [];
  const s = new PeerStream({ keys: () => [o.key ?? KEY], deploymentId: o.deploymentId ?? DEPLOYMENT, selfIndex: o.selfIndex ?? 0, peer: { index: 1, ip: '127.0.0.1', port }, dump: async function* () {
    yield* await dump();
  }, log: (_l, msg) => logs.push(msg), servicesDigest: o.servicesDigest });
  s.start();
  stops.push(() => s.stop());
  return { s, logs };
}

describe('the services digest', () => {
  it('is the same for the same services in any order, and differs when an endpoint, a weight or a port does', () => {
    const two: Service = { ...svc, endpoints: [{ ip: '100.64.2.11', port: 8080, weight: 1 }, { ip: '100.64.2.12', port: 8080, weight: 2 }] };
    const other: Service = { ...svc, externalIP: '100.100.100.101' };
    const d = servicesDigest([two, other]);
    expect(d).toMatch(/^[0-9a-f]{16}$/);
    expect(servicesDigest([other, { ...two, endpoints: [...two.endpoints].reverse() }])).toBe(d);
    expect(servicesDigest([{ ...two, endpoints: [two.endpoints[0]!, { ...two.endpoints[1]!, weight: 3 }] }, other])).not.toBe(d);
    expect(servicesDigest([{ ...two, port: 81 }, other])).not.toBe(d);
    expect(servicesDigest([two])).not.toBe(d);
  });
});

describe('synced entries', () => {
  it('accepts a flow of one of the receiver’s services and loads it with its NAT mapping and mark', () => {
    const r = checkEntry(flow(1), INDEX);
    expect(r.ok).toBe(true);
    // Both translated tuples, the mark, the state; the copy waits an hour at least for the owner's word that the flow ended.
    expect(injectLine(flow(1))).toBe(`u tcp 100.101.0.1 100.100.100.100 10001 80 100.64.2.11 100.64.248.254 8080 10001 ${MARK} ESTABLISHED 3600 3`);
    expect(injectLine(flow(1, 'n'))).toMatch(/^n tcp /);
    expect(injectLine(Object.assign([...flow(1)], { 1: 'udp', 11: '' }) as WireEntry)).toBe(`u udp 100.101.0.1 100.100.100.100 10001 80 100.64.2.11 100.64.248.254 8080 10001 ${MARK} - 3600 3`);
    expect(injectLine(flow(1, 'x'))).toBe(`x tcp 100.101.0.1 100.100.100.100 10001 80 100.64.2.11 100.64.248.254 8080 10001 ${MARK} ESTABLISHED 1 3`);
  });

  it('refuses flows outside the receiver’s services and anything malformed', () => {
    const e = flow(1);
    const variants: [unknown, string][] = [
      [Object.assign([...e], { 10: (MARK ^ 1) >>> 0 }), 'foreign-flow'],
      [Object.assign([...e], { 10: MARK - 2 ** 32 }), 'malformed'],
      [Object.assign([...e], { 10: 0x1234 }), 'foreign-flow'],
      [Object.assign([...e], { 3: '100.64.1.1' }), 'foreign-flow'],
      [Object.assign([...e], { 5: 22 }), 'foreign-flow'],
      [Object.assign([...e], { 1: 'udp', 11: '' }), 'foreign-flow'],
      [Object.assign([...e], { 7: '100.64.1.99' }), 'foreign-flow'],
      [Object.assign([...e], { 2: '100.101.0.1 --mark 1' }), 'malformed'],
      [Object.assign([...e], { 11: 'ESTABLISHED -D' }), 'malformed'],
      [Object.assign([...e], { 12: 0 }), 'malformed'],
      [Object.assign([...e], { 4: 70000 }), 'malformed'],
      [e.slice(0, 13), 'malformed'],
      [{ ...e }, 'malformed'],
      ['u tcp', 'malformed'],
    ];
    for (const [x, reason] of variants) expect([x, checkEntry(x, INDEX)]).toEqual([x, { ok: false, reason }]);
  });
});

describe('session sync over loopback', () => {
  it('resyncs a new peer, then streams changes; both ends report in sync', async () => {
    const { server, loaded, port } = await receiver();
    const { s } = sender(port, async () => [flow(1), flow(2)]);
    await until(() => s.inSync() && server.inSync());
    // The resync is applied as a difference against this (empty) kernel: two additions.
    expect(loaded).toEqual([injectLine(asResynced(flow(1))), injectLine(asResynced(flow(2)))]);
    for (let i = 3; i < 5003; i++) s.offer(flow(i), Date.now());
    s.offer(flow(1, 'x'), Date.now());
    await until(() => server.entries === 5003 && s.lagMs() === 0);
    expect(loaded).toContain(injectLine(flow(5002)));
    expect(loaded.at(-1)).toEqual(injectLine(flow(1, 'x')));
    expect(s.inSync()).toBe(true);
    expect(server.rejected.size).toBe(0);
  });

  it('coalesces changes of one flow: a new flow stays one add with its latest state; one that also ended is not sent', async () => {
    const { server, loaded, port } = await receiver();
    const { s } = sender(port, async () => []);
    await until(() => s.inSync());
    const opening: WireEntry = Object.assign([...flow(7, 'n')], { 11: 'SYN_SENT', 13: 0 }) as WireEntry;
    s.offer(opening, Date.now());
    s.offer(flow(7), Date.now());
    s.offer(flow(8, 'n'), Date.now());
    s.offer(flow(8, 'x'), Date.now());
    s.offer(flow(9), Date.now());
    s.offer(flow(9, 'x'), Date.now());
    await until(() => server.entries === 2);
    expect(loaded).toEqual([injectLine(flow(7, 'n')), injectLine(flow(9, 'x'))]);
  });

  it('a resync is a difference: adds what is missing, moves TCP states, expires what the owner no longer has (unless this instance owns the VIP now)', async () => {
    const stale = flow(9);
    const opening = Object.assign([...flow(2)], { 11: 'SYN_SENT' }) as WireEntry;
    const a = await receiver({ kernel: [flow(1), opening, stale] });
    sender(a.port, async () => [flow(1), flow(2), flow(3)]);
    await until(() => a.server.resyncs === 1);
    // The owner's flows load as new ones as they come (those already here are refused cheaply);
    // at the end the copies are reconciled one by one: a TCP state moved, a flow gone.
    expect(a.loaded).toEqual([
      ...[flow(1), flow(2), flow(3)].map(asResynced).map(injectLine),
      injectLine(flow(2, 'u')),
      injectLine(['x', ...stale.slice(1)] as WireEntry),
    ]);
    expect(a.server.expired).toBe(1);
    // Expiring a stale copy may have blocked one of the owner's flows (a reply-tuple clash): one more resync follows.
    await until(() => a.server.resyncs === 2, 5000);
    const b = await receiver({ kernel: [flow(1), stale], isOwner: true });
    sender(b.port, async () => [flow(1)]);
    await until(() => b.server.resyncs === 1);
    expect(b.server.expired).toBe(0);
  });

  it('several VIP groups: a resync expires only copies of the sender\'s groups — never another owner\'s, never a group owned here — and in-sync is per group', async () => {
    const other: Service = { ...svc, externalIP: '100.100.100.102', privateIP: '100.64.202.254', name: 'tenant' };
    const otherMark = serviceMark(other);
    const ofOther = (i: number) => Object.assign(flow(i), { 3: '100.100.100.102', 7: '100.64.202.254', 10: otherMark }) as WireEntry;
    const groups = (ownedHere: string[]) => ({ ofMark: (m: number) => (m === MARK ? 'default' : m === otherMark ? 'g1' : undefined), ownedHere: () => ownedHere });
    const run = async (ownedHere: string[], senderOwns: string[]) => {
      const loaded: string[] = [];
      const server = new SyncServer({
        keys: () => [KEY], deploymentId: DEPLOYMENT, peers: new Set([0]), listen: { ip: '127.0.0.1', port: 0 }, services: () => serviceIndex([svc, other]),
        injector: new Injector(async (chunks) => void loaded.push(...chunks.join('\n').split('\n'))),
        isOwner: () => ownedHere.length > 0, groups: groups(ownedHere),
        listOurs: async function* () { yield* [flow(9), ofOther(8)]; }, log: () => undefined,
      });
      await server.start();
      stops.push(() => server.stop());
      const port = (server as unknown as { server: { address: () => { port: number } } }).server.address().port;
      const s = new PeerStream({ keys: () => [KEY], deploymentId: DEPLOYMENT, selfIndex: 0, peer: { index: 1, ip: '127.0.0.1', port }, dump: async function* () { yield flow(1); }, log: () => undefined, ownedGroups: () => senderOwns });
      s.start();
      stops.push(() => s.stop());
      await until(() => server.resyncs >= 1);
      return { server, loaded };
    };
    // This instance owns nothing; the sender owns the default group: its stale copy goes, g1's (another owner's) stays.
    const a = await run([], ['default']);
    expect(a.loaded).toContain(injectLine(['x', ...flow(9).slice(1)] as WireEntry));
    expect(a.loaded.join('\n')).not.toContain('100.100.100.102');
    await until(() => a.server.inSyncFor('default'));
    expect(a.server.inSyncFor('g1')).toBe(false);
    // The sender still names g1 (a move under way), but g1 is owned here now: its flows here are never expired.
    const b = await run(['g1'], ['default', 'g1']);
    expect(b.server.expired).toBe(1);
    expect(b.loaded.join('\n')).not.toMatch(/^x tcp \S+ 100\.100\.100\.102 /m);
  });

  it('several VIP groups: an owner of one group that lacks another owner\'s service says so (not ready), where a single-group owner would not look', async () => {
    const { SessionSync } = await import('../../agent/sync/session-sync.ts');
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const make = (groups: boolean) =>
      new SessionSync({
        keys: () => [KEY], deploymentId: DEPLOYMENT, self: { index: 1, ip: '127.0.0.1', port }, peers: [{ index: 0, ip: '127.0.0.1' }],
        services: () => [], realtimePriority: 0, log: () => undefined,
        ...(groups ? { groups: { names: ['default', 'g1'], ofService: () => 'default' } } : {}),
      });
    for (const groups of [true, false]) {
      const sync = make(groups);
      await sync.start();
      stops.push(() => sync.stop());
      // This instance owns a group (as setOwner would say) and holds none of the services the other owner streams.
      (sync as unknown as { owner: boolean }).owner = true;
      const { s } = sender(port, async () => [flow(1), flow(2)]);
      await until(() => (sync as unknown as { server: SyncServer }).server.foreignFlows() === 2);
      expect(sync.foreignFlows(), `groups: ${groups}`).toBe(groups ? 2 : 0);
      s.stop();
      sync.stop();
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  it('refuses entries of other services, counts them, and loads the rest', async () => {
    const { server, loaded, port } = await receiver();
    const { s } = sender(port, async () => []);
    await until(() => s.inSync());
    s.offer(Object.assign([...flow(1)], { 3: '100.64.1.1' }) as WireEntry, Date.now());
    s.offer(flow(2), Date.now());
    await until(() => server.entries === 1);
    expect(server.rejected.get('foreign-flow')).toBe(1);
    expect(loaded.join('\n')).not.toContain('100.64.1.1');
  });

  it('a receiver without the owner’s service is not in sync; once the service arrives it asks for a resync and loads what it refused', async () => {
    let index = serviceIndex([]);
    const { server, loaded, port } = await receiver({ services: () => index });
    const { s } = sender(port, async () => [flow(1), flow(2)]);
    await until(() => server.foreignFlows() === 2);
    // Resynced, but every flow refused: its services differ from the owner's, so it is not in sync.
    expect(server.inSync()).toBe(false);
    expect(loaded.filter((l) => /^[nu] /.test(l))).toEqual([]);
    // kube-loxilb installs the service on it (as it does on an instance that comes back): the owner resends its table.
    index = INDEX;
    server.servicesChanged();
    await until(() => server.inSync() && server.resyncs >= 2);
    expect(server.foreignFlows()).toBe(0);
    expect(loaded).toContain(injectLine(asResynced(flow(1))));
    expect(loaded).toContain(injectLine(asResynced(flow(2))));
    // The owner hears the acknowledgements a moment after the receiver.
    await until(() => s.inSync());
  });

  it('asks for the resync by itself once its services match the owner’s, even when the change that brought them was not signalled (a second change within the ask interval) — once per digest, no loop', async () => {
    const ownerServices = servicesDigest([svc]);
    let index = serviceIndex([]);
    let mine = servicesDigest([]);
    const { server, loaded, port } = await receiver({ services: () => index, servicesDigest: () => mine });
    const { s } = sender(port, async () => [flow(1), flow(2)], { servicesDigest: () => ownerServices });
    await until(() => server.foreignFlows() === 2);
    // The service arrives; nobody calls servicesChanged().
    index = INDEX;
    mine = ownerServices;
    await until(() => server.inSync() && server.resyncs >= 2, 10_000);
    expect(server.foreignFlows()).toBe(0);
    expect(loaded).toContain(injectLine(asResynced(flow(1))));
    // The owner hears the acknowledgements a moment later.
    await until(() => s.inSync());
    const resyncs = server.resyncs;
    await new Promise((r) => setTimeout(r, 1500));
    expect(server.resyncs).toBe(resyncs);
  });

  it('a receiver whose services digest is not the owner’s is not in sync until they agree (an owner that sends none is not compared)', async () => {
    const ownerServices = servicesDigest([svc]);
    let mine = servicesDigest([]);
    const { server, port } = await receiver({ servicesDigest: () => mine });
    const { s } = sender(port, async () => [flow(1)], { servicesDigest: () => ownerServices });
    await until(() => server.resyncs >= 1 && server.connected().length === 1);
    await new Promise((r) => setTimeout(r, 200));
    expect(server.servicesDiffer()).toBe(true);
    expect(server.inSync()).toBe(false);
    mine = servicesDigest([svc]);
    await until(() => server.inSync());
    expect(server.servicesDiffer()).toBe(false);
    s.stop();
    // An owner of an older version sends no digest: nothing to compare, in sync as before.
    const other = await receiver({ servicesDigest: () => 'ffffffffffffffff' });
    sender(other.port, async () => [flow(1)]);
    await until(() => other.server.inSync());
    expect(other.server.servicesDiffer()).toBe(false);
  });

  it('lets in no peer with another key, another deployment or an unknown index: nothing loaded', async () => {
    const { server, loaded, port } = await receiver();
    const wrong = [sender(port, async () => [flow(1)], { key: Buffer.from('x'.repeat(48)) }), sender(port, async () => [flow(1)], { deploymentId: 'other' }), sender(port, async () => [flow(1)], { selfIndex: 5 })];
    await until(() => (server.rejected.get('bad-mac') ?? 0) >= 1 && (server.rejected.get('wrong-deployment') ?? 0) >= 1 && (server.rejected.get('unknown-peer') ?? 0) >= 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(loaded).toEqual([]);
    for (const w of wrong) expect(w.s.inSync()).toBe(false);
  });

  it('during a key rotation accepts a sender under the next key or the previous one, and after it only the keys it holds', async () => {
    const next = Buffer.from('n'.repeat(48));
    let ring: Buffer[] = [KEY, next];
    const { server, loaded, port } = await receiver({ keys: () => ring });
    // One peer already on the next key, one still on the previous: both stream.
    const early = sender(port, async () => [flow(1)], { key: next });
    await until(() => early.s.inSync() && loaded.includes(injectLine(asResynced(flow(1)))));
    early.s.stop();
    const late = sender(port, async () => [flow(2)], { key: KEY });
    await until(() => late.s.inSync() && loaded.includes(injectLine(asResynced(flow(2)))));
    late.s.stop();
    // The rotation over (the previous key dropped from the file): a sender under it is refused.
    ring = [next];
    const before = server.rejected.get('bad-mac') ?? 0;
    const stale = sender(port, async () => [flow(3)], { key: KEY });
    await until(() => (server.rejected.get('bad-mac') ?? 0) > before);
    expect(stale.s.inSync()).toBe(false);
    expect(loaded).not.toContain(injectLine(asResynced(flow(3))));
  });

  it('a receiver that restarts mid-stream gets a full resync; so does one after the sender restarts', async () => {
    let r = await receiver();
    const port = r.port;
    const table = [flow(1), flow(2), flow(3)];
    let { s } = sender(port, async () => table);
    await until(() => s.inSync());
    for (let i = 10; i < 20; i++) s.offer(flow(i), Date.now());
    r.server.stop();
    r = await receiverOn(port);
    await until(() => r.server.resyncs === 1 && s.inSync(), 8000);
    expect(r.loaded.slice(0, 3)).toEqual(table.map(asResynced).map(injectLine));
    expect(s.resyncs).toBe(2);
    s.stop();
    ({ s } = sender(port, async () => table));
    await until(() => r.server.resyncs === 2 && s.inSync());
  });

  it('after lost kernel events: keeps streaming live changes, says it is out of sync until the resync it owes is done', async () => {
    const { server, port } = await receiver();
    const { s } = sender(port, async () => [flow(1)]);
    await until(() => s.inSync());
    s.resyncNow();
    expect(s.inSync()).toBe(false);
    s.offer(flow(5, 'n'), Date.now());
    await until(() => server.entries === 2); // the live change went through before the resync
    expect(s.resyncs).toBe(1);
    expect(s.inSync()).toBe(false);
    await until(() => s.inSync(), 5000);
    expect(s.resyncs).toBe(2);
  });

  it('resyncs instead of dropping when the peer falls behind', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const loaded: string[] = [];
    const server = new SyncServer({ keys: () => [KEY], deploymentId: DEPLOYMENT, peers: new Set([0]), listen: { ip: '127.0.0.1', port: 0 }, services: () => INDEX, injector: new Injector(async (chunks) => (await gate, void loaded.push(...chunks.join('\n').split('\n')))), isOwner: () => false, listOurs: async function* () {}, log: () => undefined });
    await server.start();
    stops.push(() => server.stop());
    const port = (server as unknown as { server: { address: () => { port: number } } }).server.address().port;
    const table: WireEntry[] = [];
    const { s } = sender(port, async () => table);
    await until(() => s.state === 'streaming');
    // The kernel load is stuck: batches pile up unacknowledged until the stream gives up on them and resyncs.
    for (let i = 0; i < 1000 && s.overflows === 0; i++) {
      table.push(flow(i));
      s.offer(flow(i), Date.now());
      await new Promise((r) => setTimeout(r, 2 + 5));
    }
    expect(s.overflows).toBeGreaterThan(0);
    expect(s.inSync()).toBe(false);
    release();
    await until(() => s.inSync(), 20_000);
    // Every flow reached the receiver: through the stream or the resync that replaced it.
    const got = new Set(loaded.filter((l) => /^[nu] /.test(l)).map((l) => l.split(' ').slice(1, 6).join(' ')));
    for (const f of table) expect(got.has(injectLine(f).split(' ').slice(1, 6).join(' '))).toBe(true);
  }, 30_000);
});

/** A receiver on a given port (a restart of the same instance). */
async function receiverOn(port: number) {
  const loaded: string[] = [];
  for (let attempt = 0; ; attempt++) {
    const server = new SyncServer({ keys: () => [KEY], deploymentId: DEPLOYMENT, peers: new Set([0]), listen: { ip: '127.0.0.1', port }, services: () => INDEX, injector: new Injector(async (chunks) => void loaded.push(...chunks.join('\n').split('\n'))), isOwner: () => false, listOurs: async function* () {}, log: () => undefined });
    try {
      await server.start();
      stops.push(() => server.stop());
      return { server, loaded, port };
    } catch (e) {
      if (attempt > 20) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Opens a session as peer 0 by hand; returns a way to send raw frames. */
async function handshake(port: number, key = KEY): Promise<{ socket: Socket; codec: SessionCodec; closed: Promise<void>; raw: Buffer[] }> {
  const socket = connect({ host: '127.0.0.1', port });
  const reader = new FrameReader();
  const raw: Buffer[] = [];
  const closed = new Promise<void>((r) => socket.on('close', () => r()));
  socket.on('error', () => undefined);
  return new Promise((resolve) => {
    let codec: SessionCodec | undefined;
    socket.on('data', (chunk: Buffer) => {
      for (const f of reader.push(chunk)) {
        if (!codec) {
          const challenge = readChallenge(f);
          const n = newNonce();
          codec = new SessionCodec(key, challenge, n, 'sender');
          const hello = encodeHello(key, challenge, { d: DEPLOYMENT, from: 0, n });
          raw.push(hello);
          socket.write(hello);
        } else if (codec.decode(f).t === 'welcome') resolve({ socket, codec, closed, raw });
      }
    });
  });
}

describe('the sync channel under attack', () => {
  it('survives 10,000 fuzzed messages: no crash, nothing loaded, every one counted', async () => {
    const { server, loaded, port } = await receiver();
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const pick = <T,>(xs: T[]) => xs[Math.floor(rnd() * xs.length)]!;
    const junk = (): unknown =>
      pick<() => unknown>([
        () => ({ t: 'batch', e: [Object.assign([...flow(1)], { [Math.floor(rnd() * 14)]: pick<unknown>([null, -1, 'z', 1e20, [], {}, '-F']) })] }),
        () => ({ t: pick(['batch', 'resync-end', 'tick', 'nope', 7]), e: pick<unknown>([null, 'x', [[]], {}]) }),
        () => pick<unknown>([null, 1, 'x', [], { s: 'x' }]),
      ])();
    let sent = 0;
    let connections = 0;
    while (sent < 10_000) {
      const { socket, codec, closed } = await handshake(port);
      connections++;
      let open = true;
      void closed.then(() => (open = false));
      // Bad frames on one connection until the receiver ends the session (frames well formed but
      // with bad entries are refused entry by entry and the session goes on).
      for (let i = 0; i < 50 && sent < 10_000 && open; i++, sent++) {
        const kind = rnd();
        let frame: Buffer;
        if (kind < 0.3) frame = codec.encode(junk() as Record<string, unknown>);
        else if (kind < 0.5) {
          frame = codec.encode({ t: 'batch', e: [flow(i)] });
          { const at = 36 + Math.floor(rnd() * (frame.length - 36)); frame[at] = frame[at]! ^ (1 + Math.floor(rnd() * 254)); }
        } else if (kind < 0.7) {
          frame = Buffer.from(Array.from({ length: 1 + Math.floor(rnd() * 200) }, () => Math.floor(rnd() * 256)));
        } else {
          frame = Buffer.alloc(4);
          frame.writeUInt32BE(Math.floor(rnd() * 0xffffffff));
        }
        socket.write(frame);
        await new Promise((r) => setImmediate(r));
      }
      socket.end();
      await Promise.race([closed, new Promise((r) => setTimeout(r, 100))]);
      socket.destroy();
    }
    // Well-formed frames whose entries are bad are refused entry by entry; the rest end the session.
    // Every fuzzed entry has one field replaced by junk: none of them may reach the kernel.
    expect(loaded).toEqual([]);
    const rejected = [...server.rejected.values()].reduce((a, b) => a + b, 0);
    expect(rejected).toBeGreaterThanOrEqual(connections);
    // Still serving: a good peer gets in afterwards.
    const { s } = sender(port, async () => [flow(1)]);
    await until(() => s.inSync());
    // …and its one flow is loaded (so the empty list above is not a receiver that loads nothing).
    expect(loaded).toHaveLength(1);
    expect(loaded[0]).toMatch(new RegExp(`^u tcp 100\\.101\\.0\\.1 100\\.100\\.100\\.100 .* ${MARK} `));
  }, 120_000);

  it('refuses a replayed session, a replayed frame and a reordered frame', async () => {
    const { server, loaded, port } = await receiver();
    const a = await handshake(port);
    const f1 = a.codec.encode({ t: 'batch', e: [flow(1)] });
    const f2 = a.codec.encode({ t: 'batch', e: [flow(2)] });
    a.socket.write(f2); // out of order
    await a.closed;
    expect(server.rejected.get('replay')).toBe(1);
    // The whole first connection, replayed on a new one: the hello was MACed over another challenge.
    const b = connect({ host: '127.0.0.1', port });
    b.on('error', () => undefined);
    await new Promise((r) => b.once('data', r));
    b.write(Buffer.concat([...a.raw, f1, f2]));
    await new Promise((r) => b.on('close', r));
    expect(server.rejected.get('bad-mac')).toBe(1);
    // A frame sent twice within a live session.
    const c = await handshake(port);
    const g = c.codec.encode({ t: 'batch', e: [flow(3)] });
    c.socket.write(g);
    c.socket.write(g);
    await c.closed;
    expect(server.rejected.get('replay')).toBe(2);
    expect(loaded).toEqual([injectLine(flow(3))]);
  });
});


describe('the resync back-off', () => {
  it('spaces owed resyncs 1, 2, 4, 8, 8 s apart under a sustained overrun, and starts again at 1 s after a quiet period', () => {
    let interval = SYNC_MIN_RESYNC_INTERVAL_MS / 2;
    const waits: number[] = [];
    // Each resync owed the moment the previous one began.
    for (let i = 0; i < 5; i++) {
      const next = resyncBackoff(interval, 0);
      interval = next.intervalMs;
      waits.push(next.waitMs);
    }
    expect(waits).toEqual([1000, 2000, 4000, 8000, 8000]);
    expect(SYNC_MAX_RESYNC_INTERVAL_MS).toBe(8000);
    // Owed 3 s after a resync began with the interval at 8 s: waits the 5 s left.
    expect(resyncBackoff(8000, 3000)).toEqual({ intervalMs: 8000, waitMs: 5000 });
    // Quiet for longer than the interval plus 10 s: back to 1 s, and due at once.
    expect(resyncBackoff(8000, 18_001)).toEqual({ intervalMs: 1000, waitMs: 0 });
  });
});
