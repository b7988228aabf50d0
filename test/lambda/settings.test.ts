/** The failover function's settings, as the CDK app sets them in its environment: what is refused, and why. */
import { describe, expect, it } from 'vitest';
import { DEFAULT_GROUP, functionEnv } from '../../lib/contract.ts';
import { groupsOf, settingsFromEnv } from '../../lambda/failover/settings.ts';
import { SAMPLE_SETTINGS } from './fixtures/settings.ts';

const blue = { name: 'blue', vip: '100.64.249.254', eipAllocationId: 'eipalloc-0aaaaaaaaaaaaaaa1', cloudCidrBlock: '100.64.249.0/24', floatingRouteTableId: 'rtb-0aaaaaaaaaaaaaaa1' };
const env = (extra: Record<string, string> = {}) => ({ ...functionEnv(SAMPLE_SETTINGS), ...extra });

describe('settings from the environment', () => {
  it('one group without LOXIHA_GROUPS: the default group, from the single-VIP settings', () => {
    const s = settingsFromEnv(env());
    expect(s.group).toBe(DEFAULT_GROUP);
    expect(groupsOf(s)).toEqual([expect.objectContaining({ name: DEFAULT_GROUP, vip: SAMPLE_SETTINGS.vip, eipAllocationId: SAMPLE_SETTINGS.eipAllocationId })]);
  });

  it('several groups from LOXIHA_GROUPS, in order', () => {
    const s = settingsFromEnv(env(functionEnv({ groups: [{ ...blue, name: 'default', vip: SAMPLE_SETTINGS.vip, eipAllocationId: SAMPLE_SETTINGS.eipAllocationId, cloudCidrBlock: SAMPLE_SETTINGS.cloudCidrBlock, floatingRouteTableId: SAMPLE_SETTINGS.floatingRouteTableId }, blue] })));
    expect(groupsOf(s).map((g) => g.name)).toEqual(['default', 'blue']);
  });

  it.each([
    ['not JSON', '[{', /LOXIHA_GROUPS: not JSON/],
    ['an empty list', '[]', /LOXIHA_GROUPS/],
    ['a bad name', JSON.stringify([{ ...blue, name: 'Blue_1' }]), /a group name/],
    ['an unknown field', JSON.stringify([{ ...blue, vips: ['1.2.3.4'] }]), /LOXIHA_GROUPS/],
    ['two groups with one name', JSON.stringify([blue, { ...blue, vip: '100.64.250.254', eipAllocationId: 'eipalloc-0aaaaaaaaaaaaaaa2' }]), /group names must be distinct/],
    ['two groups with one VIP', JSON.stringify([blue, { ...blue, name: 'green', eipAllocationId: 'eipalloc-0aaaaaaaaaaaaaaa2' }]), /group VIPs must be distinct/],
    ['two groups with one EIP', JSON.stringify([blue, { ...blue, name: 'green', vip: '100.64.250.254' }]), /group EIPs must be distinct/],
    ['an eni group without its floating route table', JSON.stringify([{ ...blue, floatingRouteTableId: undefined }]), /LOXIHA_GROUPS\[0\]\.floatingRouteTableId: required by the eni strategy/],
  ])('refuses %s, saying which setting and why', (_what, groups, message) => {
    expect(() => settingsFromEnv(env({ LOXIHA_GROUPS: groups }))).toThrow(message);
    expect(() => settingsFromEnv(env({ LOXIHA_GROUPS: groups }))).toThrow(/failover function misconfigured/);
  });

  it('a route group needs its ingress addresses, and the route tables', () => {
    const route = { name: 'blue', vip: '100.127.1.10', eipAllocationId: 'eipalloc-0aaaaaaaaaaaaaaa1' };
    expect(() => settingsFromEnv(env({ LOXIHA_STRATEGY: 'route', LOXIHA_GROUPS: JSON.stringify([route]) }))).toThrow(/LOXIHA_GROUPS\[0\]\.ingressIps: required by the route strategy; LOXIHA_ROUTE_TABLE_IDS: required by the route strategy/);
    const ok = settingsFromEnv(env({ LOXIHA_STRATEGY: 'route', LOXIHA_ROUTE_TABLE_IDS: 'rtb-01', LOXIHA_GROUPS: JSON.stringify([{ ...route, ingressIps: ['100.64.218.21', '100.64.228.21'] }]) }));
    expect(groupsOf(ok)[0]!.ingressIps).toEqual(['100.64.218.21', '100.64.228.21']);
  });
});
