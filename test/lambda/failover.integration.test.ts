/**
 * The orchestrator against aws.moto through the real SDK clients, with AWS's real behaviours
 * (latency, throttling, eventual consistency, slow/stuck detaches, DependencyViolation,
 * InUse, ClientToken idempotency, crashes) injected by the aws.proxy, in simulated time.
 */
import { CreateTagsCommand, DescribeRouteTablesCommand, DisassociateRouteTableCommand, ModifyNetworkInterfaceAttributeCommand } from '@aws-sdk/client-ec2';
import { describe, expect, it } from 'vitest';
import { TAG } from '../../lib/contract.ts';
import type { Command } from '../../lambda/failover/events.ts';
import type { Result } from '../../lambda/failover/orchestrator.ts';
import type { Behaviour } from '../../sim/aws-proxy.ts';
import { World } from '../../sim/world.ts';
import { type EmulatedAws, emulatedAws } from '../harness/emulated-aws.ts';
import { motoAvailable } from '../harness/prerequisites.ts';

let aws: EmulatedAws;

const reconcile: Command = { kind: 'reconcile', via: 'manual' };
const deadline = () => aws.clock.now() + 170_000;

async function run(command: Command, extra: Parameters<World['orchestrator']>[2] = {}): Promise<Result> {
  const { orchestrator } = aws.world.orchestrator(aws.proxy.endpoint, aws.clock, extra);
  return orchestrator.run(command, deadline());
}

/** Places the VIP on instance 0 (a fresh deploy's lifecycle reconcile) with no faults. */
async function placeOn0(): Promise<void> {
  await aws.world.beat(aws.clock.now());
  const r = await run(reconcile);
  expect(r.outcome, r.reason).toBe('converged');
  expect(await aws.world.problems(aws.world.id(0))).toEqual([]);
}

/**
 * Runs `command` while the instances, `ms` of simulated time into it, start reporting their session
 * tables in sync, beating on as agents do (a single report shares its metric period with the
 * out-of-sync beats before it). At the run's pace: its first look is real time spent in moto.
 */
async function runWhileInSyncAfter(ms: number, command: Command): Promise<Result> {
  return aws.clock.slower(20, async () => {
    let stop: (() => Promise<void>) | undefined;
    const reporting = aws.clock.sleep(ms).then(() => {
      stop = aws.world.keepBeating(aws.clock, aws.world.instances.map((i) => i.id));
    });
    try {
      return await run(command);
    } finally {
      await reporting;
      await stop?.();
    }
  });
}

async function failMaster(): Promise<void> {
  await aws.world.stop(aws.world.id(0));
  aws.clock.advance(40_000); // its heartbeat goes stale; lb1 keeps beating
  await aws.world.beat(aws.clock.now(), [aws.world.id(1)]);
}

describe.skipIf(!motoAvailable)('failover against the emulator with AWS behaviours', () => {
  aws = emulatedAws();

  it('places the VIP on a fresh deploy, then a second reconcile changes nothing', async () => {
    await placeOn0();
    const again = await run(reconcile);
    expect(again.outcome).toBe('no-op');
    expect(again.ec2Mutations).toBe(0);
  });

  it('moves the VIP to the survivor when the master stops (alarm on the master)', async () => {
    await placeOn0();
    await failMaster();
    const before = aws.proxy.calls.length;
    const r = await run({ kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' });
    expect(r.outcome, r.reason).toBe('converged');
    expect(r.owner).toBe(aws.world.id(1));
    expect(r.moved).toBe(true);
    expect(await aws.world.problems(aws.world.id(1))).toEqual([]);
    // The new subnet and its association are known from the answers to the writes: the run reads the
    // subnets once (to plan), no route table (the subnet it plans on is a new one), and only the ENIs
    // again (to see the attach complete).
    const reads = aws.proxy.calls.slice(before).filter((c) => c.status < 300);
    expect(reads.filter((c) => c.action === 'DescribeSubnets')).toHaveLength(1);
    expect(reads.filter((c) => c.action === 'DescribeRouteTables')).toHaveLength(0);
    expect(reads.filter((c) => c.action === 'DescribeNetworkInterfaces').length).toBeGreaterThanOrEqual(2);
  });

  it('reads the floating route table for the subnet it keeps: a reconcile in place finds a lost association and restores it', async () => {
    await placeOn0();
    const table = await aws.world.ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: [aws.world.settings.floatingRouteTableId!] }));
    const association = table.RouteTables![0]!.Associations!.find((a) => a.SubnetId)!;
    await aws.world.ec2.send(new DisassociateRouteTableCommand({ AssociationId: association.RouteTableAssociationId! }));
    expect(await aws.world.problems(aws.world.id(0))).toEqual(['floating route table not associated']);
    const before = aws.proxy.calls.length;
    const r = await run(reconcile);
    expect(r.outcome, r.reason).toBe('converged');
    expect(r.ec2Mutations).toBe(1);
    expect(aws.proxy.calls.slice(before).filter((c) => c.action === 'DescribeRouteTables' && c.status < 300)).toHaveLength(1);
    expect(await aws.world.problems(aws.world.id(0))).toEqual([]);
    // In place and whole: the next reconcile reads it again and changes nothing.
    expect((await run(reconcile)).outcome).toBe('no-op');
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
    aws.proxy.configure(hostile);
    const r = await run({ kind: 'failover', from: aws.world.id(0), reason: 'peer-heartbeat-lost', via: 'fast-path' });
    expect(r.outcome, r.reason).toBe('converged');
    expect(await aws.world.problems(aws.world.id(1))).toEqual([]);
    expect(aws.proxy.calls.some((c) => c.status === 503)).toBe(true);
    expect(aws.proxy.calls.some((c) => c.status === 400)).toBe(true);
  });

  it('moves the VIP off an instance its group is terminating as a planned move (sessions confirmed in sync), and never back onto it', async () => {
    await placeOn0();
    await aws.world.ec2.send(new CreateTagsCommand({ Resources: [aws.world.id(0)], Tags: [{ Key: TAG.draining, Value: 'true' }] }));
    // lb1 reports its session table in sync 3 s into the run: the move waits for it.
    await aws.world.beat(aws.clock.now(), undefined, false);
    const r = await runWhileInSyncAfter(3000, { kind: 'failover', from: aws.world.id(0), reason: 'instance-terminating', via: 'lifecycle-hook' });
    expect(r.outcome, r.reason).toBe('converged');
    expect(r.owner).toBe(aws.world.id(1));
    // A planned move: it waited for the survivor's sessions, and the detach is not forced: the
    // instance is alive until its group lets it go (a forced detach is for an owner known dead).
    expect(r.phases.sync).toBeGreaterThanOrEqual(2_500);
    expect(r.steps.some((s) => /^detach eni-/.test(s.step))).toBe(true);
    expect(r.steps.some((s) => /^force-detach/.test(s.step))).toBe(false);
    expect(await aws.world.problems(aws.world.id(1))).toEqual([]);
    // A scheduled reconcile with failback to the preferred instance 0 leaves it where it is.
    const again = await run({ kind: 'reconcile', via: 'schedule' }, { settings: { failback: 'preferred', holdDownSeconds: 0 } });
    expect(again.owner).toBe(aws.world.id(1));
    expect(again.moved).toBe(false);
  });

  it('forces a detach that is stuck and still converges', async () => {
    await placeOn0();
    // A planned move: the old owner is healthy, so the first detach is not forced; it never finishes.
    await aws.world.beat(aws.clock.now());
    aws.proxy.configure({ stuckDetach: true, forceDetachMs: 3000 });
    const r = await run({ kind: 'failover', to: aws.world.id(1), reason: 'maintenance', via: 'manual' });
    expect(r.outcome, r.reason).toBe('converged');
    expect(aws.proxy.calls.filter((c) => c.action === 'DetachNetworkInterface').length).toBeGreaterThanOrEqual(2);
    expect(await aws.world.problems(aws.world.id(1))).toEqual([]);
  });

  it('changes nothing when no instance is healthy', async () => {
    await placeOn0();
    const before = await aws.world.endState();
    await aws.world.stop(aws.world.id(0));
    await aws.world.stop(aws.world.id(1));
    aws.clock.advance(60_000);
    const r = await run({ kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' });
    expect(r.outcome).toBe('no-healthy-instance');
    expect(r.ec2Mutations).toBe(0);
    expect(await aws.world.endState()).toEqual(before);
  });

  it('refuses to move to an unhealthy survivor and leaves the VIP where it is', async () => {
    await placeOn0();
    aws.clock.advance(40_000);
    await aws.world.beat(aws.clock.now(), [aws.world.id(0)]); // lb1 is silent
    const r = await run({ kind: 'failover', to: aws.world.id(1), reason: 'maintenance', via: 'manual' });
    expect(r.outcome).toBe('rejected');
    expect(r.ec2Mutations).toBe(0);
    expect(await aws.world.problems(aws.world.id(0))).toEqual([]);
  });

  it('with 10 concurrent invocations ends with exactly one subnet and one loxi-eni on the survivor', async () => {
    await placeOn0();
    await failMaster();
    aws.proxy.configure({ latencyMs: (a) => (a.startsWith('Describe') ? 150 : 400), detachMs: () => 8000, forceDetachMs: 4000, notFoundAfterCreateMs: 2000 });
    const stopBeating = aws.world.keepBeating(aws.clock, [aws.world.id(1)]);
    // Nine runs wait for the lease while one works: at the default scale their polls would move
    // simulated time past the worker's lease while it waits for aws.moto in real time.
    const results = await aws.clock.slower(50, () =>
      Promise.all(
        Array.from({ length: 10 }, (_, n) =>
          run(n % 2 ? { kind: 'failover', from: aws.world.id(0), reason: 'peer-heartbeat-lost', via: 'fast-path' } : { kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' }),
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
    await aws.proxy.settle();
    expect(await aws.world.problems(aws.world.id(1))).toEqual([]);
  });

  it('an alarm arriving while a dead run still holds the lease waits for it, then completes the move and says where from', async () => {
    await placeOn0();
    await failMaster();
    // The first run dies after its second mutation (the ENI deleted): no instance holds the VIP.
    aws.proxy.configure({ crashAfterMutations: 2, detachMs: () => 3000, forceDetachMs: 2000 });
    await run({ kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' }).catch(() => undefined);
    expect(aws.proxy.dead).toBe(true);
    aws.proxy.revive();
    aws.proxy.configure({});
    // Its lease as it looks the moment it died: fresh (its last renewal), its move from lb0 recorded.
    const { lease } = aws.world.orchestrator(aws.proxy.endpoint, aws.clock);
    aws.clock.advance(40_000);
    const dead = await lease.acquire('alarm-dead', aws.clock.now());
    expect(dead.acquired).toBe(true);
    await lease.markMove('alarm-dead', dead.acquired ? dead.epoch : 0, aws.world.id(0));
    const stopBeating = aws.world.keepBeating(aws.clock, [aws.world.id(1)]);
    // Simulated time slowed: the survivor's beats would otherwise move it on while the waiting run's calls take real time.
    const r = await aws.clock.slower(20, () => run({ kind: 'failover', from: aws.world.id(0), reason: 'peer-heartbeat-lost', via: 'fast-path' }));
    await stopBeating();
    // Not "in progress" with nothing done: it waited for the dead holder's lease (9 s, never renewed again) and converged.
    expect(r.outcome, r.reason).toBe('converged');
    expect(r.ok).toBe(true);
    expect(r.leaseWaitMs).toBeGreaterThanOrEqual(8_000);
    expect(r.leaseWaitMs).toBeLessThanOrEqual(10_000);
    expect(r.previousOwner).toBe(aws.world.id(0));
    expect(r.reason).toMatch(new RegExp(`completing the move from ${aws.world.id(0)}`));
    expect(r.reason).not.toMatch(/placing the VIP/);
    expect(await aws.world.problems(aws.world.id(1))).toEqual([]);
  });

  it('the owner’s report that it lost its backup moves nothing, and no move goes to the backup until it beats again', async () => {
    await placeOn0();
    await aws.world.beat(aws.clock.now());
    const lost = await run({ kind: 'failover', from: aws.world.id(1), reason: 'peer-backup-lost', via: 'fast-path' });
    expect(lost.outcome, lost.reason).toBe('no-op');
    expect(lost.owner).toBe(aws.world.id(0));
    expect(lost.peerLost?.instanceId).toBe(aws.world.id(1));
    // lb1's last heartbeat is fresh (a rebooting backup's is): a planned move to it is refused all the same.
    const early = await run({ kind: 'failover', to: aws.world.id(1), reason: 'maintenance of lb0', via: 'manual' });
    expect(early.outcome, early.reason).toBe('rejected');
    expect(early.reason).toMatch(/its peer lost it .* and it has not beaten since/);
    await aws.clock.sleep(12_000);
    await aws.world.beat(aws.clock.now());
    const later = await run({ kind: 'failover', to: aws.world.id(1), reason: 'maintenance of lb0', via: 'manual' });
    expect(later.outcome, later.reason).toBe('converged');
    expect(await aws.world.problems(aws.world.id(1))).toEqual([]);
  });

  it('a placement starts no hold-down; a move does: an alarm inside it changes nothing, an operator’s explicit request still moves (health checks still apply)', async () => {
    await placeOn0();
    // lb1 has not caught up with lb0's sessions when lb0 goes.
    await aws.world.beat(aws.clock.now(), undefined, false);
    // Right after the placement, the peer's report that lb0 is gone is believed although lb0 still beats (a reboot looks so).
    const lost = await run({ kind: 'failover', from: aws.world.id(0), reason: 'peer-heartbeat-lost', via: 'fast-path' });
    expect(lost.outcome, lost.reason).toBe('converged');
    expect(lost.owner).toBe(aws.world.id(1));
    // The peer lost it: no wait for a session table that cannot get more in sync (the move takes no confirm-sync step).
    expect(lost.steps.map((s) => s.phase)).not.toContain('sync');
    // lb0's last heartbeat is still fresh (a rebooting instance's is), but its peer lost it: no move back to it until it beats again.
    const early = await run({ kind: 'failover', to: aws.world.id(0), reason: 'failback', via: 'manual' });
    expect(early.outcome, early.reason).toBe('rejected');
    expect(early.reason).toMatch(/its peer lost it .* and it has not beaten since/);
    // Back: a beat in a later heartbeat period than the report (the function reads 10 s periods: more than one period after it).
    await aws.clock.sleep(12_000);
    await aws.world.beat(aws.clock.now());
    // Both healthy, the VIP moved a moment ago (the hold-down is 60 s).
    const alarm = await run({ kind: 'alarm', alarmName: 'x', instanceIndex: 1, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' });
    expect(alarm.outcome, alarm.reason).toBe('no-op');
    expect(alarm.reason).toMatch(/hold-down/);
    const manual = await run({ kind: 'failover', from: aws.world.id(1), reason: 'kernel upgrade', via: 'manual' });
    expect(manual.outcome, manual.reason).toBe('converged');
    expect(manual.owner).toBe(aws.world.id(0));
    expect(manual.reason).toMatch(/operator asked/);
    // And when the request cannot be honoured (lb1, the only other instance, now silent), ok is false.
    aws.clock.advance(40_000);
    await aws.world.beat(aws.clock.now(), [aws.world.id(0)]);
    const refused = await run({ kind: 'failover', from: aws.world.id(0), reason: 'kernel upgrade', via: 'manual' });
    expect(refused.ok, refused.reason).toBe(false);
    expect(refused.outcome).toBe('no-healthy-instance');
    expect(await aws.world.problems(aws.world.id(0))).toEqual([]);
  });

  describe('a crash after each mutation, then a re-run', () => {
    // The happy-path failover makes 9 mutations: detach, delete ENI, delete subnet, create subnet,
    // create ENI, then associate route table / source-dest off / attach / EIP concurrently.
    for (let k = 1; k <= 9; k++) {
      it(`converges after a crash right after mutation ${k}`, async () => {
        await placeOn0();
        await failMaster();
        aws.proxy.configure({ crashAfterMutations: k, detachMs: () => 5000, forceDetachMs: 2000, notFoundAfterCreateMs: 1000 });
        const crashed = await run({ kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' }).catch((e: Error) => e);
        expect(aws.proxy.dead, 'the crash was injected').toBe(true);
        expect(crashed instanceof Error || crashed.outcome !== 'converged').toBe(true);
        aws.proxy.revive();
        // The dead run never released its lease: the next run waits for it to expire, then resumes.
        const { lease } = aws.world.orchestrator(aws.proxy.endpoint, aws.clock);
        expect((await lease.read()).holder).toMatch(/^alarm-/);
        aws.clock.advance(40_000);
        await aws.world.beat(aws.clock.now(), [aws.world.id(1)]);
        const r = await run(reconcile);
        // Crashes inside the last concurrent wave may leave nothing to do (the other calls of the wave landed).
        expect(['converged', 'no-op'], r.reason).toContain(r.outcome);
        await aws.proxy.settle();
        expect(await aws.world.problems(aws.world.id(1))).toEqual([]);
      });
    }
  });

  it('a run that stalls but lives keeps its lease (renewed in the background): a trigger meanwhile waits, and the stalled run finishes the move', async () => {
    await placeOn0();
    await failMaster();
    aws.proxy.configure({ detachMs: () => 3000, forceDetachMs: 2000 });
    let second: Promise<Result> | undefined;
    const stalled = aws.world.orchestrator(aws.proxy.endpoint, aws.clock, {
      afterStep: async (step) => {
        if (step.op !== 'delete-subnet' || second) return;
        // A 40 s stall (a call that hangs, a slow wait) — four lease lifetimes — while another trigger arrives.
        second = run({ kind: 'failover', from: aws.world.id(0), reason: 'peer-heartbeat-lost', via: 'fast-path' });
        for (let i = 0; i < 80; i++) await aws.clock.sleep(500);
      },
    });
    const stopBeating = aws.world.keepBeating(aws.clock, [aws.world.id(1)]);
    try {
      // Simulated time slowed: the background renewals' round trips to the emulator take real time.
      const first = await aws.clock.slower(20, () => stalled.orchestrator.run({ kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' }, aws.clock.now() + 600_000));
      expect(first.outcome, first.reason).toBe('converged');
      const r = await second!;
      expect(r.outcome, r.reason).toBe('no-op');
      // It waited for the whole stall (the live holder's lease never expired), then found the move done.
      expect(r.leaseWaitMs).toBeGreaterThanOrEqual(25_000);
    } finally {
      await stopBeating();
    }
    await aws.proxy.settle();
    expect(await aws.world.problems(aws.world.id(1))).toEqual([]);
  });

  it('stops at once, changing nothing, when it sees resources written under a newer epoch (another run is ahead of it)', async () => {
    await placeOn0();
    await failMaster();
    const { subnets } = await aws.world.endState();
    // A run with a later lease already wrote here: its epoch is on the floating subnet.
    await aws.world.ec2.send(new CreateTagsCommand({ Resources: [subnets[0]!.id], Tags: [{ Key: TAG.epoch, Value: '999' }] }));
    const before = aws.proxy.counts().mutations;
    const r = await run({ kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' });
    expect(r.outcome, r.reason).toBe('superseded');
    expect(r.reason).toMatch(/no longer ours/);
    expect(aws.proxy.counts().mutations).toBe(before);
  });

  it('gives up after 4 plan/apply rounds when the state never verifies, says what is wrong, and fails (so the trigger is retried)', async () => {
    await placeOn0();
    await failMaster();
    let undone = 0;
    // Something keeps turning source/dest check back on behind the run's back.
    const stubborn = aws.world.orchestrator(aws.proxy.endpoint, aws.clock, {
      afterStep: async (step) => {
        if (step.op !== 'disable-source-dest-check') return;
        const eni = (await aws.world.endState()).enis[0]!;
        await aws.world.ec2.send(new ModifyNetworkInterfaceAttributeCommand({ NetworkInterfaceId: eni.id, SourceDestCheck: { Value: true } }));
        undone++;
      },
    });
    const stopBeating = aws.world.keepBeating(aws.clock, [aws.world.id(1)]);
    try {
      const r = await stubborn.orchestrator.run({ kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' }, aws.clock.now() + 600_000);
      expect(r.outcome, r.reason).toBe('failed');
      expect(r.ok).toBe(false);
      expect(r.reason).toMatch(/did not converge after 4 rounds/);
      expect(r.problems?.join(' ')).toMatch(/source\/dest check on/);
      // Every round turned it off, and every time it came back.
      expect(undone).toBe(4);
      expect(r.steps.filter((s) => s.step.startsWith('turn off source/dest check')).length).toBe(4);
    } finally {
      await stopBeating();
    }
  });

  it('a planned move waits for the survivor to report in sync (up to 15 s), and moves nothing when it never does', async () => {
    await placeOn0();
    // Both healthy; lb1 says its session table is not in sync.
    await aws.world.beat(aws.clock.now(), undefined, false);
    const before = aws.proxy.counts().mutations;
    const t0 = aws.clock.now();
    const never = await aws.clock.slower(20, () => run({ kind: 'failover', to: aws.world.id(1), reason: 'maintenance', via: 'manual' }));
    expect(never.outcome, never.reason).toBe('timed-out');
    expect(never.reason).toMatch(/report sessions in sync/);
    expect(aws.clock.now() - t0).toBeGreaterThanOrEqual(15_000);
    expect(aws.proxy.counts().mutations).toBe(before);
    expect(await aws.world.problems(aws.world.id(0))).toEqual([]);
    // In sync 5 s into the wait: the move goes ahead then, not before.
    await aws.world.beat(aws.clock.now(), undefined, false);
    const t1 = aws.clock.now();
    const moved = await runWhileInSyncAfter(5000, { kind: 'failover', to: aws.world.id(1), reason: 'maintenance', via: 'manual' });
    expect(moved.outcome, moved.reason).toBe('converged');
    expect(moved.phases.sync).toBeGreaterThanOrEqual(4_500);
    expect(aws.clock.now() - t1).toBeGreaterThanOrEqual(5_000);
  });

  it('fences a stale actor: once its lease is taken over it stops before its next mutation', async () => {
    await placeOn0();
    await failMaster();
    aws.proxy.configure({ detachMs: () => 3000, forceDetachMs: 2000 });
    const thief = aws.world.orchestrator(aws.proxy.endpoint, aws.clock);
    let mutationsBefore = -1;
    let taken: Awaited<ReturnType<typeof thief.lease.acquire>> | undefined;
    const stale = aws.world.orchestrator(aws.proxy.endpoint, aws.clock, {
      afterStep: async (step) => {
        if (step.op !== 'delete-subnet' || taken) return;
        // The stale actor stalls here (a frozen process, a partition from DynamoDB) past its lease, and
        // another invocation takes over. Its background renewals are the keeper's business (tested
        // apart); here the taker's clock is simply far past the lease's expiry, renewed or not.
        aws.clock.advance(120_000);
        taken = await thief.lease.acquire('thief', aws.clock.now() + 600_000);
        mutationsBefore = aws.proxy.counts().mutations;
      },
    });
    const r = await stale.orchestrator.run({ kind: 'failover', from: aws.world.id(0), reason: 'peer-heartbeat-lost', via: 'fast-path' }, aws.clock.now() + 600_000);
    expect(taken?.acquired).toBe(true);
    expect(r.outcome).toBe('superseded');
    expect(r.reason).toMatch(/no longer ours/);
    expect(aws.proxy.counts().mutations).toBe(mutationsBefore);
  });

  it('teardown removes the EIP association, loxi-eni and the floating subnet', async () => {
    await placeOn0();
    aws.proxy.configure({ detachMs: () => 20_000, forceDetachMs: 3000, notFoundAfterCreateMs: 1000 });
    const r = await run({ kind: 'teardown', via: 'lifecycle' });
    expect(r.outcome, r.reason).toBe('torn-down');
    await aws.proxy.settle();
    const s = await aws.world.endState();
    expect(s.subnets).toEqual([]);
    expect(s.enis).toEqual([]);
    expect(s.eip.networkInterfaceId).toBeUndefined();
  });

  it('teardown waits for a lease another invocation holds, and afterwards automatic triggers re-create nothing', async () => {
    await placeOn0();
    const other = aws.world.orchestrator(aws.proxy.endpoint, aws.clock);
    const held = await other.lease.acquire('schedule-reconcile-in-flight', aws.clock.now());
    expect(held.acquired).toBe(true);
    const release = (async () => {
      await aws.clock.sleep(8_000);
      if (held.acquired) await other.lease.release('schedule-reconcile-in-flight', held.epoch, { result: 'no-op' });
    })();
    const r = await run({ kind: 'teardown', via: 'lifecycle' });
    await release;
    expect(r.outcome, r.reason).toBe('torn-down');
    await aws.proxy.settle();
    expect((await aws.world.endState()).enis).toEqual([]);

    await aws.world.beat(aws.clock.now());
    for (const command of [
      { kind: 'reconcile', via: 'schedule' },
      { kind: 'alarm', alarmName: 'x', instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via: 'direct' },
      { kind: 'failover', from: aws.world.id(0), reason: 'peer-heartbeat-lost', via: 'fast-path' },
      // cdk destroy deletes the slots' groups after the teardown: their instances' terminating actions must place nothing.
      { kind: 'failover', from: aws.world.id(0), reason: 'instance-terminating', via: 'lifecycle-hook' },
    ] as Command[]) {
      const after = await run(command);
      expect(after.outcome, after.reason).toBe('no-op');
      expect(after.reason).toMatch(/torn down/);
    }
    const s = await aws.world.endState();
    expect([s.subnets, s.enis, s.eip.networkInterfaceId]).toEqual([[], [], undefined]);

    // A deliberate reconcile (a deploy, or by hand) places the VIP again and clears the record.
    expect((await run(reconcile)).outcome).toBe('converged');
    expect(await aws.world.problems(aws.world.id(0))).toEqual([]);
    expect((await run({ kind: 'reconcile', via: 'schedule' })).outcome).toBe('no-op');
    expect((await aws.world.orchestrator(aws.proxy.endpoint, aws.clock).lease.read()).tornDownAt).toBeUndefined();
  });

  it('a lifecycle reconcile that cannot get the lease before its deadline says so (timed out), changing nothing', async () => {
    await placeOn0();
    const other = aws.world.orchestrator(aws.proxy.endpoint, aws.clock);
    expect((await other.lease.acquire('stuck', aws.clock.now())).acquired).toBe(true);
    const before = aws.proxy.counts().mutations;
    const { orchestrator } = aws.world.orchestrator(aws.proxy.endpoint, aws.clock);
    // A deadline inside the holder's lease (9 s): the run waits, then gives up saying why.
    const r = await orchestrator.run({ kind: 'reconcile', via: 'lifecycle' }, aws.clock.now() + 6_000);
    expect(r.outcome).toBe('timed-out');
    expect(r.reason).toMatch(/held the lease/);
    expect(aws.proxy.counts().mutations).toBe(before);
  });
});
