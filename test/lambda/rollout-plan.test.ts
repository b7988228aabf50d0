/** The rollout planner: the backup's slot first, the owner's last (one VIP move), one slot at a time, ready or failed. */
import { describe, expect, it } from 'vitest';
import type { Health } from '../../lambda/failover/decide.ts';
import { planRollout, type RolloutView, type SlotGroupView } from '../../lambda/failover/rollout-plan.ts';

const MIN = 60_000;
const NOW = 1_800_000_000_000;
const READY_MS = 15 * MIN;

const group = (slot: number, template: string, instances: SlotGroupView['instances']): SlotGroupView => ({ slot, groupName: `g${slot}`, template, instances });
const inService = (id: string, template: string) => ({ id, template, lifecycleState: 'InService' });
const healthy = (id: string, index: number, sessionsInSync = true): Health => ({ instanceId: id, index, healthy: true, why: 'heartbeat 1 s old', sessionsInSync });
const notReady = (id: string, index: number): Health => ({ instanceId: id, index, healthy: false, why: 'agent reports not ready (kernel prerequisites unmet)' });

function view(o: Partial<RolloutView> & Pick<RolloutView, 'groups'>): RolloutView {
  return { owner: 'i-a', health: [healthy('i-a', 0), healthy('i-b', 1)], launchedAt: new Map([['i-a', NOW - 60 * MIN], ['i-b', NOW - 60 * MIN]]), now: NOW, ...o };
}

describe('planRollout', () => {
  it('replaces the backup slot first whichever slot it is, and nothing while the VIP owner is the only stale slot left without a ready refuge', () => {
    const both = [group(0, '2', [inService('i-a', '1')]), group(1, '2', [inService('i-b', '1')])];
    expect(planRollout(view({ groups: both, owner: 'i-a' }), READY_MS)).toMatchObject({ kind: 'replace', slot: 1, instanceId: 'i-b', owner: false });
    // The VIP on slot 1: slot 0 goes first (with a fixed order the VIP would move twice).
    expect(planRollout(view({ groups: both, owner: 'i-b' }), READY_MS)).toMatchObject({ kind: 'replace', slot: 0, instanceId: 'i-a', owner: false });
  });

  it("replaces the owner's slot last, once the other slot runs the new template and is ready: its hook moves the VIP there, once", () => {
    const groups = [group(0, '2', [inService('i-a', '1')]), group(1, '2', [inService('i-c', '2')])];
    const v = view({ groups, owner: 'i-a', health: [healthy('i-a', 0), healthy('i-c', 1)], launchedAt: new Map([['i-c', NOW - 2 * MIN]]) });
    expect(planRollout(v, READY_MS)).toMatchObject({ kind: 'replace', slot: 0, instanceId: 'i-a', owner: true });
  });

  it("never moves the VIP to a refuge whose services differ from the owner's: waits, then fails the rollout", () => {
    const groups = [group(0, '2', [inService('i-a', '1')]), group(1, '2', [inService('i-c', '2')])];
    const health = [healthy('i-a', 0), { ...healthy('i-c', 1), servicesMatch: false }];
    expect(planRollout(view({ groups, health, launchedAt: new Map([['i-c', NOW - 5 * MIN]]) }), READY_MS)).toMatchObject({ kind: 'wait', reason: expect.stringMatching(/services differ/) });
    expect(planRollout(view({ groups, health, launchedAt: new Map([['i-c', NOW - 16 * MIN]]) }), READY_MS)).toMatchObject({ kind: 'failed', reason: expect.stringMatching(/still serves other services/) });
  });

  it("waits for the refuge's sessions to be in sync before the owner's slot goes, within a bound (an agent with sync off is not waited for forever)", () => {
    const groups = [group(0, '2', [inService('i-a', '1')]), group(1, '2', [inService('i-c', '2')])];
    const health = [healthy('i-a', 0), healthy('i-c', 1, false)];
    expect(planRollout(view({ groups, health, launchedAt: new Map([['i-c', NOW - 1 * MIN]]) }), READY_MS)).toMatchObject({ kind: 'wait', reason: expect.stringMatching(/waiting for its sessions to be in sync/) });
    expect(planRollout(view({ groups, health, launchedAt: new Map([['i-c', NOW - 4 * MIN]]) }), READY_MS)).toMatchObject({ kind: 'replace', slot: 0, owner: true });
  });

  it('waits while a slot is between instances, and never starts a second slot then', () => {
    const terminating = [group(0, '2', [inService('i-a', '1')]), group(1, '2', [{ id: 'i-b', template: '1', lifecycleState: 'Terminating:Wait' }])];
    expect(planRollout(view({ groups: terminating }), READY_MS)).toMatchObject({ kind: 'wait', reason: expect.stringMatching(/slot 1 has no instance \(i-b is Terminating:Wait\)/) });
    const pending = [group(0, '2', [inService('i-a', '1')]), group(1, '2', [{ id: 'i-b', template: '1', lifecycleState: 'Terminated' }, { id: 'i-c', template: '2', lifecycleState: 'Pending:Wait' }])];
    expect(planRollout(view({ groups: pending }), READY_MS)).toMatchObject({ kind: 'wait', reason: expect.stringMatching(/i-c is Pending:Wait/) });
  });

  it('waits for a new instance to become ready, and fails the rollout when it never does within the timeout (the VIP stays)', () => {
    const groups = [group(0, '2', [inService('i-a', '1')]), group(1, '2', [inService('i-c', '2')])];
    const health = [healthy('i-a', 0), notReady('i-c', 1)];
    expect(planRollout(view({ groups, health, launchedAt: new Map([['i-c', NOW - 5 * MIN]]) }), READY_MS)).toMatchObject({ kind: 'wait', reason: expect.stringMatching(/i-c is not ready yet \(agent reports not ready/) });
    const failed = planRollout(view({ groups, health, launchedAt: new Map([['i-c', NOW - 16 * MIN]]) }), READY_MS);
    expect(failed).toMatchObject({ kind: 'failed', reason: expect.stringMatching(/i-c did not become ready within 15 min .*the VIP stays/) });
  });

  it('is done only when every slot runs its template, is ready and the VIP is served', () => {
    const groups = [group(0, '2', [inService('i-c', '2')]), group(1, '2', [inService('i-d', '2')])];
    const health = [healthy('i-c', 0), healthy('i-d', 1)];
    expect(planRollout(view({ groups, health, owner: 'i-d' }), READY_MS)).toMatchObject({ kind: 'done' });
    expect(planRollout(view({ groups, health, owner: undefined }), READY_MS)).toMatchObject({ kind: 'wait', reason: expect.stringMatching(/VIP to be served/) });
  });

  it('rolls back the same way: a not-ready instance on a template the group no longer launches is replaced before a ready one', () => {
    // CloudFormation rolled the template back to 1: slot 1's never-ready instance (template 2) is stale now and serves nothing.
    const groups = [group(0, '1', [inService('i-a', '1')]), group(1, '1', [inService('i-c', '2')])];
    const v = view({ groups, owner: 'i-a', health: [healthy('i-a', 0), notReady('i-c', 1)] });
    expect(planRollout(v, READY_MS)).toMatchObject({ kind: 'replace', slot: 1, instanceId: 'i-c' });
  });
});
