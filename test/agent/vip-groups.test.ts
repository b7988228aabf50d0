import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../agent/config.ts';
import { fastPathDecision } from '../../agent/ha/fast-path.ts';
import { GroupRoles } from '../../agent/ha/group-roles.ts';
import { RoleWatcher } from '../../agent/ha/role.ts';
import { pathSlotOf } from '../../agent/ha/vip-path.ts';
import { agentVipGroups, groupAliases, groupDestinationRewrites, groupOfService, servedOnGroupVip } from '../../agent/ha/vip-groups.ts';
import { loadbalanceEntrySchema, toService } from '../../agent/api/schemas.ts';

const base = { deploymentId: 'sim', instanceIndex: 0, selfIp: '100.64.218.10', cloudCidrBlock: '100.64.248.0/24', vip: '100.127.0.10', publicIp: '198.51.100.1' };
const route = parseAgentConfig({
  ...base,
  strategy: 'route',
  ingressIp: '100.64.218.11',
  peers: [{ index: 1, ip: '100.64.228.10', ingressIp: '100.64.228.11' }, { index: 2, ip: '100.64.238.10', ingressIp: '100.64.238.11' }],
  groups: [{ name: 'g1', vip: '100.127.1.10', publicIp: '198.51.100.2', ingressIp: '100.64.218.21', peerIngressIps: { '1': '100.64.228.21', '2': '100.64.238.21' } }],
});
// kube-loxilb sends every pool's services with its one --privateCIDR (the default group's VIP).
const fromKubeLoxilb = (externalIP: string) => toService(loadbalanceEntrySchema.parse({ serviceArguments: { externalIP, privateIP: '100.127.0.10', port: 80, protocol: 'tcp', mode: 2, name: 'web' }, endpoints: [{ endpointIP: '100.64.2.11', targetPort: 8080, weight: 1 }] }));

describe('VIP groups on the agent', () => {
  const groups = agentVipGroups(route);

  it('lists the default group first, each at its position, with its path slot (the default keeps 7410 and its mark)', () => {
    expect(groups.map((g) => [g.name, g.position, g.vip])).toEqual([
      ['default', 0, '100.127.0.10'],
      ['g1', 1, '100.127.1.10'],
    ]);
    expect(pathSlotOf(0)).toEqual({ table: 7410, priority: 7410, mark: 0x40000000, mask: 0x40000000 });
    expect(pathSlotOf(1)).toEqual({ table: 7411, priority: 7411, mark: 0x01000000, mask: 0x1f000000 });
  });

  it('serves a service of a group\'s EIP on that group\'s VIP, whatever privateIP kube-loxilb sent; the default group\'s as sent', () => {
    const g1 = fromKubeLoxilb('198.51.100.2');
    expect(groupOfService(g1, groups).name).toBe('g1');
    expect(servedOnGroupVip(g1, groups).privateIP).toBe('100.127.1.10');
    const def = fromKubeLoxilb('198.51.100.1');
    expect(servedOnGroupVip(def, groups)).toBe(def);
    // A service named by the group's VIP itself belongs to it; an unknown address to the default group.
    expect(groupOfService({ externalIP: '100.127.1.10', privateIP: undefined }, groups).name).toBe('g1');
    expect(groupOfService({ externalIP: '203.0.113.9', privateIP: undefined }, groups).name).toBe('default');
  });

  it('route: each group answers at its own ingress IP here, and peers\' ingress IPs in synced flows become ours', () => {
    expect([...groupAliases(groups, 'route')]).toEqual([
      ['100.127.0.10', ['100.64.218.11']],
      ['100.127.1.10', ['100.64.218.21']],
    ]);
    expect(groupDestinationRewrites(groups)).toEqual(
      new Map([
        ['100.64.228.11', '100.64.218.11'],
        ['100.64.238.11', '100.64.218.11'],
        ['100.64.228.21', '100.64.218.21'],
        ['100.64.238.21', '100.64.218.21'],
      ]),
    );
  });

  it('refuses a config whose groups repeat a name or VIP, or lack what the strategy needs', () => {
    const bad = (groupsIn: unknown[]) => () => parseAgentConfig({ ...base, strategy: 'route', ingressIp: '100.64.218.11', peers: [], groups: groupsIn });
    expect(bad([{ name: 'default', vip: '100.127.1.10', publicIp: '198.51.100.2', ingressIp: '100.64.218.21' }])).toThrow(/groups\.0\.name/);
    expect(bad([{ name: 'g1', vip: '100.127.0.10', publicIp: '198.51.100.2', ingressIp: '100.64.218.21' }])).toThrow(/groups\.0\.vip: 100\.127\.0\.10 is already a group's VIP/);
    expect(bad([{ name: 'g1', vip: '100.127.1.10', publicIp: '198.51.100.2' }])).toThrow(/groups\.0\.ingressIp/);
    expect(bad([{ name: 'g1', vip: '100.127.1.10', ingressIp: '100.64.218.21' }])).toThrow(/groups\.0\.publicIp/);
  });

  it('is MASTER while it owns any group, BACKUP once every group is elsewhere, unknown before', async () => {
    const where = new Map<string, 'MASTER' | 'BACKUP'>();
    const roles = new GroupRoles(groups, (g) => new RoleWatcher({ observe: async () => ({ role: where.get(g.name) ?? 'BACKUP', iface: undefined }), intervalMs: 1000, onChange: () => undefined, onError: () => undefined }));
    expect(roles.current).toBeUndefined();
    where.set('g1', 'MASTER');
    for (const w of roles.watchers) await w.watcher.check();
    expect(roles.current).toBe('MASTER');
    expect(roles.owned()).toEqual(['g1']);
    expect(roles.rows()).toEqual([
      { group: 'default', vip: '100.127.0.10', state: 'BACKUP' },
      { group: 'g1', vip: '100.127.1.10', state: 'MASTER' },
    ]);
    where.set('g1', 'BACKUP');
    for (const w of roles.watchers) await w.watcher.check();
    expect(roles.current).toBe('BACKUP');
  });

  it('fast path with several groups: any agent that loses an owner asks for its groups to move, whatever it owns itself', () => {
    const lost = { role: 'MASTER' as const, instanceId: 'i-0123456789abcdef0' };
    expect(fastPathDecision(lost, 'MASTER').invoke).toBe(false);
    expect(fastPathDecision(lost, 'MASTER', true)).toEqual({ invoke: true, request: { action: 'failover', from: 'i-0123456789abcdef0', reason: 'peer-heartbeat-lost' } });
  });
});
