import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_CONFIG, resolveConfig } from '../../lib/config.ts';
import { configFromContext } from '../../lib/config-context.ts';
import { problemsOf } from '../helpers/config.ts';

describe('config', () => {
  it('accepts the production defaults (the how-to addresses) and the sim profile', () => {
    const prod = resolveConfig('production');
    expect(prod.cloudCidrBlock).toBe('192.168.248.0/24');
    expect(prod.vip).toBe('192.168.248.254');
    const sim = resolveConfig('sim');
    for (const v of [sim.vip, sim.cloudCidrBlock, ...sim.lbSubnetCidrs]) expect(v.startsWith('100.64.')).toBe(true);
  });

  it.each([
    [{ vip: '192.168.249.4' }, 'vip: 192.168.249.4 is not inside cloudCidrBlock 192.168.248.0/24'],
    [{ vip: '192.168.248.255' }, 'vip: 192.168.248.255 is an address AWS reserves'],
    [{ vip: '192.168.248.1' }, 'vip: 192.168.248.1 is an address AWS reserves'],
    [{ cloudCidrBlock: '192.168.248.0/29', vip: '192.168.248.5' }, 'cloudCidrBlock: must be between /16 and /28'],
    [{ cloudCidrBlock: '192.168.248.1/24' }, 'cloudCidrBlock: must be an IPv4 CIDR block'],
    [{ availabilityZones: ['ap-northeast-3a'], lbSubnetCidrs: ['192.168.218.0/24'] }, 'availabilityZones: at least two availability zones'],
    [{ lbSubnetCidrs: ['192.168.218.0/24'] }, 'lbSubnetCidrs: needs one CIDR per availability zone (2), got 1'],
    [{ lbSubnetCidrs: ['192.168.218.0/24', '192.168.248.0/25'] }, 'cloudCidrBlock: 192.168.248.0/24 overlaps lbSubnetCidrs.1'],
    [{ lbSubnetCidrs: ['192.168.218.0/24', '10.0.0.0/24'] }, 'lbSubnetCidrs.1: 10.0.0.0/24 is not inside the VPC CIDR'],
    [{ availabilityZones: ['ap-northeast-3a', 'eu-west-1b'] }, 'availabilityZones: eu-west-1b is not in region ap-northeast-3'],
    [{ eks: { version: '1.29', nodeInstanceType: 't3.medium', nodeCount: 2 } }, 'eks.version: must be a Kubernetes version in standard support'],
    [{ alarms: { heartbeatPeriodSeconds: 15, evaluationPeriods: 3, datapointsToAlarm: 2 } }, 'alarms.heartbeatPeriodSeconds: must be 10, 20, 30 or a multiple of 60'],
    [{ alarms: { heartbeatPeriodSeconds: 10, evaluationPeriods: 2, datapointsToAlarm: 3 } }, 'alarms: datapointsToAlarm must not exceed evaluationPeriods'],
    [{ failback: 'sometimes' }, 'failback:'],
    [{ deploymentId: 'Has_Caps' }, 'deploymentId: must be 3-20 chars'],
    [{ unknownKey: 1 }, 'unknownKey'],
    [{ logRetentionDays: 31 }, 'logRetentionDays: must be a CloudWatch Logs retention'],
    [{ amiId: 'ubuntu-latest' }, 'amiId: must be an AMI id'],
  ])('rejects %j with a clear message', (layer, message) => {
    const problems = problemsOf(layer as Record<string, unknown>);
    expect(problems.join('\n')).toContain(message);
  });

  it('lists every problem at once', () => {
    const problems = problemsOf({ vip: '10.0.0.1', failback: 'x', instanceType: 'big' });
    expect(problems.length).toBeGreaterThanOrEqual(3);
    expect(new ConfigError(problems).message).toMatch(/^Invalid loxiha configuration \(\d+ problems\):\n  - /);
  });

  it('reads cdk.json context, a JSON file and -c overrides, later layers winning', () => {
    const dir = mkdtempSync(join(tmpdir(), 'loxiha-cfg-'));
    try {
      const file = join(dir, 'c.json');
      writeFileSync(file, JSON.stringify({ deploymentId: 'from-file', holdDownSeconds: 5 }));
      const ctx: Record<string, unknown> = {
        profile: 'sim',
        loxiha: { deploymentId: 'from-cdk-json', failback: 'preferred' },
        configFile: file,
        'loxiha.holdDownSeconds': '7',
      };
      const c = configFromContext((k) => ctx[k], ctx);
      expect(c).toMatchObject({ deploymentId: 'from-file', failback: 'preferred', holdDownSeconds: 7, vip: '100.64.248.254' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names an unknown profile and an unreadable config file', () => {
    const ctx: Record<string, unknown> = { profile: 'nope', configFile: '/nonexistent/x.json' };
    expect(() => configFromContext((k) => ctx[k], ctx)).toThrow(/configFile \/nonexistent\/x.json/);
    const ctx2: Record<string, unknown> = { profile: 'nope' };
    expect(() => configFromContext((k) => ctx2[k], ctx2)).toThrow(/unknown profile "nope"/);
  });

  it('keeps defaults valid as a whole', () => {
    expect(problemsOf(DEFAULT_CONFIG as Record<string, unknown>)).toEqual([]);
  });
});

describe('cdk synth with an invalid config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'loxiha-synth-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('fails with one message listing every problem, before building anything', () => {
    const r = spawnSync(process.execPath, ['bin/loxiha.ts'], {
      encoding: 'utf8',
      env: {
        ...process.env,
        CDK_OUTDIR: dir,
        CDK_CONTEXT_JSON: JSON.stringify({ 'loxiha.vip': '192.168.1.1', 'loxiha.failback': 'maybe' }),
      },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('Invalid loxiha configuration (2 problems)');
    expect(r.stderr).toContain('vip: 192.168.1.1 is not inside cloudCidrBlock');
    expect(r.stderr).toContain('failback:');
  });
});
