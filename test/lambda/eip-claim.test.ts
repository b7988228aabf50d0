import { describe, expect, it } from 'vitest';
import { chooseAddress, claimAddress } from '../../lambda/eip-claim/claim.ts';

describe('EIP claim: which address', () => {
  it('prefers the one in use, then the lowest allocation id; none found: allocates, tagged', async () => {
    const a = { allocationId: 'eipalloc-b', publicIp: '100.100.0.2', associated: false, group: 'default' };
    const b = { allocationId: 'eipalloc-c', publicIp: '100.100.0.3', associated: true, group: 'default' };
    const c = { allocationId: 'eipalloc-a', publicIp: '100.100.0.1', associated: false, group: 'default' };
    expect(chooseAddress([a, b, c])).toBe(b);
    expect(chooseAddress([a, c])).toBe(c);
    expect(chooseAddress([])).toBeUndefined();
    const logs: string[] = [];
    const tags: Record<string, string>[] = [];
    const store = { tagged: async () => [a, c], allocate: async (t: Record<string, string>) => (tags.push(t), { allocationId: 'eipalloc-new', publicIp: '100.100.0.9', associated: false, group: t['loxiha:group'] ?? 'default' }) };
    expect(await claimAddress(store, 'dep', 'loxiha-dep', (m) => logs.push(m))).toMatchObject({ allocationId: 'eipalloc-a', reused: true });
    expect(logs[0]).toMatch(/more than one EIP/);
    const none = { ...store, tagged: async () => [] };
    expect(await claimAddress(none, 'dep', 'loxiha-dep', () => {})).toMatchObject({ allocationId: 'eipalloc-new', reused: false });
    expect(tags).toEqual([{ 'loxiha:deployment': 'dep', 'loxiha:role': 'eip', Name: 'loxiha-dep' }]);
  });

  it('gives each VIP group its own EIP: never another group\'s, a new one tagged with the group', async () => {
    const def = { allocationId: 'eipalloc-a', publicIp: '100.100.0.1', associated: true, group: 'default' };
    const g1 = { allocationId: 'eipalloc-b', publicIp: '100.100.0.2', associated: false, group: 'g1' };
    const tags: Record<string, string>[] = [];
    const store = { tagged: async () => [def, g1], allocate: async (t: Record<string, string>) => (tags.push(t), { allocationId: 'eipalloc-new', publicIp: '100.100.0.9', associated: false, group: t['loxiha:group'] ?? 'default' }) };
    expect(await claimAddress(store, 'dep', 'n', () => {})).toMatchObject({ allocationId: 'eipalloc-a', reused: true });
    expect(await claimAddress(store, 'dep', 'n-g1', () => {}, 'g1')).toMatchObject({ allocationId: 'eipalloc-b', reused: true });
    expect(await claimAddress(store, 'dep', 'n-g2', () => {}, 'g2')).toMatchObject({ allocationId: 'eipalloc-new', reused: false });
    expect(tags).toEqual([{ 'loxiha:deployment': 'dep', 'loxiha:role': 'eip', Name: 'n-g2', 'loxiha:group': 'g2' }]);
  });
});
