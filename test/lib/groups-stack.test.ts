/** Several VIP groups over three availability zones: what `cdk deploy` builds for each strategy. */
import { describe, expect, it } from 'vitest';
import { groupsOf, settingsFromEnv } from '../../lambda/failover/settings.ts';
import { synthStack } from '../helpers/stack.ts';

/**
 * The function's environment as Lambda would see it: CloudFormation's joins resolved, each reference
 * standing for an id of its kind (what the stack would give at deploy).
 */
function deployedEnv(env: Record<string, unknown>): NodeJS.ProcessEnv {
  const seen = new Map<string, number>();
  const value = (v: unknown): string => {
    if (typeof v === 'string') return v;
    const o = v as Record<string, unknown>;
    if (o['Fn::Join']) return ((o['Fn::Join'] as [string, unknown[]])[1]).map(value).join((o['Fn::Join'] as [string])[0]);
    const text = JSON.stringify(o);
    // The same reference resolves to the same id.
    if (!seen.has(text)) seen.set(text, seen.size + 1);
    const n = seen.get(text)!;
    if (text.includes('AllocationId') || text.includes('Eip')) return `eipalloc-0000000000000000${n % 10}`;
    if (text.includes('RouteTable')) return `rtb-0000000000000000${n % 10}`;
    if (text.includes('Vpc')) return 'vpc-00000000000000001';
    return `resolved-${n}`;
  };
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, value(v)]));
}

const THREE_AZS = { availabilityZones: ['us-east-1a', 'us-east-1b', 'us-east-1c'], lbSubnetCidrs: ['100.64.218.0/24', '100.64.228.0/24', '100.64.238.0/24'] };
type Resources = Record<string, { Type: string; Properties: Record<string, any> }>;
const statements = (resources: Resources) =>
  Object.values(resources)
    .filter((r) => r.Type === 'AWS::IAM::Policy')
    .flatMap((p) => p.Properties.PolicyDocument.Statement as { Sid?: string; Action: string | string[]; Resource: unknown }[]);

describe('VIP groups (CDK): route, three zones, three groups', () => {
  const { template, stack } = synthStack({ ...THREE_AZS, strategy: 'route', vip: '100.127.0.10', groups: [{ name: 'g1', vip: '100.127.1.10' }, { name: 'tenant-b', vip: '100.127.2.10', preferredSlot: 0 }] });
  const resources = (template.toJSON() as { Resources: Resources }).Resources;
  const byType = (t: string) => Object.entries(resources).filter(([, r]) => r.Type === t);
  const env = stack.resolve((stack.failover.fn.node.defaultChild as any).environment).variables;

  it('makes a slot per zone, each slot interface holding an ingress IP per group', () => {
    expect(byType('AWS::AutoScaling::AutoScalingGroup')).toHaveLength(3);
    const addresses = byType('AWS::EC2::NetworkInterface').map(([, r]) => r.Properties.PrivateIpAddresses.map((a: { PrivateIpAddress: string }) => a.PrivateIpAddress));
    expect(addresses).toEqual([
      ['100.64.218.10', '100.64.218.11', '100.64.218.21', '100.64.218.22'],
      ['100.64.228.10', '100.64.228.11', '100.64.228.21', '100.64.228.22'],
      ['100.64.238.10', '100.64.238.11', '100.64.238.21', '100.64.238.22'],
    ]);
  });

  it('claims an EIP per group (the default group\'s claim keeps its id) and lets the function move only those', () => {
    const claims = byType('Custom::LoxihaEip');
    expect(claims.map(([, r]) => r.Properties.Group ?? 'default').sort()).toEqual(['default', 'g1', 'tenant-b']);
    expect(claims.map(([id]) => id)).toContain(stack.getLogicalId(stack.node.findChild('EipClaim').node.findChild('Resource').node.defaultChild as any));
    const move = statements(resources).find((s) => s.Sid === 'MoveTheGroupsEips')!;
    expect(move.Resource).toHaveLength(3);
    expect(statements(resources).find((s) => s.Sid === 'MoveTheOneEip')).toBeUndefined();
  });

  it('gives the function every group: VIP, EIP, first slot and ingress IPs per slot', () => {
    expect(env.LOXIHA_SLOT_COUNT).toBe('3');
    const groups = JSON.stringify(env.LOXIHA_GROUPS);
    for (const s of ['\\"name\\":\\"default\\"', '\\"name\\":\\"g1\\"', '\\"vip\\":\\"100.127.2.10\\"', '\\"ingressIps\\":[\\"100.64.218.22\\",\\"100.64.228.22\\",\\"100.64.238.22\\"]', '\\"preferredSlot\\":1']) expect(groups).toContain(s);
  });

  it('its LOXIHA_GROUPS is what the function accepts: every group with its VIP, EIP, first slot and ingress IPs', () => {
    const settings = settingsFromEnv(deployedEnv(env));
    expect(groupsOf(settings).map((g) => [g.name, g.vip, g.preferredSlot, g.ingressIps])).toEqual([
      ['default', '100.127.0.10', 0, ['100.64.218.11', '100.64.228.11', '100.64.238.11']],
      ['g1', '100.127.1.10', 1, ['100.64.218.21', '100.64.228.21', '100.64.238.21']],
      ['tenant-b', '100.127.2.10', 0, ['100.64.218.22', '100.64.228.22', '100.64.238.22']],
    ]);
    expect(settings.slotCount).toBe(3);
  });

  it('writes kube-loxilb a pool per group: defaultPool for Services without poolSelect, the others by name', () => {
    const args = stack.resolve(stack.cluster.kubeLoxilbArgs);
    const json = JSON.stringify(args);
    expect(json).not.toContain('--externalCIDR');
    expect(json).toMatch(/--cidrPools=defaultPool=.*\/32,g1=.*\/32,tenant-b=.*\/32/);
    expect(json).toContain('--privateCIDR=100.127.0.10/32');
  });

  it('writes each agent its groups: VIP, EIP, its own ingress IP and the peers\' for each', () => {
    const userData = JSON.stringify(byType('AWS::EC2::LaunchTemplate').map(([, r]) => r.Properties.LaunchTemplateData.UserData));
    // Slot 1's agent: g1's ingress IP here is 100.64.228.21, its peers' 100.64.218.21 and 100.64.238.21.
    expect(userData).toContain('\\"name\\":\\"g1\\",\\"vip\\":\\"100.127.1.10\\"');
    expect(userData).toContain('\\"ingressIp\\":\\"100.64.228.21\\",\\"peerIngressIps\\":{\\"0\\":\\"100.64.218.21\\",\\"2\\":\\"100.64.238.21\\"}');
  });

  it('outputs each group\'s public address and how a Service chooses it', () => {
    const outputs = (template.toJSON() as { Outputs: Record<string, { Description: string }> }).Outputs;
    expect(outputs.ElasticIpGroup2!.Description).toContain('loxilb.io/poolSelect: tenant-b');
  });
});

describe('VIP groups (CDK): eni, three zones', () => {
  const { template, stack } = synthStack({
    ...THREE_AZS,
    instanceType: 'c7g.4xlarge',
    groups: [
      { name: 'g1', vip: '100.64.201.254', cloudCidrBlock: '100.64.201.0/24' },
      { name: 'g2', vip: '100.66.1.254', cloudCidrBlock: '100.66.1.0/24', existingEip: { allocationId: 'eipalloc-0123456789abcdef0', publicIp: '198.51.100.7' } },
    ],
  });
  const resources = (template.toJSON() as { Resources: Resources }).Resources;
  const byType = (t: string) => Object.entries(resources).filter(([, r]) => r.Type === t);
  const env = stack.resolve((stack.failover.fn.node.defaultChild as any).environment).variables;

  it('associates only a block outside the VPC\'s CIDR, and shares one floating route table', () => {
    expect(byType('AWS::EC2::VPCCidrBlock').map(([, r]) => r.Properties.CidrBlock)).toEqual(['100.66.1.0/24']);
    expect(byType('AWS::EC2::RouteTable').filter(([id]) => id.includes('Floating'))).toHaveLength(1);
    const groups = JSON.stringify(env.LOXIHA_GROUPS);
    expect(groups).toContain('\\"cloudCidrBlock\\":\\"100.66.1.0/24\\"');
    expect(groups).toContain('\\"eipAllocationId\\":\\"eipalloc-0123456789abcdef0\\"');
  });

  it('its LOXIHA_GROUPS is what the function accepts: each group its block, one floating route table for all', () => {
    const groups = groupsOf(settingsFromEnv(deployedEnv(env)));
    expect(groups.map((g) => [g.name, g.cloudCidrBlock])).toEqual([
      ['default', '100.64.248.0/24'],
      ['g1', '100.64.201.0/24'],
      ['g2', '100.66.1.0/24'],
    ]);
    expect(new Set(groups.map((g) => g.floatingRouteTableId)).size).toBe(1);
  });

  it('claims EIPs only for groups without an existing one', () => {
    expect(byType('Custom::LoxihaEip').map(([, r]) => r.Properties.Group ?? 'default').sort()).toEqual(['default', 'g1']);
  });
});
