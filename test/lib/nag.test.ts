import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as cdk from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, describe, expect, it } from 'vitest';
import { cdkJsonFlags, recordedAmiContext } from '../helpers/stack.ts';
import { resolveConfig } from '../../lib/config.ts';
import { LoxihaStack } from '../../lib/loxiha-stack.ts';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** Synthesises with the AwsSolutions pack; returns the unacknowledged findings (empty when clean). */
function nagFindings(profile: string, mutate?: (stack: LoxihaStack) => void, overrides: Record<string, unknown> = {}): string[] {
  const outdir = mkdtempSync(join(tmpdir(), 'loxiha-nag-'));
  dirs.push(outdir);
  const config = resolveConfig(profile, overrides);
  const app = new cdk.App({ outdir, context: { ...cdkJsonFlags(), ...recordedAmiContext('111111111111', config.region) } });
  const stack = new LoxihaStack(app, 'Nag', { config, env: { region: config.region, account: '111111111111' } });
  mutate?.(stack);
  cdk.Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  try {
    app.synth();
    return [];
  } catch (e) {
    if (!existsSync(join(outdir, 'validation-report.json'))) throw e;
    const report = JSON.parse(readFileSync(join(outdir, 'validation-report.json'), 'utf8'));
    return report.pluginReports
      .filter((p: any) => p.conclusion === 'failure')
      .flatMap((p: any) => p.violations.flatMap((v: any) => v.violatingConstructs.map((c: any) => `${v.ruleName} at ${c.constructPath}`)));
  }
}

describe('cdk-nag AwsSolutions', () => {
  it('has zero unacknowledged findings on the production defaults', () => {
    expect(nagFindings('production')).toEqual([]);
  });

  it('has zero unacknowledged findings on the sim profile (narrow client prefixes)', () => {
    expect(nagFindings('sim')).toEqual([]);
  });

  it('has zero unacknowledged findings with strategy route, three VIP groups over two slots in each of three zones', () => {
    expect(nagFindings('sim', undefined, { strategy: 'route', vip: '100.127.0.10', availabilityZones: ['us-east-1a', 'us-east-1b', 'us-east-1c'], lbSubnetCidrs: ['100.64.218.0/24', '100.64.228.0/24', '100.64.238.0/24'], slotsPerAz: 2, groups: [{ name: 'g1', vip: '100.127.1.10' }, { name: 'g2', vip: '100.127.2.10' }] })).toEqual([]);
  });

  it('fails when a new unacknowledged finding appears', () => {
    const findings = nagFindings('production', (stack) => {
      const sg = new ec2.SecurityGroup(stack, 'Careless', { vpc: stack.network.vpc });
      sg.addIngressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(22));
    });
    expect(findings).toContainEqual(expect.stringMatching(/^AwsSolutions-EC23 at Nag\/Careless/));
  });
});
