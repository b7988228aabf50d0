import { describe, expect, it } from 'vitest';
import { worstCaseGroupsPerSlot } from '../../lib/capacity/group-capacity.ts';
import { knownInstanceLimits } from '../../lib/capacity/instance-limits.ts';
import { resolveConfig, slotCountOf, vipGroupsOf } from '../../lib/config.ts';
import { lbIngressIp, lbInstanceIp, lbInstanceIps } from '../../lib/topology.ts';
import { problemsOf } from '../helpers/config.ts';

const threeAzs = {
  availabilityZones: ['ap-northeast-3a', 'ap-northeast-3b', 'ap-northeast-3c'],
  lbSubnetCidrs: ['192.168.218.0/24', '192.168.228.0/24', '192.168.238.0/24'],
};
const eniGroups = (n: number) => Array.from({ length: n }, (_, k) => ({ name: `g${k + 1}`, vip: `192.168.${200 + k}.254`, cloudCidrBlock: `192.168.${200 + k}.0/24` }));
const routeGroups = (n: number) => Array.from({ length: n }, (_, k) => ({ name: `g${k + 1}`, vip: `100.127.${k + 1}.10` }));
const route = { strategy: 'route', vip: '100.127.0.10' };

describe('config: VIP groups', () => {
  it('keeps a configuration without groups as it was: one group, the top-level VIP, named default, on slot 0', () => {
    const c = resolveConfig('production');
    expect(vipGroupsOf(c)).toEqual([{ name: 'default', vip: '192.168.248.254', preferredSlot: 0, cloudCidrBlock: '192.168.248.0/24' }]);
    expect(slotCountOf(c)).toBe(2);
    expect(lbInstanceIps(c)).toEqual(['192.168.218.10', '192.168.228.10']);
  });

  it('lists the default group first, then the configured ones, spread over the slots by position unless preferred', () => {
    const c = resolveConfig('production', { ...threeAzs, instanceType: 'c7g.4xlarge', groups: [...eniGroups(2), { name: 'db', vip: '192.168.210.254', cloudCidrBlock: '192.168.210.0/24', preferredSlot: 0 }] });
    expect(vipGroupsOf(c).map((g) => [g.name, g.preferredSlot])).toEqual([
      ['default', 0],
      ['g1', 1],
      ['g2', 2],
      ['db', 0],
    ]);
  });

  it('places the k-th slot of a zone 100 addresses above the first, and each group its own ingress IP', () => {
    const c = resolveConfig('production', { ...threeAzs, ...route, slotsPerAz: 2, groups: routeGroups(3) });
    expect(lbInstanceIps(c)).toEqual(['192.168.218.10', '192.168.228.10', '192.168.238.10', '192.168.218.110', '192.168.228.110', '192.168.238.110']);
    expect(lbIngressIp(c, 0)).toBe('192.168.218.11');
    expect(lbIngressIp(c, 4, 2)).toBe('192.168.228.122');
    expect(lbInstanceIp(c, 5)).toBe('192.168.238.110');
  });

  it.each([
    [{ groups: [{ name: 'default', vip: '192.168.249.254', cloudCidrBlock: '192.168.249.0/24' }] }, 'groups.0.name: "default" is the group of the top-level vip'],
    [{ groups: [...eniGroups(1), { ...eniGroups(1)[0], vip: '192.168.201.254', cloudCidrBlock: '192.168.201.0/24' }] }, 'groups.1.name: "g1" is already a group\'s name'],
    [{ groups: [{ name: 'g1', vip: '192.168.248.254', cloudCidrBlock: '192.168.200.0/24' }] }, 'groups.0.vip: 192.168.248.254 is already the VIP of vip'],
    [{ groups: [{ name: 'g1', vip: '192.168.200.254' }] }, 'groups.0.cloudCidrBlock: required by strategy "eni"'],
    [{ groups: [{ name: 'g1', vip: '192.168.201.254', cloudCidrBlock: '192.168.200.0/24' }] }, 'groups.0.vip: 192.168.201.254 is not inside its cloudCidrBlock 192.168.200.0/24'],
    [{ groups: [{ name: 'g1', vip: '192.168.248.200', cloudCidrBlock: '192.168.248.128/25' }] }, 'groups.0.cloudCidrBlock: 192.168.248.128/25 overlaps cloudCidrBlock 192.168.248.0/24'],
    [{ groups: [{ name: 'g1', vip: '192.168.218.200', cloudCidrBlock: '192.168.218.128/25' }] }, 'overlaps lbSubnetCidrs.0 192.168.218.0/24'],
    [{ groups: [{ ...eniGroups(1)[0], preferredSlot: 2 }] }, 'groups.0.preferredSlot: there are 2 slots (0–1)'],
    [{ ...route, groups: [{ name: 'g1', vip: '192.168.1.10' }] }, 'groups.0.vip: 192.168.1.10 is inside the VPC CIDR 192.168.0.0/16'],
    [{ ...route, groups: [{ name: 'g1', vip: '100.127.1.10', cloudCidrBlock: '192.168.200.0/24' }] }, 'groups.0.cloudCidrBlock: only used by strategy "eni"'],
    [{ groups: [{ name: 'g1', vip: '192.168.200.254', cloudCidrBlock: '192.168.200.0/24', existingEip: { allocationId: 'eipalloc-0123456789abcdef0', publicIp: '198.51.100.1' } }], existingEip: { allocationId: 'eipalloc-0123456789abcdef0', publicIp: '198.51.100.1' } }, 'groups.0.existingEip: eipalloc-0123456789abcdef0 is already the EIP of existingEip'],
    [{ availabilityZones: [...threeAzs.availabilityZones, 'ap-northeast-3d'], lbSubnetCidrs: [...threeAzs.lbSubnetCidrs, '192.168.208.0/24'] }, 'availabilityZones: at most three availability zones'],
    [{ ...route, slotsPerAz: 3, lbSubnetCidrs: ['192.168.218.0/25', '192.168.228.0/24'] }, 'lbSubnetCidrs.0: 192.168.218.0/25 has 128 addresses; 3 slot(s) per zone'],
  ])('rejects %j with a message naming the field', (layer, message) => {
    expect(problemsOf(layer as Record<string, unknown>).join('\n')).toContain(message);
  });

  describe('AWS limits at synth, in the worst case (every group on the slots left after losing a zone)', () => {
    it('bounds a slot by the spread bound over the survivors', () => {
      expect(worstCaseGroupsPerSlot(20, 3, 2)).toBe(6); // 4 survivors: ⌈20/4⌉ + 1
      expect(worstCaseGroupsPerSlot(1, 2, 1)).toBe(1);
      expect(worstCaseGroupsPerSlot(3, 3, 1)).toBe(3); // ⌈3/2⌉ + 1
    });

    it('eni: interfaces per instance — the slot\'s two plus one loxi-eni per group it may hold', () => {
      // c7g.large attaches 3: one group fits (2 + 1), three over three zones may put 3 on a survivor.
      expect(problemsOf({})).toEqual([]);
      const three = problemsOf({ ...threeAzs, groups: eniGroups(2) });
      expect(three.join('\n')).toContain('groups: network interfaces per instance: c7g.large attaches 3, the eni strategy needs 5');
      // c7g.4xlarge attaches 8.
      expect(problemsOf({ ...threeAzs, instanceType: 'c7g.4xlarge', groups: eniGroups(2) })).toEqual([]);
    });

    it('route: addresses per interface, routes per table', () => {
      // c7g.large: 10 addresses per interface; 1 + 9 groups fit, 1 + 10 do not.
      expect(problemsOf({ ...threeAzs, ...route, groups: routeGroups(8), limits: { eipsPerRegion: 20 } })).toEqual([]);
      expect(problemsOf({ ...threeAzs, ...route, groups: routeGroups(9), limits: { eipsPerRegion: 20 } }).join('\n')).toContain('private IPv4 addresses per interface: c7g.large allows 10, the route strategy needs 11');
      expect(problemsOf({ ...threeAzs, ...route, instanceType: 'c7g.4xlarge', groups: routeGroups(5), limits: { eipsPerRegion: 20, routesPerTable: 7 } }).join('\n')).toContain('routes per route table: 7 (limits.routesPerTable), the route strategy needs 8');
    });

    it('EIPs: the groups\' and the NAT gateway\'s against the region quota', () => {
      expect(problemsOf({ ...threeAzs, ...route, groups: routeGroups(4) }).join('\n')).toContain('Elastic IPs per region: 5 (limits.eipsPerRegion), the stack allocates 6');
      const existing = routeGroups(4).map((g, k) => ({ ...g, existingEip: { allocationId: `eipalloc-0000000000000000${k}`, publicIp: `198.51.100.${k + 1}` } }));
      expect(problemsOf({ ...threeAzs, ...route, groups: existing })).toEqual([]);
    });

    it('an instance type it does not know needs its limits named, once there are several groups', () => {
      expect(knownInstanceLimits('x9z.large')).toBeUndefined();
      expect(problemsOf({ instanceType: 'x9z.large' })).toEqual([]);
      expect(problemsOf({ instanceType: 'x9z.large', groups: eniGroups(1) }).join('\n')).toContain("limits.instance: the network limits of x9z.large are not known to loxiha: set them (aws ec2 describe-instance-types");
      expect(problemsOf({ instanceType: 'x9z.large', groups: eniGroups(1), limits: { instance: { networkInterfaces: 4, ipv4PerInterface: 15 } } })).toEqual([]);
    });
  });
});
