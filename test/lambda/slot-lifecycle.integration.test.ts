/**
 * The slots' Auto Scaling lifecycle actions against the emulator: moto has Auto Scaling groups but no
 * lifecycle actions, so the AWS-behaviour layer models them (sim/slot-groups.ts: an instance waits in
 * Terminating:Wait / Pending:Wait until CompleteLifecycleAction or the hook's timeout; EventBridge
 * delivers the action to the function). The function runs as the handler builds it, through the
 * proxy, in simulated time.
 */
import { DescribeInstanceAttributeCommand, DescribeInstancesCommand, DescribeNetworkInterfacesCommand } from '@aws-sdk/client-ec2';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ROLE, SLOT_INTERFACE_DEVICE_INDEX, TAG } from '../../lib/contract.ts';
import { parseEvent } from '../../lambda/failover/events.ts';
import type { LifecycleResult } from '../../lambda/failover/instance-lifecycle.ts';
import { RolloutFailedError, type RolloutResult } from '../../lambda/failover/rollout.ts';
import type { SlotGroups } from '../../sim/slot-groups.ts';
import { SIM_OVERLAY_VIP, World } from '../../sim/world.ts';
import { type EmulatedAws, emulatedAws } from '../harness/emulated-aws.ts';
import { motoAvailable } from '../harness/prerequisites.ts';

let aws: EmulatedAws;

describe.skipIf(!motoAvailable)('LB slots: lifecycle actions against the emulator', () => {
  aws = emulatedAws(async (endpoint) => {
    const w = new World(endpoint);
    await w.seed({ slots: true });
    return w;
  });

  let groups: SlotGroups;
  let runs: Promise<LifecycleResult | Error>[];
  let results: (LifecycleResult | Error)[];
  let delivered: Record<string, unknown>[];
  let stopBeating: () => Promise<void>;
  /** Slots whose instances do not beat (their agent is not up). */
  let silent: Set<number>;

  /** EventBridge → the function: one run per delivery, as the handler runs it. */
  const run = (event: Record<string, unknown>) => {
    const command = parseEvent(event, aws.world.config.deploymentId).command;
    if (command.kind !== 'instance-lifecycle') throw new Error(`not a lifecycle action: ${command.kind}`);
    return aws.world
      .orchestrator(aws.proxy.endpoint, aws.clock)
      // Simulated time also runs while moto answers (real milliseconds): a run gets a roomy deadline here.
      .instanceLifecycle.run(command, aws.clock.now() + 600_000)
      .catch((e: Error) => e);
  };

  /** Waits until every delivery so far (and those they caused) has run. */
  async function settle(): Promise<void> {
    while (runs.length) {
      const batch = runs.splice(0);
      results.push(...(await Promise.all(batch)));
    }
  }

  beforeEach(async () => {
    runs = [];
    results = [];
    delivered = [];
    silent = new Set();
    groups = aws.world.slotGroups(aws.clock, (event) => {
      delivered.push(event);
      runs.push(run(event));
    });
    aws.proxy.slotGroups = groups;
    // Every slot's current instance beats every 5 s (a replacement as soon as it is there), as its agent would.
    let on = true;
    const loop = (async () => {
      while (on) {
        await aws.world.beat(aws.clock.now(), aws.world.instances.filter((i) => !silent.has(i.index)).map((i) => i.id));
        await aws.clock.sleep(5000);
      }
    })();
    stopBeating = async () => {
      on = false;
      await loop;
    };
    await aws.clock.sleep(1000);
    const r = await aws.world.orchestrator(aws.proxy.endpoint, aws.clock).orchestrator.run({ kind: 'reconcile', via: 'manual' }, aws.clock.now() + 170_000);
    expect(r.outcome, r.reason).toBe('converged');
    expect(r.owner).toBe(aws.world.id(0));
  });

  afterEach(async () => {
    await stopBeating();
    aws.proxy.slotGroups = undefined;
  });

  const slotInterface = async (slot: number) =>
    (
      await aws.world.ec2.send(
        new DescribeNetworkInterfacesCommand({ Filters: [{ Name: `tag:${TAG.role}`, Values: [ROLE.slotInterface] }, { Name: `tag:${TAG.instanceIndex}`, Values: [String(slot)] }] }),
      )
    ).NetworkInterfaces![0]!;
  const stateOf = async (id: string) => (await aws.world.ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!.State!.Name;
  const ok = (r: LifecycleResult | Error): LifecycleResult => {
    if (r instanceof Error) throw r;
    return r;
  };
  const kinds = () => groups.history.map((h) => `${h.kind}${'transition' in h ? `:${h.transition}:${h.result}` : ''} slot${h.slot}`);

  it('the owner’s termination: the VIP moves first, then the instance goes; its replacement gets the slot’s interface and goes in service', async () => {
    const old0 = aws.world.id(0);
    groups.replace(0);
    await settle();
    const [terminating, launching] = results.map(ok);
    expect(terminating).toMatchObject({ transition: 'terminating', outcome: 'completed', result: 'CONTINUE', move: { moved: true, owner: aws.world.id(1) } });
    expect(launching).toMatchObject({ transition: 'launching', outcome: 'completed', result: 'CONTINUE' });
    expect(kinds()).toEqual(['terminate-action slot0', 'completed:terminating:CONTINUE slot0', 'terminated slot0', 'launched slot0', 'launch-action slot0', 'completed:launching:CONTINUE slot0', 'in-service slot0']);
    const new0 = aws.world.id(0);
    expect(new0).not.toBe(old0);
    expect(await stateOf(old0)).toBe('terminated');
    // The slot's identity followed: its interface (the slot's fixed address) is on the new instance, which forwards.
    const eni = await slotInterface(0);
    expect(eni.Attachment).toMatchObject({ InstanceId: new0, DeviceIndex: SLOT_INTERFACE_DEVICE_INDEX });
    const sdc = await aws.world.ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: new0, Attribute: 'sourceDestCheck' }));
    expect(sdc.SourceDestCheck?.Value).toBe(false);
    // One move, to the survivor, which serves the VIP whole.
    expect(results.map(ok).filter((r) => r.move?.moved)).toHaveLength(1);
    expect(await aws.world.problems(aws.world.id(1))).toEqual([]);
  });

  it('the backup’s termination lets it go at once: nothing moves', async () => {
    const mutationsBefore = aws.proxy.counts().byAction.AssociateAddress ?? 0;
    groups.replace(1);
    await settle();
    expect(ok(results[0]!)).toMatchObject({ transition: 'terminating', outcome: 'completed', move: { moved: false, owner: aws.world.id(0) } });
    expect(aws.proxy.counts().byAction.AssociateAddress ?? 0).toBe(mutationsBefore);
    expect((await slotInterface(1)).Attachment?.InstanceId).toBe(aws.world.id(1));
    expect(await aws.world.problems(aws.world.id(0))).toEqual([]);
  });

  it('both slots asked at once: the second is held until the first is back and beating, and the VIP is always on a live instance', async () => {
    groups.replace(0);
    groups.replace(1);
    await settle();
    const h = groups.history;
    const completedTerminations = h.filter((e) => e.kind === 'completed' && e.transition === 'terminating');
    expect(completedTerminations).toHaveLength(2);
    const [first, second] = completedTerminations;
    const firstBackInService = h.find((e) => e.kind === 'in-service' && e.slot === first!.slot)!;
    // The second slot let go only after the first one's replacement was in service.
    expect(h.indexOf(second!)).toBeGreaterThan(h.indexOf(firstBackInService));
    // It was held: its run tried more than once (its first look found nowhere for the VIP).
    const held = results.map(ok).find((r) => r.transition === 'terminating' && r.slot === second!.slot)!;
    expect(held.durationMs).toBeGreaterThanOrEqual(10_000);
    // Both slots are on new instances, the VIP on one of them, whole.
    for (const slot of [0, 1]) expect((await slotInterface(slot)).Attachment?.InstanceId).toBe(aws.world.id(slot));
    const owner = results.map(ok).filter((r) => r.move?.moved).at(-1)!.move!.owner!;
    expect([aws.world.id(0), aws.world.id(1)]).toContain(owner);
    expect(await aws.world.problems(owner)).toEqual([]);
  });

  it('a run that dies mid-action leaves it pending; the next delivery of the same action completes it', async () => {
    aws.proxy.configure({ crashAfterMutations: 1 });
    groups.replace(0);
    await settle();
    expect(results[0]).toBeInstanceOf(Error);
    expect(groups.pendingActions()).toHaveLength(1);
    aws.proxy.revive();
    aws.proxy.configure({});
    // EventBridge delivers it again (its retry): the lease the dead run held expires, the move completes.
    runs.push(run(delivered[0]!));
    await settle();
    const done = results.slice(1).map(ok);
    expect(done[0]).toMatchObject({ transition: 'terminating', outcome: 'completed', move: { owner: aws.world.id(1) } });
    expect(groups.pendingActions()).toHaveLength(0);
    expect(await aws.world.problems(aws.world.id(1))).toEqual([]);
  });

  /** The provider framework's polls of the rollout, every 15 s, each delivery they cause run to its end; the steps taken. */
  async function rollOut(maxPolls = 60, mustComplete = true): Promise<RolloutResult[] | Error> {
    const built = aws.world.orchestrator(aws.proxy.endpoint, aws.clock);
    const steps: RolloutResult[] = [];
    for (let i = 0; i < maxPolls; i++) {
      try {
        steps.push(await built.rollout.step(aws.clock.now() + 120_000));
      } catch (e) {
        return e as Error;
      }
      await settle();
      if (steps.at(-1)!.complete) return steps;
      await aws.clock.sleep(15_000);
    }
    if (!mustComplete) return steps;
    throw new Error(`the rollout did not complete in ${maxPolls} polls: ${steps.at(-1)?.step.reason}`);
  }

  it('a deploy’s rollout with the VIP on slot 1: slot 0 is replaced first, then slot 1 — the VIP moves once, to a new instance, and every slot ends on the new template', async () => {
    const moved = await aws.world.orchestrator(aws.proxy.endpoint, aws.clock).orchestrator.run({ kind: 'failover', to: aws.world.id(1), reason: 'test', via: 'manual' }, aws.clock.now() + 170_000);
    expect(moved.owner).toBe(aws.world.id(1));
    const [old0, old1] = [aws.world.id(0), aws.world.id(1)];
    groups.setTemplate(0, '2');
    groups.setTemplate(1, '2');
    const steps = await rollOut();
    if (steps instanceof Error) throw steps;
    expect(steps.filter((s) => s.replaced).map((s) => s.replaced)).toEqual([
      { slot: 0, instanceId: old0 },
      { slot: 1, instanceId: old1 },
    ]);
    // Slot 1 (the owner) was asked for only once slot 0's new instance was in service.
    const h = groups.history;
    expect(h.findIndex((e) => e.kind === 'terminate-action' && e.slot === 1)).toBeGreaterThan(h.findIndex((e) => e.kind === 'in-service' && e.slot === 0));
    const moves = results.map(ok).filter((r) => r.move?.moved);
    expect(moves).toHaveLength(1);
    expect(moves[0]!.move).toMatchObject({ previousOwner: old1, owner: aws.world.id(0) });
    for (const slot of [0, 1]) expect(groups.templateOf(aws.world.id(slot))).toBe('2');
    expect([aws.world.id(0), aws.world.id(1)]).not.toContain(old0);
    expect([aws.world.id(0), aws.world.id(1)]).not.toContain(old1);
    expect(await aws.world.problems(aws.world.id(0))).toEqual([]);
  });

  it('a rollout whose new instance never reports ready fails (CloudFormation rolls back) with the VIP still on the old owner, whose slot was never touched', async () => {
    const owner = aws.world.id(0);
    groups.setTemplate(0, '2');
    groups.setTemplate(1, '2');
    // Slot 1's agent never beats: the new instance comes up silent.
    silent.add(1);
    const first = await rollOut(3, false);
    expect(first).not.toBeInstanceOf(Error);
    expect((first as RolloutResult[]).at(-1)!.step.reason).toMatch(/slot 1's new instance .* is not ready yet \(no agent heartbeat seen\)/);
    expect(groups.templateOf(aws.world.id(1))).toBe('2');
    aws.clock.advance(16 * 60_000);
    await aws.clock.sleep(6_000); // the owner beats again after the jump
    const failed = await rollOut(2);
    expect(failed).toBeInstanceOf(RolloutFailedError);
    expect((failed as Error).message).toMatch(/slot 1's new instance .* did not become ready within 15 min/);
    expect(groups.history.filter((e) => e.kind === 'terminate-action' && e.slot === 0)).toEqual([]);
    expect(aws.world.id(0)).toBe(owner);
    expect(await aws.world.problems(owner)).toEqual([]);
  });

  it('a replacement that never reports in is never given the VIP: the survivor’s own termination is held until the hook’s timeout', async () => {
    silent.add(0);
    groups.replace(0);
    await settle();
    // The VIP went to lb1; slot 0's replacement is in service (its interface attached) but its agent never beats.
    expect(await aws.world.problems(aws.world.id(1))).toEqual([]);
    groups.replace(1);
    await settle();
    const held = results.map(ok).at(-1)!;
    expect(held).toMatchObject({ transition: 'terminating', slot: 1, ok: false, outcome: 'timed-out' });
    expect(held.reason).toMatch(/no healthy instance|not healthy|no agent heartbeat/);
    // The VIP stayed on the instance being asked for; AWS's own bound (the hook's timeout) is what lets it go.
    expect(await aws.world.problems(aws.world.id(1))).toEqual([]);
    expect(groups.pendingActions().map((a) => a.slot)).toEqual([1]);
    // Past the hook's timeout (no more heartbeats) AWS terminates it anyway: the hold is bounded.
    aws.clock.advance(300_000);
    await groups.tick();
    expect(kinds()).toContain('completed:terminating:timeout slot1');
    await settle();
  });
});

describe.skipIf(!motoAvailable)('LB slots with strategy route: the ingress IP lives on the slot’s interface', () => {
  const env = emulatedAws(async (endpoint) => {
    const w = new World(endpoint, { strategy: 'route', vip: SIM_OVERLAY_VIP });
    await w.seed({ slots: true });
    return w;
  });

  it('the owner’s termination moves the EIP and the VIP routes to the other slot first; the replacement gets the interface, its ingress IP with it', async () => {
    const runs: Promise<LifecycleResult>[] = [];
    const groups = env.world.slotGroups(env.clock, (event) => {
      const command = parseEvent(event, env.world.config.deploymentId).command;
      if (command.kind !== 'instance-lifecycle') throw new Error(command.kind);
      runs.push(env.world.orchestrator(env.proxy.endpoint, env.clock).instanceLifecycle.run(command, env.clock.now() + 600_000));
    });
    env.proxy.slotGroups = groups;
    // Every slot's current instance beats (a replacement as soon as it is there).
    let on = true;
    const loop = (async () => {
      while (on) {
        await env.world.beat(env.clock.now(), env.world.instances.map((i) => i.id));
        await env.clock.sleep(5000);
      }
    })();
    const stop = async () => {
      on = false;
      await loop;
    };
    await env.clock.sleep(1000);
    try {
      const placed = await env.world.orchestrator(env.proxy.endpoint, env.clock).orchestrator.run({ kind: 'reconcile', via: 'manual' }, env.clock.now() + 170_000);
      expect(placed.outcome, placed.reason).toBe('converged');
      expect(await env.world.routeProblems(env.world.id(0), env.proxy)).toEqual([]);
      const old0 = env.world.id(0);
      groups.replace(0);
      while (runs.length) await Promise.all(runs.splice(0));
      expect(await env.world.routeProblems(env.world.id(1), env.proxy)).toEqual([]);
      const new0 = env.world.id(0);
      expect(new0).not.toBe(old0);
      const eni = (await env.world.ec2.send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: `tag:${TAG.role}`, Values: [ROLE.slotInterface] }, { Name: `tag:${TAG.instanceIndex}`, Values: ['0'] }] }))).NetworkInterfaces![0]!;
      expect(eni.Attachment?.InstanceId).toBe(new0);
      expect((eni.PrivateIpAddresses ?? []).map((a) => a.PrivateIpAddress)).toContain(env.world.settings.ingressIps![0]);
    } finally {
      await stop();
      env.proxy.slotGroups = undefined;
    }
  });
});
