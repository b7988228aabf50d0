/**
 * The `route` strategy against aws.moto through the real SDK clients, with the AWS-behaviour layer
 * modelling where aws.moto is lax exactly where this strategy can go wrong (an EIP associated with a
 * secondary address, a /32 route inside the VPC's CIDR, the address filter on secondaries), in
 * simulated time: placement, failover in one wave, throttling, routes and the EIP changed by
 * someone else, a crash after every mutation, 10 concurrent invocations, an unhealthy survivor,
 * both down, teardown.
 */
import { AssociateAddressCommand, CreateNetworkInterfaceCommand, DeleteRouteCommand, DescribeRouteTablesCommand, DescribeSubnetsCommand, ReplaceRouteCommand } from '@aws-sdk/client-ec2';
import { describe, expect, it } from 'vitest';
import type { Command } from '../../lambda/failover/events.ts';
import type { Result } from '../../lambda/failover/orchestrator.ts';
import { SIM_OVERLAY_VIP, World } from '../../sim/world.ts';
import { type EmulatedAws, emulatedAws } from '../harness/emulated-aws.ts';
import { motoAvailable } from '../harness/prerequisites.ts';

let aws: EmulatedAws;


const reconcile: Command = { kind: 'reconcile', via: 'manual' };
const alarmOn0: Command = { kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' };
const deadline = () => aws.clock.now() + 170_000;

async function run(command: Command): Promise<Result> {
  return aws.world.orchestrator(aws.proxy.endpoint, aws.clock).orchestrator.run(command, deadline());
}

/** Where AWS has the EIP and the VIP's routes now, and what is wrong for `owner`. */
const problems = (owner: string) => aws.world.routeProblems(owner, aws.proxy);

async function placeOn0(): Promise<Result> {
  await aws.world.beat(aws.clock.now());
  const r = await run(reconcile);
  expect(r.outcome, r.reason).toBe('converged');
  expect(await problems(aws.world.id(0))).toEqual([]);
  return r;
}

async function failMaster(): Promise<void> {
  await aws.world.stop(aws.world.id(0));
  aws.clock.advance(40_000);
  await aws.world.beat(aws.clock.now(), [aws.world.id(1)]);
}

/** Calls that create, delete or detach something: the route strategy makes none. */
const structural = () => aws.proxy.calls.filter((c) => /^(Create(Subnet|NetworkInterface)|Delete(Subnet|NetworkInterface)|DetachNetworkInterface|AttachNetworkInterface)$/.test(c.action));

describe.skipIf(!motoAvailable)('route strategy against the emulator with AWS behaviours', () => {
  aws = emulatedAws(async (endpoint) => {
    const w = new World(endpoint);
    await w.seed({ strategy: 'route' });
    return w;
  });

  it('places the VIP in one wave (EIP to the ingress IP, a /32 route in every table), then changes nothing', async () => {
    const r = await placeOn0();
    expect(r.sequentialMutations).toBe(1);
    expect(r.ec2Mutations).toBe(1 + aws.world.settings.routeTableIds!.length);
    expect(structural()).toEqual([]);
    const again = await run(reconcile);
    expect(again.outcome).toBe('no-op');
    expect(again.ec2Mutations).toBe(0);
  });

  it('moves to the survivor when the master stops: one wave, nothing created, deleted or detached', async () => {
    await placeOn0();
    await failMaster();
    aws.proxy.configure({});
    const r = await run(alarmOn0);
    expect(r.outcome, r.reason).toBe('converged');
    expect(r.owner).toBe(aws.world.id(1));
    expect(r.sequentialMutations).toBe(1);
    expect(structural()).toEqual([]);
    expect(aws.proxy.calls.filter((c) => c.action === 'ReplaceRoute' && c.status === 200)).toHaveLength(aws.world.settings.routeTableIds!.length);
    expect(await problems(aws.world.id(1))).toEqual([]);
  });

  it('converges through throttling and latency on every call it makes', async () => {
    await placeOn0();
    await failMaster();
    aws.proxy.configure({ latencyMs: (a) => (a.startsWith('Describe') ? 150 : 500), throttle: { AssociateAddress: 2, ReplaceRoute: 3, DescribeRouteTables: 2, DescribeAddresses: 1 } });
    const r = await run({ kind: 'failover', from: aws.world.id(0), reason: 'peer-heartbeat-lost', via: 'fast-path' });
    expect(r.outcome, r.reason).toBe('converged');
    expect(aws.proxy.calls.filter((c) => c.status === 503).length).toBeGreaterThanOrEqual(8);
    expect(await problems(aws.world.id(1))).toEqual([]);
  });

  it('puts back a route someone replaced or deleted, and the EIP someone associated elsewhere', async () => {
    await placeOn0();
    const [t0, t1] = aws.world.settings.routeTableIds!;
    const subnet = (await aws.world.ec2.send(new DescribeSubnetsCommand({}))).Subnets!.find((x) => x.CidrBlock === aws.world.config.lbSubnetCidrs[1])!.SubnetId!;
    const stranger = (await aws.world.ec2.send(new CreateNetworkInterfaceCommand({ SubnetId: subnet }))).NetworkInterface!.NetworkInterfaceId!;
    await aws.world.ec2.send(new ReplaceRouteCommand({ RouteTableId: t0, DestinationCidrBlock: `${SIM_OVERLAY_VIP}/32`, NetworkInterfaceId: stranger }));
    await aws.world.ec2.send(new DeleteRouteCommand({ RouteTableId: t1, DestinationCidrBlock: `${SIM_OVERLAY_VIP}/32` }));
    await aws.world.ec2.send(new AssociateAddressCommand({ AllocationId: aws.world.settings.eipAllocationId, NetworkInterfaceId: stranger, AllowReassociation: true }));
    expect((await problems(aws.world.id(0))).length).toBe(3);
    await aws.world.beat(aws.clock.now());
    const r = await run(reconcile);
    expect(r.outcome, r.reason).toBe('converged');
    expect(r.sequentialMutations).toBe(1);
    expect(aws.proxy.calls.some((c) => c.action === 'CreateRoute' && c.status === 200)).toBe(true);
    expect(await problems(aws.world.id(0))).toEqual([]);
  });

  describe('a crash after each mutation of a failover, then the next invocation', () => {
    // The failover's wave makes 4 mutations (the EIP and 3 routes), concurrently.
    for (const n of [1, 2, 3, 4]) {
      it(`converges after a crash right after mutation ${n}`, async () => {
        await placeOn0();
        await failMaster();
        aws.proxy.configure({ crashAfterMutations: n, latencyMs: (a) => (a === 'AssociateAddress' ? 100 * n : 100) });
        const crashed = await run(alarmOn0).catch((e: Error) => e);
        expect(aws.proxy.dead, 'the crash was injected').toBe(true);
        expect(crashed instanceof Error || crashed.outcome !== 'converged').toBe(true);
        aws.proxy.revive();
        aws.clock.advance(40_000); // the dead run's lease expires
        await aws.world.beat(aws.clock.now(), [aws.world.id(1)]);
        const r = await run(alarmOn0);
        // A crash inside the wave may leave nothing to do (the other calls landed).
        expect(['converged', 'no-op'], r.reason).toContain(r.outcome);
        expect(r.ec2Mutations).toBeLessThanOrEqual(4 - n + 1);
        expect(await problems(aws.world.id(1))).toEqual([]);
      });
    }
  });

  it('10 concurrent invocations leave the EIP and every route on the survivor', async () => {
    await placeOn0();
    await failMaster();
    aws.proxy.configure({ latencyMs: (a) => (a.startsWith('Describe') ? 150 : 400) });
    const stop = aws.world.keepBeating(aws.clock, [aws.world.id(1)]);
    // Nine wait for the lease while one works (simulated time slowed so their polls do not outrun it).
    const results = await aws.clock.slower(50, () =>
      Promise.all(Array.from({ length: 10 }, (_, i) => run(i % 2 ? alarmOn0 : { kind: 'failover', from: aws.world.id(0), reason: 'peer-heartbeat-lost', via: 'fast-path' }))),
    );
    await stop();
    const why = JSON.stringify(results.map((r) => [r.outcome, r.reason]));
    expect(results.filter((r) => r.outcome === 'converged'), why).toHaveLength(1);
    expect(results.every((r) => ['converged', 'no-op', 'superseded'].includes(r.outcome)), why).toBe(true);
    expect(aws.proxy.calls.filter((c) => c.action === 'AssociateAddress' && c.status === 200).length).toBeLessThanOrEqual(2);
    expect(await problems(aws.world.id(1))).toEqual([]);
  });

  it('refuses an unhealthy survivor and leaves the VIP where it is; with both down it changes nothing', async () => {
    await placeOn0();
    // lb1 stops beating; lb0 is healthy: an explicit move to lb1 is refused.
    aws.clock.advance(40_000);
    await aws.world.beat(aws.clock.now(), [aws.world.id(0)]);
    aws.proxy.configure({});
    const refused = await run({ kind: 'failover', to: aws.world.id(1), reason: 'maintenance', via: 'manual' });
    expect(refused.ok).toBe(false);
    expect(refused.ec2Mutations).toBe(0);
    expect(await problems(aws.world.id(0))).toEqual([]);
    // Both down.
    await aws.world.stop(aws.world.id(0));
    await aws.world.stop(aws.world.id(1));
    aws.clock.advance(40_000);
    const none = await run(alarmOn0);
    expect(none.outcome).toBe('no-healthy-instance');
    expect(none.ec2Mutations).toBe(0);
    expect(await problems(aws.world.id(0))).toEqual([]);
  });

  it('an overlay VIP inside the VPC’s CIDR is refused as AWS refuses it, and the run says so', async () => {
    await aws.moto.reset();
    aws.world.destroy();
    aws.world = new World(aws.moto.endpoint);
    await aws.world.seed({ strategy: 'route', vip: '100.64.240.10' });
    await aws.world.beat(aws.clock.now());
    const r = await run(reconcile);
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/more specific than one of this VPC's CIDR blocks/);
  });

  it('teardown removes every VIP route and the EIP association; automatic triggers then change nothing', async () => {
    await placeOn0();
    const r = await run({ kind: 'teardown', via: 'manual' });
    expect(r.outcome, r.reason).toBe('torn-down');
    const tables = (await aws.world.ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: aws.world.settings.routeTableIds }))).RouteTables ?? [];
    expect(tables.flatMap((t) => t.Routes ?? []).filter((x) => x.DestinationCidrBlock === `${SIM_OVERLAY_VIP}/32`)).toEqual([]);
    expect((await aws.proxy.addressesAsAws()).find((a) => a.AllocationId === aws.world.settings.eipAllocationId)?.AssociationId).toBeUndefined();
    await aws.world.beat(aws.clock.now());
    expect((await run(alarmOn0)).ec2Mutations).toBe(0);
  });
});
