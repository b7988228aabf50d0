import { describe, expect, it } from 'vitest';
import { observeLocally } from '../../agent/ha/role.ts';
import { localVipCarrier, subnetRouter, vipFromMac, VipPath } from '../../agent/ha/vip-path.ts';

const VIP = '100.64.248.254';
const links = (withEni: boolean, up = true) => [
  { ifname: 'lo', address: '00:00:00:00:00:00', flags: ['UP'], addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }, { family: 'inet', local: VIP, prefixlen: 32 }] },
  { ifname: 'ens5', address: '0e:00:00:00:00:01', flags: ['UP', 'LOWER_UP'], addr_info: [{ family: 'inet', local: '100.64.0.10', prefixlen: 24 }] },
  ...(withEni ? [{ ifname: 'ens6', address: '0e:00:00:00:00:02', flags: up ? ['UP', 'LOWER_UP'] : [], addr_info: [{ family: 'inet', local: VIP, prefixlen: 24 }] }] : []),
];

/** A fake `ip`: keeps rules and the table's routes, answers the JSON the agent reads, records every change. */
function fakeIp(initial = links(true)) {
  let rules: unknown[] = [];
  let routes: { dst: string; gateway: string; dev: string }[] = [];
  let ls = initial;
  const changes: string[] = [];
  const calls = { n: 0 };
  const run = async (args: string[]) => {
    calls.n++;
    const a = args.join(' ');
    if (a.startsWith('-j rule show')) return JSON.stringify(rules);
    if (a.startsWith('-j route show')) return JSON.stringify(routes);
    if (a === '-j addr show') return JSON.stringify(ls);
    changes.push(a);
    if (a.startsWith('rule add')) rules = [{ priority: 7410 }];
    if (a.startsWith('rule del')) rules = [];
    if (a.startsWith('route replace')) routes = [{ dst: 'default', gateway: args[4]!, dev: args[6]! }];
    if (a.startsWith('route flush')) routes = [];
    return '';
  };
  return { run, changes, calls, setLinks: (l: typeof ls) => (ls = l) };
}

describe('where the VIP lives', () => {
  it('names the floating subnet’s router (network + 1)', () => {
    expect(subnetRouter(VIP, 24)).toBe('100.64.248.1');
    expect(subnetRouter('192.168.248.77', 28)).toBe('192.168.248.65');
    expect(subnetRouter(VIP, 32)).toBeUndefined();
  });

  it('away from AWS: the interface carrying the VIP, never loopback', () => {
    expect(localVipCarrier(VIP, links(true)).iface).toEqual({ ifname: 'ens6', prefixLength: 24, gateway: '100.64.248.1' });
    expect(localVipCarrier(VIP, links(false)).iface).toBeUndefined();
  });

  it('on AWS: the interface with the MAC IMDS names, in the subnet IMDS gives', () => {
    expect(vipFromMac(VIP, '0E:00:00:00:00:02', '100.64.248.0/24', links(true))).toEqual({ ifname: 'ens6', prefixLength: 24, gateway: '100.64.248.1' });
    expect(vipFromMac(VIP, '0e:00:00:00:00:09', '100.64.248.0/24', links(true))).toBeUndefined();
    expect(vipFromMac(VIP, '0e:00:00:00:00:02', 'garbage', links(true))).toBeUndefined();
  });

  it('away from AWS: an interface that is down, or without its carrier, or a /31–/32, carries nothing, and says why', () => {
    const eni = (flags: string[], prefixlen = 24) => [...links(false), { ifname: 'ens6', address: '0e:00:00:00:00:02', flags, addr_info: [{ family: 'inet', local: VIP, prefixlen }] }];
    expect(localVipCarrier(VIP, eni(['BROADCAST', 'MULTICAST']))).toEqual({ iface: undefined, notCarrying: [{ ifname: 'ens6', why: expect.stringMatching(/down/) }] });
    // Set up, but its other end is gone (NO-CARRIER): nothing arrives there either.
    expect(localVipCarrier(VIP, eni(['NO-CARRIER', 'BROADCAST', 'UP'])).iface).toBeUndefined();
    expect(localVipCarrier(VIP, eni(['UP', 'LOWER_UP'], 32))).toEqual({ iface: undefined, notCarrying: [{ ifname: 'ens6', why: expect.stringMatching(/\/32 there: only \/1–\/30 counts/) }] });
    // Loopback is never the VIP's path, and is not reported (the route strategy's alias lives there).
    expect(localVipCarrier(VIP, links(false)).notCarrying).toEqual([]);
  });

  it('away from AWS: the reason a host with the VIP is still BACKUP is logged once, and again only when it changes', async () => {
    const told: string[] = [];
    const ip = fakeIp([...links(false), { ifname: 'ens6', address: '0e:00:00:00:00:02', flags: ['UP', 'LOWER_UP'], addr_info: [{ family: 'inet', local: VIP, prefixlen: 32 }] }]);
    const observe = observeLocally(VIP, ip.run, (n) => told.push(`${n.ifname}: ${n.why.split(':')[0]}`));
    for (let i = 0; i < 3; i++) expect((await observe()).role).toBe('BACKUP');
    expect(told).toEqual(['ens6: the VIP is /32 there']);
    ip.setLinks(links(true, false));
    expect((await observe()).role).toBe('BACKUP');
    ip.setLinks(links(true, true));
    expect((await observe()).role).toBe('MASTER');
    expect(told).toEqual(['ens6: the VIP is /32 there', 'ens6: the interface is down (or has no carrier)']);
  });

  it('the role follows the interface: MASTER exactly while it is here', async () => {
    const ip = fakeIp();
    expect((await observeLocally(VIP, ip.run)()).role).toBe('MASTER');
    ip.setLinks(links(false));
    expect(await observeLocally(VIP, ip.run)()).toEqual({ role: 'BACKUP', iface: undefined });
  });
});

describe('the VIP’s path', () => {
  it('away from AWS never brings the interface up nor adds the VIP: they are the role’s signal, the operator’s or the failover’s', async () => {
    const ip = fakeIp([...links(false), { ifname: 'ens6', address: '0e:00:00:00:00:02', flags: ['BROADCAST'], addr_info: [] }]);
    const path = new VipPath({ vip: VIP, run: ip.run, announce: () => undefined });
    const iface = { ifname: 'ens6', prefixLength: 24, gateway: '100.64.248.1' };
    // The look that saw the VIP raced a delete by hand (or a link going down): only the rule and route follow, and go at the next look.
    await path.ensure(iface);
    expect(ip.changes.filter((c) => /^(link|addr)/.test(c))).toEqual([]);
    expect(await path.ensure(iface)).toBe(false);
    expect(await path.ensure(undefined)).toBe(true);
    expect(ip.changes.filter((c) => /^(link|addr)/.test(c))).toEqual([]);
  });

  it('routes marked flows through the VIP’s interface, once; announces the VIP once; removes exactly that', async () => {
    const ip = fakeIp(links(true, false));
    const announced: string[] = [];
    const path = new VipPath({ vip: VIP, run: ip.run, announce: (i, v) => announced.push(`${i} ${v}`), manageInterface: true });
    const iface = { ifname: 'ens6', prefixLength: 24, gateway: '100.64.248.1' };
    expect(await path.ensure(iface)).toBe(true);
    expect(ip.changes).toEqual(['link set ens6 up', 'route replace default via 100.64.248.1 dev ens6 table 7410 onlink', 'rule add fwmark 0x40000000/0x40000000 lookup 7410 priority 7410']);
    expect(announced).toEqual([`ens6 ${VIP}`]);
    ip.setLinks(links(true, true));
    ip.changes.length = 0;
    expect(await path.ensure(iface)).toBe(false);
    expect(ip.changes).toEqual([]);
    // A route deleted behind the agent's back is put back; the address too when net-utils did not add it.
    ip.setLinks([...links(false), { ifname: 'ens6', address: '0e:00:00:00:00:02', flags: ['UP'], addr_info: [] }]);
    expect(await path.ensure(iface)).toBe(true);
    expect(ip.changes).toContain(`addr replace ${VIP}/24 dev ens6`);
    expect(announced).toHaveLength(1);
    ip.changes.length = 0;
    expect(await path.ensure(undefined)).toBe(true);
    expect(ip.changes).toEqual(['rule del priority 7410', 'route flush table 7410']);
    // Known clean: a BACKUP's later looks run nothing.
    const before = ip.calls.n;
    expect(await path.ensure(undefined)).toBe(false);
    expect(ip.calls.n).toBe(before);
  });

  it('a restarted agent finds the path as it left it and changes nothing', async () => {
    const ip = fakeIp();
    const iface = { ifname: 'ens6', prefixLength: 24, gateway: '100.64.248.1' };
    await new VipPath({ vip: VIP, run: ip.run, announce: () => undefined }).ensure(iface);
    ip.changes.length = 0;
    const again = new VipPath({ vip: VIP, run: ip.run, announce: () => undefined });
    await again.ensure(iface);
    // Only the link and route are re-asserted (idempotent); the rule is not added twice.
    expect(ip.changes.filter((c) => c.startsWith('rule'))).toEqual([]);
  });
});
