import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as cdk from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { resolveConfig, type LoxihaConfig } from '../../lib/config.ts';
import { LoxihaStack } from '../../lib/loxiha-stack.ts';

export interface SynthResult {
  app: cdk.App;
  stack: LoxihaStack;
  template: Template;
  config: LoxihaConfig;
}

/** The feature flags in cdk.json (what `cdk synth` runs with): tests synthesize with the same. */
export function cdkJsonFlags(): Record<string, unknown> {
  const context = (JSON.parse(readFileSync(join(import.meta.dirname, '../../cdk.json'), 'utf8')) as { context: Record<string, unknown> }).context;
  return Object.fromEntries(Object.entries(context).filter(([k]) => k.startsWith('@aws-cdk')));
}

/** The AMI a first `cdk synth` would have recorded in cdk.context.json for the LB instances (the pinned image). */
export const RECORDED_AMI = 'ami-0c0ffee0c0ffee000';

/** cdk.context.json as a first synth leaves it: AL2023's image for both architectures, looked up once. */
export function recordedAmiContext(account: string, region: string): Record<string, string> {
  return Object.fromEntries(
    ['arm64', 'x86_64'].map((arch) => [`ssm:account=${account}:parameterName=/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-${arch}:region=${region}`, RECORDED_AMI]),
  );
}

/** Builds the stack once for a test file (bundling included) on the sim profile unless told otherwise. */
export function synthStack(overrides: Record<string, unknown> = {}, profile = 'sim'): SynthResult {
  const config = resolveConfig(profile, overrides);
  const app = new cdk.App({ context: { ...cdkJsonFlags(), ...recordedAmiContext('111111111111', config.region) } });
  const stack = new LoxihaStack(app, 'Test', { config, env: { region: config.region, account: '111111111111' } });
  return { app, stack, template: Template.fromStack(stack), config };
}
