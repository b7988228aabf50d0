#!/usr/bin/env node
/**
 * CDK app entry. Configuration layers, later wins per top-level key:
 *   defaults → profile (-c profile=sim) → cdk.json context "loxiha" → JSON file (-c configFile=path) → -c loxiha.<key>=<json>
 */
import * as cdk from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ConfigError } from '../lib/config.ts';
import { configFromContext } from '../lib/config-context.ts';
import { namePrefix } from '../lib/contract.ts';
import { LoxihaStack } from '../lib/loxiha-stack.ts';

const app = new cdk.App();
try {
  const config = configFromContext((key) => app.node.tryGetContext(key), app.node.getAllContext());
  new LoxihaStack(app, namePrefix(config.deploymentId), {
    config,
    env: { region: config.region, account: config.account ?? process.env.CDK_DEFAULT_ACCOUNT },
    description: `loxiha ${config.deploymentId}: multi-AZ HA for LoxiLB-style load balancers`,
  });
  cdk.Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
} catch (e) {
  if (e instanceof ConfigError) {
    console.error(e.message);
    process.exit(1);
  }
  throw e;
}
