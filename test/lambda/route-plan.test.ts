/** The route strategy's pure planning: every state a crash or a person can leave converges in one concurrent wave. */
import { describe, expect, it } from 'vitest';
import type { VipRouteView } from '../../lambda/failover/aws/ec2.ts';
import type { InstanceView } from '../../lambda/failover/snapshot.ts';
import { RoutePlanner, type RouteSnapshot, type RouteStep } from '../../lambda/failover/strategy/route-plan.ts';

const VIP = '100.127.0.10';
const A = 'i-0aaaaaaaaaaaaaaa1';
const B = 'i-0bbbbbbbbbbbbbbb2';
const INGRESS = { 0: '100.64.218.11', 1: '100.64.228.11' };
const TABLES = ['rtb-0000000000000000a', 'rtb-0000000000000000b'];

// The planner alone: no adapter, no clock.
const strategy = new RoutePlanner({ vip: VIP, eipAllocationId: 'eipalloc-1', ingressIps: INGRESS });

const inst = (id: string, index: number): InstanceView => ({
  id,
  index,
  az: index === 0 ? 'us-east-1a' : 'us-east-1b',
  state: 'running',
  statusOk: true,
  lastHeartbeatAt: 0,
  sessionsInSync: true,
  securityGroupIds: [],
  usedDeviceIndexes: [0],
});

type Where = 'a' | 'b' | 'none' | 'other';
const eniOf: Record<Where, string | undefined> = { a: 'eni-a', b: 'eni-b', none: undefined, other: 'eni-someone-else' };

function snap(eip: Where, routes: (Where | 'blackhole-a')[], o: { eipOnPrimaryOf?: Where } = {}): RouteSnapshot {
  const eipEni = eniOf[o.eipOnPrimaryOf ?? eip];
  const eipIp = o.eipOnPrimaryOf ? (o.eipOnPrimaryOf === 'a' ? '100.64.218.10' : '100.64.228.10') : eip === 'a' ? INGRESS[0] : eip === 'b' ? INGRESS[1] : eip === 'other' ? '100.64.5.5' : undefined;
  return {
    now: 0,
    instances: [inst(A, 0), inst(B, 1)],
    eip: { allocationId: 'eipalloc-1', publicIp: '100.100.100.100', associationId: eipEni ? 'eipassoc-1' : undefined, networkInterfaceId: eipEni, privateIp: eipIp },
    routes: routes.map((r, i): VipRouteView => ({
      routeTableId: TABLES[i]!,
      present: r !== 'none',
      networkInterfaceId: r === 'blackhole-a' ? 'eni-a' : eniOf[r as Where],
      state: r === 'blackhole-a' ? 'blackhole' : r === 'none' ? undefined : 'active',
    })),
    holders: [
      { eniId: 'eni-a', instanceId: A, deviceIndex: 0, privateIps: ['100.64.218.10', INGRESS[0]] },
      { eniId: 'eni-b', instanceId: B, deviceIndex: 0, privateIps: ['100.64.228.10', INGRESS[1]] },
    ],
  };
}

/** What AWS holds after the steps ran (the effect of each call). */
function applied(s: RouteSnapshot, steps: RouteStep[]): RouteSnapshot {
  const next = structuredClone(s);
  for (const step of steps) {
    if (step.op === 'associate-eip') next.eip = { ...next.eip, associationId: 'eipassoc-2', networkInterfaceId: step.eniId, privateIp: step.privateIp };
    if (step.op === 'set-route') next.routes = next.routes.map((r) => (r.routeTableId === step.routeTableId ? { ...r, present: true, networkInterfaceId: step.eniId, state: 'active' } : r));
    if (step.op === 'delete-route') next.routes = next.routes.map((r) => (r.routeTableId === step.routeTableId ? { ...r, present: false, networkInterfaceId: undefined, state: undefined } : r));
    if (step.op === 'disassociate-eip') next.eip = { ...next.eip, associationId: undefined, networkInterfaceId: undefined, privateIp: undefined };
  }
  return next;
}

describe('route strategy plan', () => {
  it('moves the EIP to the survivor’s ingress IP and every route to its interface in one concurrent wave', () => {
    const s = snap('a', ['a', 'a']);
    expect(strategy.currentOwner(s)).toBe(A);
    const plan = strategy.plan(s, B, { epoch: 2, forceDetach: true });
    expect(plan.map((p) => p.describe)).toEqual([
      'associate EIP 100.100.100.100 with 100.64.228.11 on eni-b',
      `replace route ${VIP}/32 → eni-b in ${TABLES[0]}`,
      `replace route ${VIP}/32 → eni-b in ${TABLES[1]}`,
    ]);
    expect(new Set(plan.map((p) => p.group))).toEqual(new Set(['move']));
    expect(plan.every((p) => p.mutates)).toBe(true);
    expect(strategy.verify(s, B)).toHaveLength(3);
    const after = applied(s, plan);
    expect(strategy.verify(after, B)).toEqual([]);
    expect(strategy.currentOwner(after)).toBe(B);
    expect(strategy.plan(after, B, { epoch: 3, forceDetach: false })).toEqual([]);
  });

  it('plans only what a crash left undone, and creates a route a table lacks', () => {
    expect(strategy.plan(snap('b', ['b', 'a']), B, { epoch: 2, forceDetach: false }).map((p) => p.op)).toEqual(['set-route']);
    expect(strategy.plan(snap('a', ['b', 'b']), B, { epoch: 2, forceDetach: false }).map((p) => p.op)).toEqual(['associate-eip']);
    const missing = strategy.plan(snap('b', ['none', 'b']), B, { epoch: 2, forceDetach: false });
    expect(missing).toMatchObject([{ op: 'set-route', routeTableId: TABLES[0], exists: false }]);
    expect(strategy.plan(snap('b', ['blackhole-a', 'b']), B, { epoch: 2, forceDetach: false })).toMatchObject([{ op: 'set-route', exists: true }]);
  });

  it('does not count an EIP on the owner’s primary address (what moto records when it ignores PrivateIpAddress) as placed', () => {
    const s = snap('b', ['b', 'b'], { eipOnPrimaryOf: 'b' });
    expect(strategy.verify(s, B)).toEqual([expect.stringMatching(/EIP .* is on 100\.64\.228\.10 \(eni-b\), not 100\.64\.228\.11 on eni-b/)]);
    expect(strategy.plan(s, B, { epoch: 2, forceDetach: false }).map((p) => p.op)).toEqual(['associate-eip']);
  });

  it('converges from every combination of EIP and route states, in one wave', () => {
    const places: (Where | 'blackhole-a')[] = ['a', 'b', 'none', 'other', 'blackhole-a'];
    let states = 0;
    for (const eip of ['a', 'b', 'none', 'other'] as Where[]) {
      for (const r0 of places) {
        for (const r1 of places) {
          const s = snap(eip, [r0, r1]);
          for (const owner of [A, B]) {
            const plan = strategy.plan(s, owner, { epoch: 2, forceDetach: false });
            expect(new Set(plan.map((p) => p.group)).size).toBeLessThanOrEqual(1);
            expect(strategy.verify(applied(s, plan), owner), `${eip} ${r0} ${r1} → ${owner}`).toEqual([]);
            states++;
          }
        }
      }
    }
    expect(states).toBe(200);
  });

  it('finds the owner from the routes when a crash left the EIP nowhere, and none when they disagree', () => {
    expect(strategy.currentOwner(snap('none', ['b', 'b']))).toBe(B);
    expect(strategy.currentOwner(snap('none', ['a', 'b']))).toBeUndefined();
    expect(strategy.currentOwner(snap('other', ['none', 'none']))).toBeUndefined();
  });

  it('a planned move first confirms the survivor is in sync, then moves', () => {
    const plan = strategy.plan(snap('a', ['a', 'a']), B, { epoch: 2, forceDetach: false, confirmSync: true });
    expect(plan[0]).toMatchObject({ op: 'confirm-sync', instanceId: B, mutates: false });
    expect(plan[0]!.group).toBeUndefined();
    expect(plan.slice(1).every((p) => p.group === 'move')).toBe(true);
  });

  it('refuses to plan for an owner whose ingress IP is on none of its interfaces', () => {
    const s = snap('a', ['a', 'a']);
    s.holders = s.holders.filter((h) => h.instanceId !== B);
    expect(() => strategy.plan(s, B, { epoch: 2, forceDetach: false })).toThrow(/ingress IP 100\.64\.228\.11 is on none of its interfaces/);
    expect(strategy.verify(s, B)).toEqual([expect.stringMatching(/ingress IP/)]);
  });

  it('teardown removes the routes and the EIP association on an ingress IP, and then nothing', () => {
    const s = snap('b', ['b', 'none']);
    const plan = strategy.planTeardown(s);
    expect(plan.map((p) => p.op).sort()).toEqual(['delete-route', 'disassociate-eip']);
    expect(strategy.planTeardown(applied(s, plan))).toEqual([]);
    // An EIP someone moved elsewhere is not ours to disassociate.
    expect(strategy.planTeardown(snap('other', ['none', 'none']))).toEqual([]);
  });
});
