/**
 * The `route` strategy against moto through the real SDK clients, with the AWS-behaviour layer
 * modelling where moto is lax exactly where this strategy can go wrong (an EIP associated with a
 * secondary address, a /32 route inside the VPC's CIDR, the address filter on secondaries), in
 * simulated time: placement, failover in one wave, throttling, routes and the EIP changed by
 * someone else, a crash after every mutation, 10 concurrent invocations, an unhealthy survivor,
 * both down, teardown.
 */
import { AssociateAddressCommand, CreateNetworkInterfaceCommand, DeleteRouteCommand, DescribeRouteTablesCommand, DescribeSubnetsCommand, ReplaceRouteCommand } from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Command } from '../../lambda/failover/events.ts';
import type { Result } from '../../lambda/failover/orchestrator.ts';
import { AwsProxy, type Behaviour } from '../../sim/aws-proxy.ts';
import { type Moto, startMoto } from '../../sim/moto.ts';
import { SimClock } from '../../sim/sim-clock.ts';
import { SIM_OVERLAY_VIP, World } from '../../sim/world.ts';
import { motoAvailable } from '../harness/prerequisites.ts';

const SCALE = 0.002;
let moto: Moto;
let clock: SimClock;
let proxy: AwsProxy;
let world: World;

const reconcile: Command = { kind: 'reconcile', via: 'manual' };
const alarmOn0: Command = { kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' };
const deadline = () => clock.now() + 170_000;

async function run(command: Command): Promise<Result> {
  return world.orchestrator(proxy.endpoint, clock).orchestrator.run(command, deadline());
}

/** Where AWS has the EIP and the VIP's routes now, and what is wrong for `owner`. */
const problems = (owner: string) => world.routeProblems(owner, proxy);

async function placeOn0(): Promise<Result> {
  await world.beat(clock.now());
  const r = await run(reconcile);
  expect(r.outcome, r.reason).toBe('converged');
  expect(await problems(world.id(0))).toEqual([]);
  return r;
}

async function failMaster(): Promise<void> {
  await world.stop(world.id(0));
  clock.advance(40_000);
  await world.beat(clock.now(), [world.id(1)]);
}

/** Calls that create, delete or detach something: the route strategy makes none. */
const structural = () => proxy.calls.filter((c) => /^(Create(Subnet|NetworkInterface)|Delete(Subnet|NetworkInterface)|DetachNetworkInterface|AttachNetworkInterface)$/.test(c.action));

describe.skipIf(!motoAvailable)('route strategy against the emulator with AWS behaviours', () => {
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
    await world.seed({ strategy: 'route' });
    proxy.configure({});
  });

  it('places the VIP in one wave (EIP to the ingress IP, a /32 route in every table), then changes nothing', async () => {
    const r = await placeOn0();
    expect(r.sequentialMutations).toBe(1);
    expect(r.ec2Mutations).toBe(1 + world.settings.routeTableIds!.length);
    expect(structural()).toEqual([]);
    const again = await run(reconcile);
    expect(again.outcome).toBe('no-op');
    expect(again.ec2Mutations).toBe(0);
  });

  it('moves to the survivor when the master stops: one wave, nothing created, deleted or detached', async () => {
    await placeOn0();
    await failMaster();
    proxy.configure({});
    const r = await run(alarmOn0);
    expect(r.outcome, r.reason).toBe('converged');
    expect(r.owner).toBe(world.id(1));
    expect(r.sequentialMutations).toBe(1);
    expect(structural()).toEqual([]);
    expect(proxy.calls.filter((c) => c.action === 'ReplaceRoute' && c.status === 200)).toHaveLength(world.settings.routeTableIds!.length);
    expect(await problems(world.id(1))).toEqual([]);
  });

  it('converges through throttling and latency on every call it makes', async () => {
    await placeOn0();
    await failMaster();
    proxy.configure({ latencyMs: (a) => (a.startsWith('Describe') ? 150 : 500), throttle: { AssociateAddress: 2, ReplaceRoute: 3, DescribeRouteTables: 2, DescribeAddresses: 1 } });
    const r = await run({ kind: 'failover', from: world.id(0), reason: 'peer-heartbeat-lost', via: 'fast-path' });
    expect(r.outcome, r.reason).toBe('converged');
    expect(proxy.calls.filter((c) => c.status === 503).length).toBeGreaterThanOrEqual(8);
    expect(await problems(world.id(1))).toEqual([]);
  });

  it('puts back a route someone replaced or deleted, and the EIP someone associated elsewhere', async () => {
    await placeOn0();
    const [t0, t1] = world.settings.routeTableIds!;
    const subnet = (await world.ec2.send(new DescribeSubnetsCommand({}))).Subnets!.find((x) => x.CidrBlock === world.config.lbSubnetCidrs[1])!.SubnetId!;
    const stranger = (await world.ec2.send(new CreateNetworkInterfaceCommand({ SubnetId: subnet }))).NetworkInterface!.NetworkInterfaceId!;
    await world.ec2.send(new ReplaceRouteCommand({ RouteTableId: t0, DestinationCidrBlock: `${SIM_OVERLAY_VIP}/32`, NetworkInterfaceId: stranger }));
    await world.ec2.send(new DeleteRouteCommand({ RouteTableId: t1, DestinationCidrBlock: `${SIM_OVERLAY_VIP}/32` }));
    await world.ec2.send(new AssociateAddressCommand({ AllocationId: world.settings.eipAllocationId, NetworkInterfaceId: stranger, AllowReassociation: true }));
    expect((await problems(world.id(0))).length).toBe(3);
    await world.beat(clock.now());
    const r = await run(reconcile);
    expect(r.outcome, r.reason).toBe('converged');
    expect(r.sequentialMutations).toBe(1);
    expect(proxy.calls.some((c) => c.action === 'CreateRoute' && c.status === 200)).toBe(true);
    expect(await problems(world.id(0))).toEqual([]);
  });

  describe('a crash after each mutation of a failover, then the next invocation', () => {
    // The failover's wave makes 4 mutations (the EIP and 3 routes), concurrently.
    for (const n of [1, 2, 3, 4]) {
      it(`converges after a crash right after mutation ${n}`, async () => {
        await placeOn0();
        await failMaster();
        proxy.configure({ crashAfterMutations: n, latencyMs: (a) => (a === 'AssociateAddress' ? 100 * n : 100) });
        const crashed = await run(alarmOn0).catch((e: Error) => e);
        expect(proxy.dead, 'the crash was injected').toBe(true);
        expect(crashed instanceof Error || crashed.outcome !== 'converged').toBe(true);
        proxy.revive();
        clock.advance(40_000); // the dead run's lease expires
        await world.beat(clock.now(), [world.id(1)]);
        const r = await run(alarmOn0);
        // A crash inside the wave may leave nothing to do (the other calls landed).
        expect(['converged', 'no-op'], r.reason).toContain(r.outcome);
        expect(r.ec2Mutations).toBeLessThanOrEqual(4 - n + 1);
        expect(await problems(world.id(1))).toEqual([]);
      });
    }
  });

  it('10 concurrent invocations leave the EIP and every route on the survivor', async () => {
    await placeOn0();
    await failMaster();
    proxy.configure({ latencyMs: (a) => (a.startsWith('Describe') ? 150 : 400) });
    const stop = world.keepBeating(clock, [world.id(1)]);
    // Nine wait for the lease while one works (simulated time slowed so their polls do not outrun it).
    const results = await clock.slower(50, () =>
      Promise.all(Array.from({ length: 10 }, (_, i) => run(i % 2 ? alarmOn0 : { kind: 'failover', from: world.id(0), reason: 'peer-heartbeat-lost', via: 'fast-path' }))),
    );
    await stop();
    const why = JSON.stringify(results.map((r) => [r.outcome, r.reason]));
    expect(results.filter((r) => r.outcome === 'converged'), why).toHaveLength(1);
    expect(results.every((r) => ['converged', 'no-op', 'superseded'].includes(r.outcome)), why).toBe(true);
    expect(proxy.calls.filter((c) => c.action === 'AssociateAddress' && c.status === 200).length).toBeLessThanOrEqual(2);
    expect(await problems(world.id(1))).toEqual([]);
  });

  it('refuses an unhealthy survivor and leaves the VIP where it is; with both down it changes nothing', async () => {
    await placeOn0();
    // lb1 stops beating; lb0 is healthy: an explicit move to lb1 is refused.
    clock.advance(40_000);
    await world.beat(clock.now(), [world.id(0)]);
    proxy.configure({});
    const refused = await run({ kind: 'failover', to: world.id(1), reason: 'maintenance', via: 'manual' });
    expect(refused.ok).toBe(false);
    expect(refused.ec2Mutations).toBe(0);
    expect(await problems(world.id(0))).toEqual([]);
    // Both down.
    await world.stop(world.id(0));
    await world.stop(world.id(1));
    clock.advance(40_000);
    const none = await run(alarmOn0);
    expect(none.outcome).toBe('no-healthy-instance');
    expect(none.ec2Mutations).toBe(0);
    expect(await problems(world.id(0))).toEqual([]);
  });

  it('an overlay VIP inside the VPC’s CIDR is refused as AWS refuses it, and the run says so', async () => {
    await moto.reset();
    world.destroy();
    world = new World(moto.endpoint);
    await world.seed({ strategy: 'route', vip: '100.64.240.10' });
    await world.beat(clock.now());
    const r = await run(reconcile);
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/more specific than one of this VPC's CIDR blocks/);
  });

  it('teardown removes every VIP route and the EIP association; automatic triggers then change nothing', async () => {
    await placeOn0();
    const r = await run({ kind: 'teardown', via: 'manual' });
    expect(r.outcome, r.reason).toBe('torn-down');
    const tables = (await world.ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: world.settings.routeTableIds }))).RouteTables ?? [];
    expect(tables.flatMap((t) => t.Routes ?? []).filter((x) => x.DestinationCidrBlock === `${SIM_OVERLAY_VIP}/32`)).toEqual([]);
    expect((await proxy.addressesAsAws()).find((a) => a.AllocationId === world.settings.eipAllocationId)?.AssociationId).toBeUndefined();
    await world.beat(clock.now());
    expect((await run(alarmOn0)).ec2Mutations).toBe(0);
  });
});
