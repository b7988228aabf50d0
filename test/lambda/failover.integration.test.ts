/**
 * The orchestrator against moto through the real SDK clients, with AWS's real behaviours
 * (latency, throttling, eventual consistency, slow/stuck detaches, DependencyViolation,
 * InUse, ClientToken idempotency, crashes) injected by the proxy, in simulated time.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Command } from '../../lambda/failover/events.ts';
import type { Result } from '../../lambda/failover/orchestrator.ts';
import { AwsProxy, type Behaviour } from '../../sim/aws-proxy.ts';
import { type Moto, startMoto } from '../../sim/moto.ts';
import { SimClock } from '../../sim/sim-clock.ts';
import { World } from '../../sim/world.ts';
import { motoAvailable } from '../harness/prerequisites.ts';

const SCALE = 0.002; // 1 simulated second = 2 real ms
let moto: Moto;
let clock: SimClock;
let proxy: AwsProxy;
let world: World;

const reconcile: Command = { kind: 'reconcile', via: 'manual' };
const deadline = () => clock.now() + 170_000;

async function run(command: Command, extra: Parameters<World['orchestrator']>[2] = {}): Promise<Result> {
  const { orchestrator } = world.orchestrator(proxy.endpoint, clock, extra);
  return orchestrator.run(command, deadline());
}

/** Places the VIP on instance 0 (a fresh deploy's lifecycle reconcile) with no faults. */
async function placeOn0(): Promise<void> {
  await world.beat(clock.now());
  const r = await run(reconcile);
  expect(r.outcome, r.reason).toBe('converged');
  expect(await world.problems(world.id(0))).toEqual([]);
}

async function failMaster(): Promise<void> {
  await world.stop(world.id(0));
  clock.advance(40_000); // its heartbeat goes stale; lb1 keeps beating
  await world.beat(clock.now(), [world.id(1)]);
}

describe.skipIf(!motoAvailable)('failover against the emulator with AWS behaviours', () => {
  beforeAll(async () => {
    moto = await startMoto();
    clock = new SimClock(SCALE);
    proxy = await AwsProxy.start(moto.endpoint, clock);
  });
  afterAll(async () => {
    await proxy?.stop();
    await moto?.stop();
    world?.destroy();
  });
  beforeEach(async () => {
    await moto.reset();
    world?.destroy();
    world = new World(moto.endpoint);
    await world.seed();
    proxy.configure({});
  });

  it('places the VIP on a fresh deploy, then a second reconcile changes nothing', async () => {
    await placeOn0();
    const again = await run(reconcile);
    expect(again.outcome).toBe('no-op');
    expect(again.ec2Mutations).toBe(0);
  });

  it('moves the VIP to the survivor when the master stops (alarm on the master)', async () => {
    await placeOn0();
    await failMaster();
    const r = await run({ kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' });
    expect(r.outcome, r.reason).toBe('converged');
    expect(r.owner).toBe(world.id(1));
    expect(r.moved).toBe(true);
    expect(await world.problems(world.id(1))).toEqual([]);
  });

  const hostile: Partial<Behaviour> = {
    latencyMs: (a) => (a.startsWith('Describe') ? 150 : 400),
    throttle: { CreateSubnet: 2, AssociateAddress: 2, DescribeNetworkInterfaces: 2, AttachNetworkInterface: 1 },
    notFoundAfterCreateMs: 4000,
    detachMs: () => 10_000 + Math.random() * 50_000,
    forceDetachMs: 5000,
    attachMs: 3000,
  };

  it('converges through throttling, NotFound after create, slow detach and slow attach', async () => {
    await placeOn0();
    await failMaster();
    proxy.configure(hostile);
    const r = await run({ kind: 'failover', from: world.id(0), reason: 'peer-heartbeat-lost', via: 'fast-path' });
    expect(r.outcome, r.reason).toBe('converged');
    expect(await world.problems(world.id(1))).toEqual([]);
    expect(proxy.calls.some((c) => c.status === 503)).toBe(true);
    expect(proxy.calls.some((c) => c.status === 400)).toBe(true);
  });

  it('forces a detach that is stuck and still converges', async () => {
    await placeOn0();
    // A planned move: the old owner is healthy, so the first detach is not forced; it never finishes.
    await world.beat(clock.now());
    proxy.configure({ stuckDetach: true, forceDetachMs: 3000 });
    const r = await run({ kind: 'failover', to: world.id(1), reason: 'maintenance', via: 'manual' });
    expect(r.outcome, r.reason).toBe('converged');
    expect(proxy.calls.filter((c) => c.action === 'DetachNetworkInterface').length).toBeGreaterThanOrEqual(2);
    expect(await world.problems(world.id(1))).toEqual([]);
  });

  it('changes nothing when no instance is healthy', async () => {
    await placeOn0();
    const before = await world.endState();
    await world.stop(world.id(0));
    await world.stop(world.id(1));
    clock.advance(60_000);
    const r = await run({ kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' });
    expect(r.outcome).toBe('no-healthy-instance');
    expect(r.ec2Mutations).toBe(0);
    expect(await world.endState()).toEqual(before);
  });

  it('refuses to move to an unhealthy survivor and leaves the VIP where it is', async () => {
    await placeOn0();
    clock.advance(40_000);
    await world.beat(clock.now(), [world.id(0)]); // lb1 is silent
    const r = await run({ kind: 'failover', to: world.id(1), reason: 'maintenance', via: 'manual' });
    expect(r.outcome).toBe('rejected');
    expect(r.ec2Mutations).toBe(0);
    expect(await world.problems(world.id(0))).toEqual([]);
  });

  it('with 10 concurrent invocations ends with exactly one subnet and one loxi-eni on the survivor', async () => {
    await placeOn0();
    await failMaster();
    proxy.configure({ latencyMs: (a) => (a.startsWith('Describe') ? 150 : 400), detachMs: () => 8000, forceDetachMs: 4000, notFoundAfterCreateMs: 2000 });
    const stopBeating = world.keepBeating(clock, [world.id(1)]);
    // Nine runs wait for the lease while one works: at the default scale their polls would move
    // simulated time past the worker's lease while it waits for moto in real time.
    const results = await clock.slower(50, () =>
      Promise.all(
        Array.from({ length: 10 }, (_, n) =>
          run(n % 2 ? { kind: 'failover', from: world.id(0), reason: 'peer-heartbeat-lost', via: 'fast-path' } : { kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' }),
        ),
      ),
    );
    await stopBeating();
    const outcomes = results.map((r) => r.outcome);
    const why = JSON.stringify(results.map((r) => [r.outcome, r.reason]));
    // One moves the VIP; the others wait for the lease. Under load a holder can stall past its lease
    // (simulated time runs on while it waits for the emulator): it is then superseded and the taker finishes.
    expect(outcomes.filter((o) => o === 'converged'), why).toHaveLength(1);
    // The others wait for the lease and then find the VIP already on the survivor.
    expect(outcomes.every((o) => o === 'converged' || o === 'no-op' || o === 'superseded'), why).toBe(true);
    await proxy.settle();
    expect(await world.problems(world.id(1))).toEqual([]);
  });

  it('an alarm arriving while a dead run still holds the lease waits for it, then completes the move and says where from', async () => {
    await placeOn0();
    await failMaster();
    // The first run dies after its second mutation (the ENI deleted): no instance holds the VIP.
    proxy.configure({ crashAfterMutations: 2, detachMs: () => 3000, forceDetachMs: 2000 });
    await run({ kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' }).catch(() => undefined);
    expect(proxy.dead).toBe(true);
    proxy.revive();
    proxy.configure({});
    // Its lease as it looks the moment it died: fresh (its last renewal), its move from lb0 recorded.
    const { lease } = world.orchestrator(proxy.endpoint, clock);
    clock.advance(40_000);
    const dead = await lease.acquire('alarm-dead', clock.now());
    expect(dead.acquired).toBe(true);
    await lease.markMove('alarm-dead', dead.acquired ? dead.epoch : 0, world.id(0));
    const t0 = clock.now();
    const stopBeating = world.keepBeating(clock, [world.id(1)]);
    const r = await run({ kind: 'failover', from: world.id(0), reason: 'peer-heartbeat-lost', via: 'fast-path' });
    await stopBeating();
    // Not "in progress" with nothing done: it waited for the dead holder's lease (30 s) and converged.
    expect(r.outcome, r.reason).toBe('converged');
    expect(r.ok).toBe(true);
    expect(clock.now() - t0).toBeGreaterThanOrEqual(25_000);
    expect(r.previousOwner).toBe(world.id(0));
    expect(r.reason).toMatch(new RegExp(`completing the move from ${world.id(0)}`));
    expect(r.reason).not.toMatch(/placing the VIP/);
    expect(await world.problems(world.id(1))).toEqual([]);
  });

  it('moves on an operator’s explicit request inside the hold-down (health checks still apply); an alarm there changes nothing', async () => {
    await placeOn0();
    await world.beat(clock.now());
    // Both healthy, the VIP moved a moment ago (the hold-down is 60 s).
    const alarm = await run({ kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' });
    expect(alarm.outcome, alarm.reason).toBe('no-op');
    expect(alarm.reason).toMatch(/hold-down/);
    const manual = await run({ kind: 'failover', from: world.id(0), reason: 'kernel upgrade', via: 'manual' });
    expect(manual.outcome, manual.reason).toBe('converged');
    expect(manual.owner).toBe(world.id(1));
    expect(manual.reason).toMatch(/operator asked/);
    // And when the request cannot be honoured (lb0, the only other instance, now silent), ok is false.
    clock.advance(40_000);
    await world.beat(clock.now(), [world.id(1)]);
    const refused = await run({ kind: 'failover', from: world.id(1), reason: 'kernel upgrade', via: 'manual' });
    expect(refused.ok, refused.reason).toBe(false);
    expect(refused.outcome).toBe('no-healthy-instance');
    expect(await world.problems(world.id(1))).toEqual([]);
  });

  describe('a crash after each mutation, then a re-run', () => {
    // The happy-path failover makes 9 mutations: detach, delete ENI, delete subnet, create subnet,
    // create ENI, then associate route table / source-dest off / attach / EIP concurrently.
    for (let k = 1; k <= 9; k++) {
      it(`converges after a crash right after mutation ${k}`, async () => {
        await placeOn0();
        await failMaster();
        proxy.configure({ crashAfterMutations: k, detachMs: () => 5000, forceDetachMs: 2000, notFoundAfterCreateMs: 1000 });
        const crashed = await run({ kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' }).catch((e: Error) => e);
        expect(proxy.dead, 'the crash was injected').toBe(true);
        expect(crashed instanceof Error || crashed.outcome !== 'converged').toBe(true);
        proxy.revive();
        // The dead run never released its lease: the next run waits for it to expire, then resumes.
        const { lease } = world.orchestrator(proxy.endpoint, clock);
        expect((await lease.read()).holder).toMatch(/^alarm-/);
        clock.advance(40_000);
        await world.beat(clock.now(), [world.id(1)]);
        const r = await run(reconcile);
        // Crashes inside the last concurrent wave may leave nothing to do (the other calls of the wave landed).
        expect(['converged', 'no-op'], r.reason).toContain(r.outcome);
        await proxy.settle();
        expect(await world.problems(world.id(1))).toEqual([]);
      });
    }
  });

  it('fences a stale actor: once its lease is taken over it stops before its next mutation', async () => {
    await placeOn0();
    await failMaster();
    proxy.configure({ detachMs: () => 3000, forceDetachMs: 2000 });
    const thief = world.orchestrator(proxy.endpoint, clock);
    let mutationsBefore = -1;
    let taken: Awaited<ReturnType<typeof thief.lease.acquire>> | undefined;
    const stale = world.orchestrator(proxy.endpoint, clock, {
      afterStep: async (step) => {
        if (step.op !== 'delete-subnet' || taken) return;
        // The stale actor stalls here (GC pause, slow network) past its lease; another invocation takes over.
        clock.advance(120_000);
        taken = await thief.lease.acquire('thief', clock.now());
        mutationsBefore = proxy.counts().mutations;
      },
    });
    const r = await stale.orchestrator.run({ kind: 'failover', from: world.id(0), reason: 'peer-heartbeat-lost', via: 'fast-path' }, clock.now() + 600_000);
    expect(taken?.acquired).toBe(true);
    expect(r.outcome).toBe('superseded');
    expect(r.reason).toMatch(/no longer ours/);
    expect(proxy.counts().mutations).toBe(mutationsBefore);
  });

  it('teardown removes the EIP association, loxi-eni and the floating subnet', async () => {
    await placeOn0();
    proxy.configure({ detachMs: () => 20_000, forceDetachMs: 3000, notFoundAfterCreateMs: 1000 });
    const r = await run({ kind: 'teardown', via: 'lifecycle' });
    expect(r.outcome, r.reason).toBe('torn-down');
    await proxy.settle();
    const s = await world.endState();
    expect(s.subnets).toEqual([]);
    expect(s.enis).toEqual([]);
    expect(s.eip.networkInterfaceId).toBeUndefined();
  });

  it('teardown waits for a lease another invocation holds, and afterwards automatic triggers re-create nothing', async () => {
    await placeOn0();
    const other = world.orchestrator(proxy.endpoint, clock);
    const held = await other.lease.acquire('schedule-reconcile-in-flight', clock.now());
    expect(held.acquired).toBe(true);
    const release = (async () => {
      await clock.sleep(8_000);
      if (held.acquired) await other.lease.release('schedule-reconcile-in-flight', held.epoch, { result: 'no-op' });
    })();
    const r = await run({ kind: 'teardown', via: 'lifecycle' });
    await release;
    expect(r.outcome, r.reason).toBe('torn-down');
    await proxy.settle();
    expect((await world.endState()).enis).toEqual([]);

    await world.beat(clock.now());
    for (const command of [
      { kind: 'reconcile', via: 'schedule' },
      { kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' },
      { kind: 'failover', from: world.id(0), reason: 'peer-heartbeat-lost', via: 'fast-path' },
    ] as Command[]) {
      const after = await run(command);
      expect(after.outcome, after.reason).toBe('no-op');
      expect(after.reason).toMatch(/torn down/);
    }
    const s = await world.endState();
    expect([s.subnets, s.enis, s.eip.networkInterfaceId]).toEqual([[], [], undefined]);

    // A deliberate reconcile (a deploy, or by hand) places the VIP again and clears the record.
    expect((await run(reconcile)).outcome).toBe('converged');
    expect(await world.problems(world.id(0))).toEqual([]);
    expect((await run({ kind: 'reconcile', via: 'schedule' })).outcome).toBe('no-op');
    expect((await world.orchestrator(proxy.endpoint, clock).lease.read()).tornDownAt).toBeUndefined();
  });

  it('a lifecycle reconcile that cannot get the lease before its deadline says so (timed out), changing nothing', async () => {
    await placeOn0();
    const other = world.orchestrator(proxy.endpoint, clock);
    expect((await other.lease.acquire('stuck', clock.now())).acquired).toBe(true);
    const before = proxy.counts().mutations;
    const { orchestrator } = world.orchestrator(proxy.endpoint, clock);
    const r = await orchestrator.run({ kind: 'reconcile', via: 'lifecycle' }, clock.now() + 20_000);
    expect(r.outcome).toBe('timed-out');
    expect(r.reason).toMatch(/held the lease/);
    expect(proxy.counts().mutations).toBe(before);
  });
});
