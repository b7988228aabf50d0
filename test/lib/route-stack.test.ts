/** `strategy: route` in the configuration: what `cdk deploy` then builds, and what it refuses. */
import { Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { ConfigError, resolveConfig } from '../../lib/config.ts';
import { synthStack } from '../helpers/stack.ts';

const ROUTE = { strategy: 'route', vip: '100.127.0.10' };

describe('strategy route (CDK)', () => {
  const { template, stack } = synthStack(ROUTE);
  const json = template.toJSON() as { Resources: Record<string, { Type: string; Properties: Record<string, any> }> };
  const byType = (t: string) => Object.entries(json.Resources).filter(([, r]) => r.Type === t);

  it('gives each slot’s interface its ingress IP as a secondary address, source/dest check off, tagged for the function', () => {
    const enis = byType('AWS::EC2::NetworkInterface');
    expect(enis).toHaveLength(2);
    const addresses = enis.map(([, r]) => r.Properties.PrivateIpAddresses);
    expect(addresses).toEqual([
      [{ PrivateIpAddress: '100.64.218.10', Primary: true }, { PrivateIpAddress: '100.64.218.11', Primary: false }],
      [{ PrivateIpAddress: '100.64.228.10', Primary: true }, { PrivateIpAddress: '100.64.228.11', Primary: false }],
    ]);
    for (const [, r] of enis) {
      expect(r.Properties.SourceDestCheck).toBe(false);
      expect(r.Properties.Tags).toContainEqual({ Key: 'loxiha:deployment', Value: 'loxiha-sim' });
      expect(r.Properties.Tags).toContainEqual({ Key: 'loxiha:role', Value: 'slot-interface' });
    }
    // The instances are the slots' groups': the interfaces are attached to them as they launch.
    expect(byType('AWS::EC2::Instance')).toEqual([]);
    expect(byType('AWS::AutoScaling::AutoScalingGroup')).toHaveLength(2);
  });

  it('makes no floating subnet route table and no cloud block; the function gets the route tables and the ingress IPs', () => {
    expect(byType('AWS::EC2::RouteTable').filter(([id]) => id.includes('Floating'))).toEqual([]);
    expect(byType('AWS::EC2::VPCCidrBlock')).toEqual([]);
    const env = stack.resolve((stack.failover.fn.node.defaultChild as any).environment).variables;
    expect(env.LOXIHA_STRATEGY).toBe('route');
    expect(env.LOXIHA_INGRESS_IPS).toBe('100.64.218.11,100.64.228.11');
    expect(env.LOXIHA_FLOATING_ROUTE_TABLE_ID).toBeUndefined();
    // The LB subnets' and the EKS nodes' (private) subnets' tables.
    const tables = JSON.stringify(env.LOXIHA_ROUTE_TABLE_IDS);
    expect((tables.match(/"Ref"/g) ?? []).length).toBe(4);
  });

  it('lets the function change only the VIP routes of the listed tables and associate the EIP only with this deployment’s interfaces; nothing to create or delete', () => {
    const policies = byType('AWS::IAM::Policy').flatMap(([, p]) => p.Properties.PolicyDocument.Statement as { Sid?: string; Action: string | string[]; Resource: unknown; Condition?: unknown }[]);
    const actions = policies.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]));
    for (const forbidden of ['ec2:CreateSubnet', 'ec2:CreateNetworkInterface', 'ec2:DeleteSubnet', 'ec2:DeleteNetworkInterface', 'ec2:DetachNetworkInterface']) {
      expect(actions).not.toContain(forbidden);
    }
    expect(actions.filter((a) => a.includes('*'))).toEqual([]);
    const routes = policies.find((s) => s.Sid === 'VipRoutesInListedTables')!;
    expect([...(routes.Action as string[])].sort()).toEqual(['ec2:CreateRoute', 'ec2:DeleteRoute', 'ec2:ReplaceRoute']);
    expect((routes.Resource as unknown[]).length).toBe(4);
    expect(JSON.stringify(routes.Resource)).toMatch(/route-table\//);
    const eip = policies.find((s) => s.Sid === 'EipOntoOwnInterfaces')!;
    expect(eip.Condition).toEqual({ StringEquals: { 'aws:ResourceTag/loxiha:deployment': 'loxiha-sim' } });
    template.hasResourceProperties('AWS::IAM::Policy', Match.objectLike({ PolicyDocument: Match.objectLike({ Statement: Match.arrayWith([Match.objectLike({ Sid: 'MoveTheOneEip' })]) }) }));
    // Attaching is for the slots' interfaces as their instances launch: this deployment's tagged resources only.
    const slots = policies.find((s) => s.Sid === 'SlotInstances')!;
    expect(slots.Condition).toEqual({ StringEquals: { 'aws:ResourceTag/loxiha:deployment': 'loxiha-sim' } });
    expect(policies.filter((s) => [s.Action].flat().includes('ec2:AttachNetworkInterface')).map((s) => s.Sid)).toEqual(['SlotInstances']);
  });

  it('refuses an overlay VIP inside the VPC or an LB subnet, and asks for the route tables in an existing VPC', () => {
    const problems = (o: Record<string, unknown>) => {
      try {
        resolveConfig('sim', o);
        return [];
      } catch (e) {
        return (e as ConfigError).problems;
      }
    };
    expect(problems({ strategy: 'route', vip: '100.64.248.254' })).toContainEqual(expect.stringMatching(/vip.*inside the VPC CIDR 100\.64\.0\.0\/16.*overlay/));
    expect(problems({ strategy: 'route', vip: '100.127.0.10', vpc: { vpcId: 'vpc-0123456789abcdef0', internetGatewayId: 'igw-0123456789abcdef0' } })).toContainEqual(expect.stringMatching(/routeTableIds.*existing VPC/));
    expect(problems({ routeTableIds: ['rtb-0123456789abcdef0'] })).toContainEqual(expect.stringMatching(/routeTableIds.*only used by strategy "route"/));
    expect(problems(ROUTE)).toEqual([]);
  });
});
