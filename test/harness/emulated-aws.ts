/**
 * The hooks every integration test file against the emulator needs: moto and the AWS-behaviour
 * proxy (in simulated time) for the file, a freshly seeded world before each test, all stopped after.
 */
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { AwsProxy } from '../../sim/aws-proxy.ts';
import { type Moto, startMoto } from '../../sim/moto.ts';
import { SimClock } from '../../sim/sim-clock.ts';
import { World } from '../../sim/world.ts';

/** 1 simulated second = 2 real ms. */
export const SCALE = 0.002;

export interface EmulatedAws {
  moto: Moto;
  clock: SimClock;
  proxy: AwsProxy;
  world: World;
}

export function emulatedAws(seed: (endpoint: string) => Promise<World> = async (endpoint) => {
  const w = new World(endpoint);
  await w.seed();
  return w;
}): EmulatedAws {
  const env = {} as EmulatedAws;
  beforeAll(async () => {
    env.moto = await startMoto();
    env.clock = new SimClock(SCALE);
    env.proxy = await AwsProxy.start(env.moto.endpoint, env.clock);
  });
  afterAll(async () => {
    await env.proxy?.stop();
    await env.moto?.stop();
    env.world?.destroy();
  });
  beforeEach(async () => {
    await env.moto.reset();
    env.world?.destroy();
    env.world = await seed(env.moto.endpoint);
    env.proxy.configure({});
  });
  return env;
}
