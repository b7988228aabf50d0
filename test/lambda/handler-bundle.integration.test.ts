/**
 * The handler exactly as `cdk synth` stages it (bundled, with the shaking rewrites of
 * lib/bundling/) run in a plain Node process against moto: proves that the rewritten SDK
 * schemas still serialise every EC2/CloudWatch/DynamoDB call of a placement and a failover, and
 * that the rewritten zod imports still validate events.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as cdk from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { functionEnv } from '../../lib/contract.ts';
import { type Moto, startMoto } from '../../sim/moto.ts';
import { CREDENTIALS, World } from '../../sim/world.ts';
import { synthStack } from '../helpers/stack.ts';
import { motoAvailable } from '../harness/prerequisites.ts';

let moto: Moto;
let world: World;
let bundle: string;
let handlerName: string;

/** Invokes the bundle's handler once per event in one fresh Node process (one cold start, warm after). */
function invoke(events: unknown[]): Record<string, unknown>[] {
  const [file, exported] = handlerName.split('.');
  const code = `
    const mod = await import(${JSON.stringify(join(bundle, `${file}.mjs`))});
    const context = { getRemainingTimeInMillis: () => 170000, functionName: 'loxiha', awsRequestId: 'r', invokedFunctionArn: 'arn:aws:lambda:us-east-1:111111111111:function:loxiha' };
    for (const e of JSON.parse(process.env.EVENTS)) console.log('RESULT ' + JSON.stringify(await mod[${JSON.stringify(exported)}](e, context)));`;
  const s = world.settings;
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    EVENTS: JSON.stringify(events),
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
    LOXIHA_AWS_ENDPOINT: moto.endpoint,
    POWERTOOLS_METRICS_DISABLED: 'true',
    POWERTOOLS_LOG_LEVEL: 'ERROR',
    ...functionEnv({ ...s, holdDownSeconds: 0 }),
  };
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { env, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`bundled handler failed (${r.status}): ${r.stderr.slice(0, 2000)}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith('RESULT '))
    .map((l) => JSON.parse(l.slice('RESULT '.length)) as Record<string, unknown>);
}

describe.skipIf(!motoAvailable)('the staged handler bundle', () => {
  beforeAll(async () => {
    const { stack } = synthStack();
    const staging = stack.failover.fn.node.findAll().find((c): c is cdk.AssetStaging => c instanceof cdk.AssetStaging);
    if (!staging) throw new Error('the failover function has no staged asset');
    bundle = staging.absoluteStagedPath;
    handlerName = (stack.failover.fn.node.defaultChild as lambda.CfnFunction).handler!;
    moto = await startMoto();
    world = new World(moto.endpoint);
    await world.seed();
  }, 120_000);
  afterAll(async () => {
    world?.destroy();
    await moto?.stop();
  });

  it('is within the size target and ships its source map', () => {
    const js = readdirSync(bundle, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.mjs'));
    expect(js).toContain('index.mjs');
    expect(js.reduce((sum, f) => sum + statSync(join(bundle, f)).size, 0)).toBeLessThanOrEqual(1_500_000);
    expect(statSync(join(bundle, 'index.mjs.map')).size).toBeGreaterThan(0);
  });

  it('places the VIP, fails over by hand, reports status and rejects a malformed event, all through the bundle', async () => {
    await world.beat(Date.now());
    const [placed, moved, status, bad] = invoke([
      { action: 'reconcile' },
      { action: 'failover', to: world.id(1), reason: 'maintenance' },
      { action: 'status' },
      { action: 'failover', to: 'i-not-an-id!' },
    ]);
    expect(placed).toMatchObject({ ok: true, outcome: 'converged', owner: world.id(0) });
    expect(moved).toMatchObject({ ok: true, outcome: 'converged', owner: world.id(1) });
    expect(await world.problems(world.id(1))).toEqual([]);
    expect(JSON.stringify(status)).toContain(world.id(1));
    expect(bad).toMatchObject({ ok: false, outcome: 'invalid-event' });
    expect(await world.problems(world.id(1))).toEqual([]);
  }, 150_000);
});
