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

/** Builds the stack once for a test file (bundling included) on the sim profile unless told otherwise. */
export function synthStack(overrides: Record<string, unknown> = {}, profile = 'sim'): SynthResult {
  const config = resolveConfig(profile, overrides);
  const app = new cdk.App();
  const stack = new LoxihaStack(app, 'Test', { config, env: { region: config.region, account: '111111111111' } });
  return { app, stack, template: Template.fromStack(stack), config };
}
