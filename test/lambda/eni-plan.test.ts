/**
 * The ENI planner over every half-done state a crash can leave. An in-memory model of EC2
 * (with AWS's refusals: InUse, DependencyViolation, CIDR conflicts, double attach) applies
 * steps to a snapshot, so each plan is checked by executing it, not by reading it.
 */
import { describe, expect, it } from 'vitest';
import { CREATED, EniPlanner, type EniSnapshot, type EniStep, lowestFreeDeviceIndex } from '../../lambda/failover/strategy/eni-plan.ts';

const VIP = '100.64.248.254';
const BLOCK = '100.64.248.0/24';
const A = 'i-000000000000000a0';
const B = 'i-000000000000000b0';

// The planner alone: no adapter, no clock.
const strategy = new EniPlanner({ cloudCidrBlock: BLOCK, vip: VIP, eipAllocationId: 'eipalloc-1', floatingRouteTableId: 'rtb-1' });

function empty(): EniSnapshot {
  const inst = (id: string, index: number, az: string) => ({
    id,
    index,
    az,
    state: 'running' as const,
    statusOk: true,
    lastHeartbeatAt: 0,
    sessionsInSync: true,
    securityGroupIds: ['sg-lb'],
    usedDeviceIndexes: [0],
  });
  return {
    now: 0,
    instances: [inst(A, 0, 'us-east-1a'), inst(B, 1, 'us-east-1b')],
    subnets: [],
    enis: [],
    eip: { allocationId: 'eipalloc-1', publicIp: '1.2.3.4', associationId: undefined, networkInterfaceId: undefined, privateIp: undefined },
  };
}

let seq = 0;
/** Applies one step to the model as AWS would, refusing what AWS refuses. */
function applyToModel(s: EniSnapshot, step: EniStep, created: Map<string, string>): void {
  const ref = (id: string) => (id.startsWith('created:') ? created.get(id)! : id);
  const eni = (id: string) => {
    const e = s.enis.find((x) => x.id === ref(id));
    if (!e) throw new Error(`InvalidNetworkInterfaceID.NotFound ${id}`);
    return e;
  };
  switch (step.op) {
    case 'confirm-sync':
      return;
    case 'detach-eni': {
      const e = eni(step.eniId);
      if (!e.attachment) throw new Error('InvalidAttachmentID.NotFound');
      e.attachment.status = 'detaching';
      return;
    }
    case 'await-detached': {
      const e = eni(step.eniId);
      if (e.attachment) {
        const owner = s.instances.find((i) => i.id === e.attachment!.instanceId)!;
        owner.usedDeviceIndexes = owner.usedDeviceIndexes.filter((d) => d !== e.attachment!.deviceIndex);
      }
      e.attachment = undefined;
      e.status = 'available';
      return;
    }
    case 'delete-eni': {
      const e = eni(step.eniId);
      // After a forced detach the delete is retried while AWS finishes it: the model finishes it here.
      if (step.afterDetach && e.attachment?.status === 'detaching') {
        const owner = s.instances.find((i) => i.id === e.attachment!.instanceId)!;
        owner.usedDeviceIndexes = owner.usedDeviceIndexes.filter((d) => d !== e.attachment!.deviceIndex);
        e.attachment = undefined;
      }
      if (e.attachment) throw new Error('InvalidNetworkInterface.InUse');
      s.enis = s.enis.filter((x) => x !== e);
      if (s.eip.networkInterfaceId === e.id) s.eip = { ...s.eip, associationId: undefined, networkInterfaceId: undefined, privateIp: undefined };
      return;
    }
    case 'delete-subnet':
      if (s.enis.some((e) => e.subnetId === step.subnetId)) throw new Error('DependencyViolation');
      s.subnets = s.subnets.filter((x) => x.id !== step.subnetId);
      return;
    case 'create-subnet': {
      if (s.subnets.some((x) => x.cidr === step.cidr)) throw new Error('InvalidSubnet.Conflict');
      const id = `subnet-${++seq}`;
      s.subnets.push({ id, az: step.az, cidr: step.cidr, routeTableAssociationId: undefined, epoch: 1 });
      created.set(CREATED.subnet, id);
      return;
    }
    case 'associate-route-table': {
      const sub = s.subnets.find((x) => x.id === ref(step.subnetId));
      if (!sub) throw new Error('InvalidSubnetID.NotFound');
      if (sub.routeTableAssociationId) throw new Error('Resource.AlreadyAssociated');
      sub.routeTableAssociationId = `rtbassoc-${++seq}`;
      return;
    }
    case 'create-eni': {
      const sub = s.subnets.find((x) => x.id === ref(step.subnetId));
      if (!sub) throw new Error('InvalidSubnetID.NotFound');
      if (s.enis.some((e) => e.subnetId === sub.id && e.privateIp === VIP)) throw new Error('InvalidIPAddress.InUse');
      const id = `eni-${++seq}`;
      s.enis.push({ id, subnetId: sub.id, az: sub.az, privateIp: VIP, status: 'available', attachment: undefined, sourceDestCheck: true, epoch: 1 });
      created.set(CREATED.eni, id);
      return;
    }
    case 'disable-source-dest-check':
      eni(step.eniId).sourceDestCheck = false;
      return;
    case 'attach-eni': {
      const e = eni(step.eniId);
      if (e.attachment) throw new Error('already attached');
      const inst = s.instances.find((i) => i.id === step.instanceId)!;
      if (inst.az !== e.az) throw new Error('ENI and instance in different AZs');
      if (inst.usedDeviceIndexes.includes(step.deviceIndex)) throw new Error('device index in use');
      inst.usedDeviceIndexes.push(step.deviceIndex);
      // AWS completes it a moment later; the model has no time: it is attached when read back.
      e.attachment = { id: `eni-attach-${++seq}`, instanceId: step.instanceId, status: 'attached', deviceIndex: step.deviceIndex };
      e.status = 'in-use';
      return;
    }
    case 'associate-eip': {
      const e = eni(step.eniId);
      s.eip = { ...s.eip, associationId: `eipassoc-${++seq}`, networkInterfaceId: e.id, privateIp: e.privateIp };
      return;
    }
    case 'disassociate-eip':
      s.eip = { ...s.eip, associationId: undefined, networkInterfaceId: undefined, privateIp: undefined };
      return;
  }
}

function execute(s: EniSnapshot, steps: EniStep[], stopAfter = Infinity): number {
  const created = new Map<string, string>();
  let n = 0;
  for (const step of steps) {
    if (n >= stopAfter) break;
    applyToModel(s, step, created);
    n++;
  }
  return n;
}

const clone = (s: EniSnapshot): EniSnapshot => structuredClone(s);

function converge(s: EniSnapshot, owner: string): EniStep[] {
  const steps = strategy.plan(s, owner, { epoch: 2, forceDetach: false });
  execute(s, steps);
  return steps;
}

function onA(): EniSnapshot {
  const s = empty();
  converge(s, A);
  return s;
}

describe('ENI planner', () => {
  it('places the VIP from nothing and verifies; a second plan is empty', () => {
    const s = empty();
    const steps = converge(s, A);
    expect(steps.map((x) => x.op)).toEqual(['create-subnet', 'create-eni', 'associate-route-table', 'attach-eni', 'associate-eip', 'disable-source-dest-check']);
    expect(strategy.verify(s, A)).toEqual([]);
    expect(strategy.plan(s, A, { epoch: 3, forceDetach: false })).toEqual([]);
    expect(strategy.currentOwner(s)).toBe(A);
  });

  it('fails over in at most 9 mutations and 7 sequential waves', () => {
    const s = onA();
    const steps = strategy.plan(s, B, { epoch: 2, forceDetach: false });
    expect(steps.map((x) => x.op)).toEqual([
      'detach-eni',
      'await-detached',
      'delete-eni',
      'delete-subnet',
      'create-subnet',
      'create-eni',
      // The new ENI's first uses together (after a wait for AWS to make it visible), then source/dest check.
      'associate-route-table',
      'attach-eni',
      'associate-eip',
      'disable-source-dest-check',
    ]);
    const firstUse = steps.filter((x) => x.group === 'first-use');
    expect(firstUse.map((x) => x.op)).toEqual(['associate-route-table', 'attach-eni', 'associate-eip']);
    // Each waits for the just-created subnet or ENI to be visible before its first call.
    expect(firstUse.every((x) => 'justCreated' in x && x.justCreated === true)).toBe(true);
    const mutating = steps.filter((x) => x.mutates);
    expect(mutating).toHaveLength(9);
    const waves = new Set(mutating.map((x, i) => x.group ?? `solo-${i}`));
    expect(waves.size).toBe(7);
    execute(s, steps);
    expect(strategy.verify(s, B)).toEqual([]);
  });

  it('forces the detach only when the old owner is impaired or stopped', () => {
    const healthy = strategy.plan(onA(), B, { epoch: 2, forceDetach: false });
    expect(healthy.find((x) => x.op === 'detach-eni')).toMatchObject({ force: false });
    const s = onA();
    s.instances[0]!.state = 'stopped';
    expect(strategy.plan(s, B, { epoch: 2, forceDetach: false }).find((x) => x.op === 'detach-eni')).toMatchObject({ force: true });
    const t = onA();
    t.instances[0]!.statusOk = false;
    expect(strategy.plan(t, B, { epoch: 2, forceDetach: false }).find((x) => x.op === 'detach-eni')).toMatchObject({ force: true });
  });

  it('attaches at the lowest free device index, not a fixed 1', () => {
    expect(lowestFreeDeviceIndex([0, 1, 2])).toBe(3);
    expect(lowestFreeDeviceIndex([0, 2])).toBe(1);
    const s = empty();
    s.instances[1]!.usedDeviceIndexes = [0, 1];
    expect(strategy.plan(s, B, { epoch: 1, forceDetach: false }).find((x) => x.op === 'attach-eni')).toMatchObject({ deviceIndex: 2 });
  });

  it('starts a planned move by confirming the survivor’s session sync', () => {
    expect(strategy.plan(onA(), B, { epoch: 2, forceDetach: false, confirmSync: true })[0]).toMatchObject({ op: 'confirm-sync', instanceId: B });
  });

  describe('every half-done state converges', () => {
    const full = strategy.plan(onA(), B, { epoch: 2, forceDetach: false });
    for (let k = 0; k < full.length; k++) {
      it(`after a crash following step ${k} (${full[k - 1]?.op ?? 'none'}), to the survivor and back`, () => {
        const s = onA();
        execute(s, strategy.plan(s, B, { epoch: 2, forceDetach: false }), k);
        const toB = clone(s);
        converge(toB, B);
        expect(strategy.verify(toB, B)).toEqual([]);
        expect(strategy.plan(toB, B, { epoch: 3, forceDetach: false })).toEqual([]);
        // If the decision flips (the old owner came back), the same state converges to it as well.
        const toA = clone(s);
        converge(toA, A);
        expect(strategy.verify(toA, A)).toEqual([]);
      });
    }
  });

  it('repairs drift: source/dest check turned back on, EIP moved elsewhere, route table association lost', () => {
    const s = onA();
    s.enis[0]!.sourceDestCheck = true;
    s.eip = { ...s.eip, networkInterfaceId: 'eni-other', privateIp: '100.64.218.10' };
    s.subnets[0]!.routeTableAssociationId = undefined;
    const steps = converge(s, A);
    expect(steps.map((x) => x.op)).toEqual(['associate-route-table', 'associate-eip', 'disable-source-dest-check']);
    // Nothing was created: no step waits for AWS to make anything visible.
    expect(steps.some((x) => 'justCreated' in x && x.justCreated)).toBe(false);
    expect(strategy.verify(s, A)).toEqual([]);
  });

  it('removes a stray loxi-eni (a stale actor’s) and keeps one', () => {
    const s = onA();
    s.enis.push({ id: 'eni-stray', subnetId: s.subnets[0]!.id, az: 'us-east-1a', privateIp: '100.64.248.20', status: 'available', attachment: undefined, sourceDestCheck: true, epoch: 1 });
    const steps = converge(s, A);
    expect(steps.map((x) => x.op)).toEqual(['delete-eni']);
    expect(strategy.verify(s, A)).toEqual([]);
  });

  it('waits for a detach already in progress instead of detaching again', () => {
    const s = onA();
    s.enis[0]!.attachment!.status = 'detaching';
    const steps = strategy.plan(s, B, { epoch: 2, forceDetach: false });
    expect(steps.slice(0, 2).map((x) => x.op)).toEqual(['await-detached', 'delete-eni']);
  });

  it('tears down everything it created, in an order AWS accepts', () => {
    const s = onA();
    const steps = strategy.planTeardown(s);
    execute(s, steps);
    expect(s.subnets).toEqual([]);
    expect(s.enis).toEqual([]);
    expect(s.eip.networkInterfaceId).toBeUndefined();
    expect(strategy.planTeardown(s)).toEqual([]);
  });
});
