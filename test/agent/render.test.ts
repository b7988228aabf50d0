import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { groupRouteMark, render, serviceMark } from '../../agent/datapath/render.ts';
import { maglevSlots, weightedSlots } from '../../agent/datapath/slots.ts';
import type { Service } from '../../agent/services/model.ts';
import { svc } from './fixtures/service.ts';
import { Lab } from '../../sim/netns.ts';
import { netnsAvailable } from '../harness/prerequisites.ts';

const GOLDEN = join(import.meta.dirname, 'golden');

const sample = () => [
  svc(),
  svc({ name: 'default_dns', protocol: 'udp', port: 53, sel: 1 }),
  svc({ name: 'default_admin', port: 8443, mode: 0, sel: 3, allowedSources: ['100.64.1.0/24', '100.64.7.7/32'] }),
  svc({ name: 'default_empty', port: 9000, endpoints: [] }),
  svc({ name: 'default_sticky', port: 8080, sel: 3, inactiveTimeOut: 600 }),
];

function golden(name: string, text: string): string {
  const file = join(GOLDEN, name);
  if (process.env.UPDATE_GOLDEN) writeFileSync(file, text);
  return readFileSync(file, 'utf8');
}

describe('render', () => {
  it('matches the golden ruleset', () => {
    const r = render({ table: 'loxiha', services: sample(), down: new Set(), hashSeed: 0x10a1ba });
    expect(r.text).toBe(golden('sample.nft', r.text));
  });

  it('matches the golden ruleset with a flowtable fast path (for kernels that have one)', () => {
    const r = render({ table: 'loxiha', services: [svc()], down: new Set(), hashSeed: 0x10a1ba, flowtableDevices: ['eth0', 'eth1'] });
    expect(r.text).toBe(golden('flowtable.nft', r.text));
  });

  it('does not depend on the order services or endpoints arrive in', () => {
    const a = render({ table: 'loxiha', services: sample(), down: new Set(), hashSeed: 1 });
    const shuffled = sample().reverse().map((s) => ({ ...s, endpoints: [...s.endpoints].reverse() }));
    expect(render({ table: 'loxiha', services: shuffled, down: new Set(), hashSeed: 1 }).hash).toBe(a.hash);
  });

  it('keeps the per-packet path and the chain count flat, whatever the number of services', () => {
    const many = Array.from({ length: 500 }, (_, i) => svc({ port: 1000 + i }));
    const r = render({ table: 'loxiha', services: many, down: new Set(), hashSeed: 1 });
    expect(r.text.match(/vmap @services/g)).toHaveLength(1);
    // 500 round-robin services over the same slot count share one chain: the DNAT rule and a slot-miss guard.
    const chains = [...r.text.matchAll(/\tchain (\w+) \{\n([^}]*)\}/g)].map((m) => [m[1]!, m[2]!.trim().split('\n').length] as const);
    const groupChains = chains.filter(([n]) => !['filter_pre', 'nat_pre', 'nat_post', 'filter_post', 'route_mark'].includes(n));
    // The base chains do not grow with services either: one rule each for sync events and the route mark.
    expect(chains.filter(([n]) => n === 'route_mark')).toEqual([['route_mark', 2]]); // the hook line and one rule (one VIP group: no group marks)
    expect(groupChains).toEqual([['rr_tcp_4', 2]]);
    expect(r.text.match(/ : jump rr_tcp_4/g)).toHaveLength(1000);
  });

  it('leaves a down endpoint out of the slots and drops when none is live', () => {
    const s = svc();
    const down = new Set([`100.100.100.100|80|tcp#100.64.2.103:30080`]);
    const r = render({ table: 'loxiha', services: [s], down, hashSeed: 1 });
    expect(r.text).not.toMatch(/: 100\.64\.2\.103 \. 30080/);
    expect(r.text).toContain('100.64.248.254 . tcp . 80 : jump rr_tcp_2');
    const none = render({ table: 'loxiha', services: [s], down: new Set(s.endpoints.map((e) => `100.100.100.100|80|tcp#${e.ip}:${e.port}`)), hashSeed: 1 });
    expect(none.text).toContain('100.64.248.254 . tcp . 80 : drop');
  });

  it('carries counter values over a table replace', () => {
    const mark = `0x${serviceMark(svc()).toString(16)}`;
    const r = render({ table: 'loxiha', services: [svc()], down: new Set(), hashSeed: 1, counters: new Map([[`${mark} . 100.64.2.101`, { packets: 3, bytes: 30 }]]) });
    expect(r.text).toContain(`${mark} . 100.64.2.101 counter packets 3 bytes 30`);
    expect(r.text).toMatch(new RegExp(`${mark} \\. 100\\.64\\.2\\.102(,|\\s)`));
    expect(r.hash).toBe(render({ table: 'loxiha', services: [svc()], down: new Set(), hashSeed: 1 }).hash);
  });
});

describe('slots', () => {
  const eps = (n: number) => Array.from({ length: n }, (_, i) => ({ ip: `100.64.2.${100 + i}`, port: 8080, weight: 1 }));

  it('weighted round-robin interleaves by weight', () => {
    const s = weightedSlots([{ ip: 'a', port: 1, weight: 1 }, { ip: 'b', port: 1, weight: 3 }]).map((e) => e.ip);
    expect(s).toEqual(['b', 'a', 'b', 'b']);
  });

  it('maglev is balanced and moves only the failed endpoint’s slots', () => {
    const full = maglevSlots(eps(5));
    const counts = full.reduce<Record<string, number>>((m, e) => ((m[e.ip] = (m[e.ip] ?? 0) + 1), m), {});
    for (const c of Object.values(counts)) expect(c).toBeGreaterThanOrEqual(45);
    const without = maglevSlots(eps(5).filter((e) => e.ip !== '100.64.2.102'));
    const moved = full.filter((e, i) => e.ip !== '100.64.2.102' && without[i]!.ip !== e.ip).length;
    expect(moved / full.length).toBeLessThan(0.1);
  });

  it('maglev is the same on every machine for the same endpoint set', () => {
    expect(maglevSlots(eps(3)).map((e) => e.ip)).toEqual(maglevSlots([...eps(3)].reverse()).map((e) => e.ip));
  });
});

describe.skipIf(!netnsAvailable)('golden rulesets load into a real kernel', () => {
  it('nft accepts them (in a namespace of this test)', async () => {
    const lab = new Lab();
    try {
      execFileSync('ip', ['netns', 'add', lab.ns('nft')]);
      lab.namespaces.push(lab.ns('nft'));
      execFileSync('ip', ['netns', 'exec', lab.ns('nft'), 'nft', '-f', join(GOLDEN, 'sample.nft')]);
      const listed = execFileSync('ip', ['netns', 'exec', lab.ns('nft'), 'nft', 'list', 'table', 'ip', 'loxiha'], { encoding: 'utf8' });
      expect(listed).toContain('vmap @services');
      expect(listed).toMatch(/seed 0x0*10a1ba/);
    } finally {
      await lab.stop();
    }
  });

  it('marks each VIP group\'s flows for its own path: a service of group 2 maps to its mark, the default group\'s to none', async () => {
    const other = svc({ name: 'tenant_b', externalIP: '100.100.100.102', privateIP: '100.64.202.254' });
    const r = render({ table: 'loxiha', services: [svc(), other], down: new Set(), hashSeed: 1, routeMarkOf: (s) => (s.externalIP === '100.100.100.102' ? groupRouteMark(2) : undefined) });
    const lab = new Lab();
    try {
      execFileSync('ip', ['netns', 'add', lab.ns('nft')]);
      lab.namespaces.push(lab.ns('nft'));
      execFileSync('ip', ['netns', 'exec', lab.ns('nft'), 'nft', '-f', '-'], { input: r.text });
      const json = JSON.parse(execFileSync('ip', ['netns', 'exec', lab.ns('nft'), 'nft', '-j', 'list', 'map', 'ip', 'loxiha', 'route_marks'], { encoding: 'utf8' })) as { nftables: { map?: { elem?: [number, number][] } }[] };
      const elems = json.nftables.find((o) => o.map)!.map!.elem ?? [];
      expect(elems).toEqual([[serviceMark(other), 0x02000000]]);
    } finally {
      await lab.stop();
    }
  });
});

/**
 * What the kernel holds after loading a rendered table, read back with `nft -j` and checked against
 * the services as written (not against render's own output, as the golden files are): for each
 * VIP:port, the verdict, the endpoints its slots hold (and how many slots each), the SNAT address.
 */
function kernelView(nsName: string) {
  const json = JSON.parse(execFileSync('ip', ['netns', 'exec', nsName, 'nft', '-j', 'list', 'table', 'ip', 'loxiha'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as { nftables: { map?: { name: string; elem?: [any, any][] } }[] };
  const maps = new Map(json.nftables.filter((o) => o.map).map((o) => [o.map!.name, o.map!.elem ?? []]));
  const key = (k: any) => (k.concat as (string | number)[]).slice(0, 3).join(' ');
  const verdicts = new Map(maps.get('services')!.map(([k, v]) => [key(k), v.drop !== undefined ? 'drop' : `jump ${v.jump.target}`]));
  const marks = new Map(maps.get('marks')!.map(([k, v]) => [key(k), v as number]));
  const snat = new Map(maps.get('snat_to')!.map(([k, v]) => [k as number, v as string]));
  const timeouts = new Map((maps.get('timeouts') ?? []).map(([k, v]) => [key(k), v.jump.target as string]));
  const slots = new Map<string, Record<string, number>>();
  for (const [name, elems] of maps) {
    if (!name.startsWith('slots_')) continue;
    for (const [k, v] of elems) {
      const ep = (v.concat as (string | number)[]).join(':');
      const counts = slots.get(key(k)) ?? {};
      counts[ep] = (counts[ep] ?? 0) + 1;
      slots.set(key(k), counts);
    }
  }
  return (vip: string, proto: string, port: number) => {
    const k = `${vip} ${proto} ${port}`;
    const mark = marks.get(k);
    return { verdict: verdicts.get(k), slots: slots.get(k) ?? {}, snat: mark === undefined ? undefined : snat.get(mark), idle: timeouts.get(k) };
  };
}

describe.skipIf(!netnsAvailable)('what the kernel holds means what the services say (nft -j, independent of the golden text)', () => {
  it('maps each VIP:port to its endpoints in their weights, with the SNAT address of full-NAT only, drops a service with none', async () => {
    const lab = new Lab();
    try {
      execFileSync('ip', ['netns', 'add', lab.ns('json')]);
      lab.namespaces.push(lab.ns('json'));
      const down = new Set(['100.100.100.100|8080|tcp#100.64.2.102:30080']);
      execFileSync('ip', ['netns', 'exec', lab.ns('json'), 'nft', '-f', '-'], { input: render({ table: 'loxiha', services: sample(), down, hashSeed: 0x10a1ba }).text });
      const at = kernelView(lab.ns('json'));
      const [E1, E2, E3] = ['100.64.2.101:30080', '100.64.2.102:30080', '100.64.2.103:30080'];
      for (const vip of ['100.64.248.254', '100.100.100.100']) {
        // default_web: round-robin over weights 1:1:2, full-NAT to its private IP.
        const web = at(vip, 'tcp', 80);
        expect(web.verdict).toMatch(/^jump /);
        expect(Object.keys(web.slots).sort()).toEqual([E1, E2, E3]);
        expect(web.slots[E3]).toBe(2 * web.slots[E1]!);
        expect(web.slots[E2]).toBe(web.slots[E1]);
        expect(web.snat).toBe('100.64.248.254');
        // default_dns: a consistent hash over the same three, the weight-2 one with the largest share.
        const dns = at(vip, 'udp', 53);
        expect(Object.keys(dns.slots).sort()).toEqual([E1, E2, E3]);
        expect(dns.slots[E3]!).toBeGreaterThan(Math.max(dns.slots[E1]!, dns.slots[E2]!));
        expect(dns.snat).toBe('100.64.248.254');
        // default_admin: DNAT only (mode 0): no SNAT for its flows.
        const admin = at(vip, 'tcp', 8443);
        expect(Object.keys(admin.slots).length).toBeGreaterThan(0);
        expect(admin.snat).toBeUndefined();
        // default_empty: no endpoint, new connections dropped (not answered by the host).
        expect(at(vip, 'tcp', 9000)).toMatchObject({ verdict: 'drop', slots: {} });
        // default_sticky: its idle timeout applies; the endpoint marked down holds no slot.
        const sticky = at(vip, 'tcp', 8080);
        expect(sticky.idle).toBe('idle_tcp_600');
        expect(Object.keys(sticky.slots).sort()).toEqual([E1, E3]);
        // Nothing else is served.
        expect(at(vip, 'tcp', 81).verdict).toBeUndefined();
      }
    } finally {
      await lab.stop();
    }
  });
});

describe.skipIf(!netnsAvailable)('incremental changes', () => {
  it('a diff applied on top of A leaves the kernel exactly as a full load of B would', async () => {
    const { diffText, fullText, renderModel } = await import('../../agent/datapath/render.ts');
    const lab = new Lab();
    const a = sample();
    const b = [
      ...sample().slice(1, 3),
      svc({ name: 'default_new', port: 7000, endpoints: [{ ip: '100.64.2.104', port: 31000, weight: 1 }] }),
      { ...sample()[0]!, endpoints: sample()[0]!.endpoints.slice(1) },
    ];
    const model = (services: Service[]) => renderModel({ table: 'loxiha', services, down: new Set(), hashSeed: 7 });
    try {
      for (const n of ['diff', 'full']) {
        execFileSync('ip', ['netns', 'add', lab.ns(n)]);
        lab.namespaces.push(lab.ns(n));
      }
      const nft = (n: string, text: string) => execFileSync('ip', ['netns', 'exec', lab.ns(n), 'nft', '-f', '-'], { input: text });
      nft('diff', fullText(model(a), 'loxiha'));
      const diff = diffText(model(a), model(b), 'loxiha')!;
      expect((diff.phase1 + diff.phase2).split('\n').length).toBeLessThan(40);
      // After phase 1 alone the kernel still holds every old slot (a packet that saw the old service map finds them).
      nft('diff', diff.phase1);
      const between = execFileSync('ip', ['netns', 'exec', lab.ns('diff'), 'nft', 'list', 'table', 'ip', 'loxiha'], { encoding: 'utf8' });
      expect(between).toContain('100.64.2.101 . 30080');
      nft('diff', diff.phase2);
      nft('full', fullText(model(b), 'loxiha'));
      const list = (n: string) =>
        execFileSync('ip', ['netns', 'exec', lab.ns(n), 'nft', 'list', 'table', 'ip', 'loxiha'], { encoding: 'utf8' })
          .split('\n')
          .map((l) => l.trim())
          .sort();
      expect(list('diff')).toEqual(list('full'));
      expect(diffText(model(b), model(b), 'loxiha')).toEqual({ phase1: '', phase2: '' });
    } finally {
      await lab.stop();
    }
  });
});
