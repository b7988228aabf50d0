/**
 * VIP groups against the emulator: a run for one group reads, fences and changes only that group's
 * lease and floating resources — even while another group's resources sit in the same VPC, on the
 * same instances. (Fails if the adapter's group slicing or the per-group lease is missed.)
 */
import { AllocateAddressCommand, CreateRouteTableCommand, DescribeNetworkInterfacesCommand, DescribeSubnetsCommand } from '@aws-sdk/client-ec2';
import { DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { describe, expect, it } from 'vitest';
import { DEFAULT_GROUP, ROLE, TAG } from '../../lib/contract.ts';
import type { Command } from '../../lambda/failover/events.ts';
import type { Settings } from '../../lambda/failover/settings.ts';
import { CREDENTIALS, World } from '../../sim/world.ts';
import { emulatedAws } from '../harness/emulated-aws.ts';
import { motoAvailable } from '../harness/prerequisites.ts';

const reconcile: Command = { kind: 'reconcile', via: 'manual' };

describe.skipIf(!motoAvailable)('VIP groups: each run is sliced to its group', () => {
  const aws = emulatedAws();

  /** Blue: a second group in the same VPC — its own block, VIP, EIP and floating route table. */
  async function blueSettings(): Promise<Partial<Settings>> {
    const ec2 = aws.world.ec2;
    const vpcId = aws.world.settings.vpcId;
    const eip = (await ec2.send(new AllocateAddressCommand({ Domain: 'vpc' }))).AllocationId!;
    const rtb = (await ec2.send(new CreateRouteTableCommand({ VpcId: vpcId, TagSpecifications: [{ ResourceType: 'route-table', Tags: [{ Key: TAG.role, Value: ROLE.floatingRouteTable }] }] }))).RouteTable!.RouteTableId!;
    return { group: 'blue', cloudCidrBlock: '100.64.249.0/24', vip: '100.64.249.254', eipAllocationId: eip, floatingRouteTableId: rtb };
  }

  const run = (command: Command, settings: Partial<Settings> = {}) =>
    aws.world.orchestrator(aws.proxy.endpoint, aws.clock, { settings }).orchestrator.run(command, aws.clock.now() + 170_000);

  /** Each group's loxi-eni (by its group tag; none is DEFAULT_GROUP) and where it is attached; each group's floating subnets. */
  async function byGroup() {
    const vpc = aws.world.settings.vpcId;
    const [enis, subnets] = await Promise.all([
      aws.world.ec2.send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'vpc-id', Values: [vpc] }, { Name: `tag:${TAG.role}`, Values: [ROLE.loxiEni] }] })),
      aws.world.ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: 'vpc-id', Values: [vpc] }, { Name: `tag:${TAG.role}`, Values: [ROLE.floatingSubnet] }] })),
    ]);
    const group = (tags: { Key?: string; Value?: string }[] | undefined) => tags?.find((t) => t.Key === TAG.group)?.Value ?? DEFAULT_GROUP;
    const out: Record<string, { eni: string; ip: string; on: string | undefined; subnets: string[] }[]> = {};
    for (const n of enis.NetworkInterfaces ?? []) {
      const g = group(n.TagSet);
      (out[g] ??= []).push({ eni: n.NetworkInterfaceId!, ip: n.PrivateIpAddress!, on: n.Attachment?.InstanceId, subnets: (subnets.Subnets ?? []).filter((s) => group(s.Tags) === g).map((s) => s.CidrBlock!) });
    }
    return out;
  }

  it('places and moves two groups independently: a run for one never touches the other’s subnet, ENI or lease', async () => {
    await aws.world.beat(aws.clock.now());
    const placed = await run(reconcile);
    expect(placed.outcome, placed.reason).toBe('converged');
    const blue = await blueSettings();
    const bluePlaced = await run(reconcile, blue);
    expect(bluePlaced.outcome, bluePlaced.reason).toBe('converged');
    const id0 = aws.world.id(0);
    const id1 = aws.world.id(1);
    const before = await byGroup();
    expect(before[DEFAULT_GROUP]).toEqual([{ eni: expect.any(String), ip: aws.world.config.vip, on: id0, subnets: [aws.world.config.cloudCidrBlock] }]);
    expect(before.blue).toEqual([{ eni: expect.any(String), ip: '100.64.249.254', on: id0, subnets: ['100.64.249.0/24'] }]);

    // Lb0's agent dies. The default group's run moves only its own VIP: blue's ENI and subnet stay as they were.
    await aws.world.stop(id0);
    aws.clock.advance(40_000);
    await aws.world.beat(aws.clock.now(), [id1]);
    const lost: Command = { kind: 'failover', from: id0, reason: 'peer-heartbeat-lost', via: 'fast-path' };
    const moved = await run(lost);
    expect(moved.outcome, moved.reason).toBe('converged');
    expect(moved.owner).toBe(id1);
    const mid = await byGroup();
    expect(mid[DEFAULT_GROUP]).toEqual([{ eni: expect.any(String), ip: aws.world.config.vip, on: id1, subnets: [aws.world.config.cloudCidrBlock] }]);
    expect(mid.blue).toEqual(before.blue);

    // Blue's own run then moves blue, and leaves the default group where it is.
    const blueMoved = await run(lost, blue);
    expect(blueMoved.outcome, blueMoved.reason).toBe('converged');
    const after = await byGroup();
    expect(after.blue).toEqual([{ eni: expect.any(String), ip: '100.64.249.254', on: id1, subnets: ['100.64.249.0/24'] }]);
    expect(after[DEFAULT_GROUP]).toEqual(mid[DEFAULT_GROUP]);

    // Two leases, each with its own epochs: the default group's under the key a deployment without groups has.
    const ddb = new DynamoDBClient({ region: 'us-east-1', endpoint: aws.moto.endpoint, credentials: CREDENTIALS });
    const items = (await ddb.send(new ScanCommand({ TableName: 'lease' }))).Items ?? [];
    ddb.destroy();
    const epochs = Object.fromEntries(items.map((i) => [i.pk!.S!, Number(i.epoch!.N)]));
    expect(epochs).toEqual({ 'lease#loxiha-sim': 2, 'lease#loxiha-sim#group#blue': 2 });
    expect(moved.epoch).toBe(2);
    expect(blueMoved.epoch).toBe(2);
  });
});

/** Three slots in three AZs, three groups, each placed on its own slot by one reconcile; then an AZ is lost. */
const THREE_AZS = { availabilityZones: ['us-east-1a', 'us-east-1b', 'us-east-1c'], lbSubnetCidrs: ['100.64.218.0/24', '100.64.228.0/24', '100.64.238.0/24'] };
for (const strategy of ['eni', 'route'] as const) {
  describe.skipIf(!motoAvailable)(`VIP groups over three AZs (${strategy}): an AZ lost moves its group alone`, () => {
    const aws = emulatedAws(async (endpoint) => {
      const w = new World(endpoint, THREE_AZS);
      // c5.xlarge attaches 4 interfaces: 3 beside the primary, room for a second group's loxi-eni.
      await w.seed({ strategy, instanceType: 'c5.xlarge' });
      await w.addGroups(2);
      return w;
    });

    it(`${strategy}: one reconcile spreads the groups one per slot; the fast path from the lost AZ's slot moves its group to another AZ and runs nothing for the others`, async () => {
      const w = aws.world;
      const deployment = () => w.deployment(aws.proxy.endpoint, aws.clock);
      await w.beat(aws.clock.now());
      const placed = await deployment().run(reconcile, aws.clock.now() + 170_000);
      expect(placed.outcome).toBe('groups');
      if (placed.outcome !== 'groups') return;
      expect(placed.ok, placed.reason).toBe(true);
      const owners = Object.fromEntries(placed.groups.map((g) => [g.group, g.result?.owner]));
      expect(owners).toEqual({ [DEFAULT_GROUP]: w.id(0), g1: w.id(1), g2: w.id(2) });

      await w.stop(w.id(2));
      aws.clock.advance(40_000);
      await w.beat(aws.clock.now(), [w.id(0), w.id(1)]);
      const before = aws.proxy.calls.length;
      const r = await deployment().run({ kind: 'failover', from: w.id(2), reason: 'peer-heartbeat-lost', via: 'fast-path' }, aws.clock.now() + 170_000);
      if (strategy === 'eni') {
        // The three groups' looks at the floating subnets went out as one read; the moving group's own run read them once more.
        expect(aws.proxy.calls.slice(before).filter((c) => c.action === 'DescribeSubnets')).toHaveLength(2);
      }
      if (r.outcome !== 'groups') throw new Error('expected the coordinator');
      expect(r.ok, r.reason).toBe(true);
      expect(r.groups.map((g) => [g.group, g.result?.outcome, g.result?.moved])).toEqual([['g2', 'converged', true]]);
      const newOwner = r.groups[0]!.result!.owner;
      expect([w.id(0), w.id(1)]).toContain(newOwner);
      // Every group is where it should be, as the function itself reads it.
      const status = await deployment().run({ kind: 'status' }, aws.clock.now() + 60_000);
      if (status.outcome !== 'groups') throw new Error('expected the coordinator');
      expect(Object.fromEntries(status.groups.map((g) => [g.group, g.result?.owner]))).toEqual({ [DEFAULT_GROUP]: w.id(0), g1: w.id(1), g2: newOwner });

      // The AZ comes back. With failback, the schedule's reconcile (outside the hold-down) returns g2 to its
      // preferred slot as a planned move — and nothing else moves; without failback it stays.
      await w.start(w.id(2));
      aws.clock.advance(120_000);
      await w.beat(aws.clock.now());
      const stays = await deployment().run({ kind: 'reconcile', via: 'schedule' }, aws.clock.now() + 170_000);
      if (stays.outcome !== 'groups') throw new Error('expected the coordinator');
      expect(stays.groups.filter((g) => g.result?.moved)).toEqual([]);
      const failback = w.deployment(aws.proxy.endpoint, aws.clock, { settings: { failback: 'preferred' } });
      const back = await failback.run({ kind: 'reconcile', via: 'schedule' }, aws.clock.now() + 170_000);
      if (back.outcome !== 'groups') throw new Error('expected the coordinator');
      expect(back.ok, back.reason).toBe(true);
      expect(back.groups.filter((g) => g.result?.moved).map((g) => [g.group, g.result?.owner, g.result?.reason])).toEqual([['g2', w.id(2), expect.stringMatching(/failback to the group's preferred slot/)]]);
    });
  });
}

describe.skipIf(!motoAvailable)('VIP groups with eni: a slot holds no more groups than its instance has interfaces for', () => {
  const aws = emulatedAws(async (endpoint) => {
    const w = new World(endpoint, THREE_AZS);
    // m1.small attaches 2 interfaces: one beside the primary, so one group per slot.
    await w.seed({ strategy: 'eni', instanceType: 'm1.small' });
    await w.addGroups(2);
    return w;
  });

  it('an AZ lost while every survivor already holds a group: the group is reported unplaced and nothing is moved or overfilled', async () => {
    const w = aws.world;
    await w.beat(aws.clock.now());
    const placed = await w.deployment(aws.proxy.endpoint, aws.clock).run(reconcile, aws.clock.now() + 170_000);
    if (placed.outcome !== 'groups') throw new Error('expected the coordinator');
    expect(placed.ok, placed.reason).toBe(true);
    await w.stop(w.id(2));
    aws.clock.advance(40_000);
    await w.beat(aws.clock.now(), [w.id(0), w.id(1)]);
    const before = aws.proxy.counts().mutations;
    const r = await w.deployment(aws.proxy.endpoint, aws.clock).run({ kind: 'failover', from: w.id(2), reason: 'peer-heartbeat-lost', via: 'fast-path' }, aws.clock.now() + 170_000);
    if (r.outcome !== 'groups') throw new Error('expected the coordinator');
    expect(r.groups).toEqual([]);
    expect(r.ok).toBe(false);
    expect(r.placement.unplaced).toEqual([{ group: 'g2', why: 'every usable slot is full (at the spread bound or its interface limit)' }]);
    expect(r.reason).toMatch(/unplaced: g2/);
    expect(aws.proxy.counts().mutations).toBe(before);
  });
});
