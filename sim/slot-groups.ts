/**
 * What moto lacks of Auto Scaling for loxiha's slots, part of the AWS-behaviour layer (docs/aws.md):
 * each slot's group of one, and its lifecycle actions as AWS runs them.
 *
 * - When a group replaces its instance (health check, a deploy's rolling update, an operator) the
 *   instance first waits in Terminating:Wait: an "EC2 Instance-terminate Lifecycle Action" goes to
 *   EventBridge (here: `deliver`), and the instance is terminated only when CompleteLifecycleAction
 *   comes (either result) or the hook's timeout passes — each RecordLifecycleActionHeartbeat
 *   restarting it. A token that is no longer pending is refused ("No active Lifecycle Action found").
 * - Then the group launches a replacement in the slot's subnet (an address from DHCP, the group's
 *   tags) which waits in Pending:Wait the same way; CONTINUE puts it in service, ABANDON (or the
 *   launching hook's default at its timeout) terminates it and the group launches another.
 * - A terminated instance's secondary interfaces are detached (kept: DeleteOnTermination is false
 *   for an interface attached after launch), as EC2 does.
 *
 * - Each group launches from a launch template version; a deploy that changes the template
 *   (`setTemplate`) changes the group only, as CloudFormation does without an update policy: its
 *   instance keeps the version it was launched from until something replaces it.
 *   TerminateInstanceInAutoScalingGroup (without decrementing) is such a replacement; it is refused
 *   for an instance that is not InService, as AWS refuses one already terminating.
 *
 * The proxy hands it the Auto Scaling calls the function makes (lifecycle actions, the rollout's
 * DescribeAutoScalingGroups and TerminateInstanceInAutoScalingGroup); everything else stays moto's.
 */
import { randomUUID } from 'node:crypto';
import { DescribeNetworkInterfacesCommand, DetachNetworkInterfaceCommand, type EC2Client, RunInstancesCommand, TerminateInstancesCommand } from '@aws-sdk/client-ec2';
import { LIFECYCLE_HOOKS, type LifecycleHookMetadata, ROLE, slotGroupName, TAG } from '../lib/contract.ts';
import type { Clock } from '../lambda/failover/clock.ts';

export interface SlotSpec {
  index: number;
  az: string;
  subnetId: string;
  securityGroupIds: string[];
  instanceId: string;
}

export interface PendingAction {
  token: string;
  slot: number;
  transition: 'launching' | 'terminating';
  instanceId: string;
  /** Clock ms at which the hook's default result applies. */
  expiresAt: number;
}

/** What happened, in order, for tests to check the sequence (e.g. the VIP moved before the instance went). */
export type SlotEvent = { at: number; slot: number } & (
  | { kind: 'terminate-action' | 'launch-action'; instanceId: string }
  | { kind: 'completed'; instanceId: string; transition: 'launching' | 'terminating'; result: 'CONTINUE' | 'ABANDON' | 'timeout' }
  | { kind: 'terminated' | 'launched' | 'in-service'; instanceId: string }
);

export interface SlotGroupsOptions {
  /** moto, directly (the model's own calls are AWS's, not the function's). */
  ec2: EC2Client;
  clock: Clock;
  deploymentId: string;
  slots: SlotSpec[];
  /** EventBridge's delivery of a lifecycle action event to the function (asynchronous: not awaited by the model). */
  deliver: (event: Record<string, unknown>) => void;
  /** The hooks' heartbeat timeout (the stack's: 5 min). */
  hookTimeoutMs?: number;
  /** Told whenever a slot's instance changes (the world's instance list follows). */
  onInstance?: (slot: number, instanceId: string) => void;
  /** Told, and awaited, when an instance is terminated (the demo takes its host down). */
  onTerminated?: (slot: number, instanceId: string) => Promise<void>;
  /** Told when a launched instance goes in service (the demo starts its agent). */
  onInService?: (slot: number, instanceId: string) => void;
}

export class SlotGroups {
  readonly history: SlotEvent[] = [];
  private readonly o: SlotGroupsOptions;
  private readonly pending = new Map<string, PendingAction>();
  private readonly current = new Map<number, string>();
  /** Each group's launch template version (what it launches), and the version each instance was launched from. */
  private readonly templates = new Map<number, string>();
  private readonly launchedFrom = new Map<string, string>();
  /** Auto Scaling's lifecycle state of each instance the groups hold (InService, Terminating:Wait, Pending:Wait). */
  private readonly lifecycle = new Map<string, string>();
  private readonly launchTimes = new Map<string, number>();

  constructor(o: SlotGroupsOptions) {
    this.o = o;
    for (const s of o.slots) {
      this.current.set(s.index, s.instanceId);
      this.templates.set(s.index, '1');
      this.launchedFrom.set(s.instanceId, '1');
      this.lifecycle.set(s.instanceId, 'InService');
    }
  }

  /** A deploy changed the slot's launch template: the group launches this version from now on. */
  setTemplate(slot: number, version: string): void {
    this.templates.set(slot, version);
  }

  /**
   * The launch times of the instances the groups launched, in the simulation's time (moto stamps its
   * own wall clock, which simulated time runs ahead of): how long a new instance has had to get ready.
   */
  rewriteLaunchTimes(xml: string): string {
    let out = xml;
    for (const [id, at] of this.launchTimes) {
      out = out.replace(new RegExp(`(<instanceId>${id}</instanceId>(?:(?!</item>).)*?<launchTime>)[^<]*(</launchTime>)`, 's'), `$1${new Date(at).toISOString()}$2`);
    }
    return out;
  }

  /** The launch template version the instance was launched from. */
  templateOf(instanceId: string): string | undefined {
    return this.launchedFrom.get(instanceId);
  }

  /** The instance the slot's group has in service (or launching). */
  instanceOf(slot: number): string {
    return this.current.get(slot)!;
  }

  pendingActions(): PendingAction[] {
    return [...this.pending.values()];
  }

  /** The group takes its instance away (replacement, a deploy, an operator): the terminating action starts. */
  replace(slot: number): PendingAction {
    return this.start(slot, 'terminating', this.instanceOf(slot));
  }

  /** Applies the hooks' default results whose timeout has passed. */
  async tick(): Promise<void> {
    const now = this.o.clock.now();
    for (const a of [...this.pending.values()]) {
      if (a.expiresAt <= now) await this.finish(a, 'timeout');
    }
  }

  /**
   * The proxy's entry for Auto Scaling's Query API: CompleteLifecycleAction and
   * RecordLifecycleActionHeartbeat. Returns the HTTP status and body AWS would.
   */
  async answer(params: URLSearchParams): Promise<{ status: number; body: string }> {
    const action = params.get('Action') ?? '';
    if (action === 'DescribeAutoScalingGroups') {
      await this.tick();
      return { status: 200, body: this.describeXml(params) };
    }
    if (action === 'TerminateInstanceInAutoScalingGroup') {
      await this.tick();
      const id = params.get('InstanceId') ?? '';
      const slot = [...this.current.entries()].find(([, i]) => i === id)?.[0];
      if (slot === undefined) return { status: 400, body: errorXml('ValidationError', `Instance Id not found - No managed instance found for instance ID: ${id}`) };
      if (params.get('ShouldDecrementDesiredCapacity') !== 'false') return { status: 400, body: errorXml('ValidationError', 'Currently, desiredSize equals minSize (1). Terminating instance without replacement will violate group\'s min size constraint.') };
      if (this.lifecycle.get(id) !== 'InService') return { status: 400, body: errorXml('ValidationError', `The instance ${id} is not in InService or Standby (it is ${this.lifecycle.get(id)}).`) };
      this.replace(slot);
      return { status: 200, body: activityXml(slotGroupName(this.o.deploymentId, slot), id) };
    }
    const token = params.get('LifecycleActionToken') ?? '';
    await this.tick();
    const a = this.pending.get(token);
    const matches = a && a.instanceId === params.get('InstanceId') && params.get('AutoScalingGroupName') === slotGroupName(this.o.deploymentId, a.slot) && params.get('LifecycleHookName') === LIFECYCLE_HOOKS[a.transition];
    if (!a || !matches) {
      return { status: 400, body: errorXml('ValidationError', `No active Lifecycle Action found with token ${token}`) };
    }
    if (action === 'RecordLifecycleActionHeartbeat') {
      a.expiresAt = this.o.clock.now() + this.timeoutMs();
      return { status: 200, body: okXml(action) };
    }
    const result = params.get('LifecycleActionResult');
    if (result !== 'CONTINUE' && result !== 'ABANDON') return { status: 400, body: errorXml('ValidationError', `LifecycleActionResult must be CONTINUE or ABANDON`) };
    await this.finish(a, result);
    return { status: 200, body: okXml(action) };
  }

  private timeoutMs(): number {
    return this.o.hookTimeoutMs ?? 300_000;
  }

  private start(slot: number, transition: PendingAction['transition'], instanceId: string): PendingAction {
    const a: PendingAction = { token: randomUUID(), slot, transition, instanceId, expiresAt: this.o.clock.now() + this.timeoutMs() };
    this.pending.set(a.token, a);
    this.lifecycle.set(instanceId, transition === 'terminating' ? 'Terminating:Wait' : 'Pending:Wait');
    this.history.push({ at: this.o.clock.now(), slot, kind: transition === 'terminating' ? 'terminate-action' : 'launch-action', instanceId });
    this.o.deliver(lifecycleActionEvent(this.o.deploymentId, a));
    return a;
  }

  private async finish(a: PendingAction, result: 'CONTINUE' | 'ABANDON' | 'timeout'): Promise<void> {
    if (!this.pending.delete(a.token)) return;
    this.history.push({ at: this.o.clock.now(), slot: a.slot, kind: 'completed', instanceId: a.instanceId, transition: a.transition, result });
    // A terminating instance goes whatever the result; a launch abandoned (or timed out: the hook's default is ABANDON) too.
    if (a.transition === 'terminating' || result !== 'CONTINUE') {
      await this.terminate(a.slot, a.instanceId);
      await this.launch(a.slot);
      return;
    }
    this.lifecycle.set(a.instanceId, 'InService');
    this.history.push({ at: this.o.clock.now(), slot: a.slot, kind: 'in-service', instanceId: a.instanceId });
    this.o.onInService?.(a.slot, a.instanceId);
  }

  private async terminate(slot: number, instanceId: string): Promise<void> {
    const attached = await this.o.ec2.send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [instanceId] }] }));
    for (const n of attached.NetworkInterfaces ?? []) {
      if (n.Attachment?.DeviceIndex !== 0 && n.Attachment?.AttachmentId) await this.o.ec2.send(new DetachNetworkInterfaceCommand({ AttachmentId: n.Attachment.AttachmentId, Force: true }));
    }
    await this.o.ec2.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }));
    this.lifecycle.delete(instanceId);
    this.history.push({ at: this.o.clock.now(), slot, kind: 'terminated', instanceId });
    await this.o.onTerminated?.(slot, instanceId);
  }

  private async launch(slot: number): Promise<void> {
    const spec = this.o.slots.find((s) => s.index === slot)!;
    const r = await this.o.ec2.send(
      new RunInstancesCommand({
        ImageId: 'ami-12c6146b',
        MinCount: 1,
        MaxCount: 1,
        SubnetId: spec.subnetId,
        SecurityGroupIds: spec.securityGroupIds,
        TagSpecifications: [
          {
            ResourceType: 'instance',
            Tags: [
              { Key: TAG.deployment, Value: this.o.deploymentId },
              { Key: TAG.role, Value: ROLE.lbInstance },
              { Key: TAG.instanceIndex, Value: String(slot) },
            ],
          },
        ],
      }),
    );
    const id = r.Instances![0]!.InstanceId!;
    this.current.set(slot, id);
    this.launchedFrom.set(id, this.templates.get(slot)!);
    this.launchTimes.set(id, this.o.clock.now());
    this.o.onInstance?.(slot, id);
    this.history.push({ at: this.o.clock.now(), slot, kind: 'launched', instanceId: id });
    this.start(slot, 'launching', id);
  }


  /** DescribeAutoScalingGroups for the named slot groups (AWS leaves out names it does not know). */
  private describeXml(params: URLSearchParams): string {
    const names = [...params.entries()].filter(([k]) => k.startsWith('AutoScalingGroupNames.member.')).map(([, v]) => v);
    const members = [...this.current.keys()]
      .map((slot) => ({ slot, name: slotGroupName(this.o.deploymentId, slot) }))
      .filter((g) => names.length === 0 || names.includes(g.name))
      .map(({ slot, name }) => {
        const spec = this.o.slots.find((x) => x.index === slot)!;
        const instances = [...this.lifecycle.entries()]
          .filter(([id]) => this.current.get(slot) === id || this.pendingFor(slot, id))
          .map(
            ([id, state]) =>
              `<member><InstanceId>${id}</InstanceId><AvailabilityZone>${spec.az}</AvailabilityZone><LifecycleState>${state}</LifecycleState><HealthStatus>Healthy</HealthStatus><LaunchTemplate><LaunchTemplateName>${name}</LaunchTemplateName><Version>${this.launchedFrom.get(id)}</Version></LaunchTemplate><ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>`,
          )
          .join('');
        return `<member><AutoScalingGroupName>${name}</AutoScalingGroupName><LaunchTemplate><LaunchTemplateName>${name}</LaunchTemplateName><Version>${this.templates.get(slot)}</Version></LaunchTemplate><MinSize>1</MinSize><MaxSize>1</MaxSize><DesiredCapacity>1</DesiredCapacity><DefaultCooldown>300</DefaultCooldown><AvailabilityZones><member>${spec.az}</member></AvailabilityZones><HealthCheckType>EC2</HealthCheckType><CreatedTime>2026-01-01T00:00:00Z</CreatedTime><VPCZoneIdentifier>${spec.subnetId}</VPCZoneIdentifier><Instances>${instances}</Instances></member>`;
      })
      .join('');
    return `<DescribeAutoScalingGroupsResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><DescribeAutoScalingGroupsResult><AutoScalingGroups>${members}</AutoScalingGroups></DescribeAutoScalingGroupsResult><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></DescribeAutoScalingGroupsResponse>`;
  }

  /** An instance the slot's group still holds while it is on its way out (Terminating:Wait). */
  private pendingFor(slot: number, id: string): boolean {
    return [...this.pending.values()].some((a) => a.slot === slot && a.instanceId === id);
  }
}

const activityXml = (group: string, instanceId: string) =>
  `<TerminateInstanceInAutoScalingGroupResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><TerminateInstanceInAutoScalingGroupResult><Activity><ActivityId>${randomUUID()}</ActivityId><AutoScalingGroupName>${group}</AutoScalingGroupName><Description>Terminating EC2 instance: ${instanceId}</Description><Cause>At ${new Date().toISOString()} instance ${instanceId} was taken out of service in response to a user request.</Cause><StartTime>${new Date().toISOString()}</StartTime><StatusCode>InProgress</StatusCode><Progress>0</Progress></Activity></TerminateInstanceInAutoScalingGroupResult><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></TerminateInstanceInAutoScalingGroupResponse>`;

/** The event EventBridge delivers for a lifecycle action (its documented shape). */
export function lifecycleActionEvent(deploymentId: string, a: Pick<PendingAction, 'token' | 'slot' | 'transition' | 'instanceId'>): Record<string, unknown> {
  const group = slotGroupName(deploymentId, a.slot);
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': a.transition === 'launching' ? 'EC2 Instance-launch Lifecycle Action' : 'EC2 Instance-terminate Lifecycle Action',
    source: 'aws.autoscaling',
    account: '123456789012',
    time: new Date().toISOString(),
    region: 'us-east-1',
    resources: [`arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:${randomUUID()}:autoScalingGroupName/${group}`],
    detail: {
      LifecycleActionToken: a.token,
      AutoScalingGroupName: group,
      LifecycleHookName: LIFECYCLE_HOOKS[a.transition],
      EC2InstanceId: a.instanceId,
      LifecycleTransition: a.transition === 'launching' ? 'autoscaling:EC2_INSTANCE_LAUNCHING' : 'autoscaling:EC2_INSTANCE_TERMINATING',
      NotificationMetadata: JSON.stringify({ deployment: deploymentId, slot: a.slot } satisfies LifecycleHookMetadata),
      ...(a.transition === 'launching' ? { Origin: 'EC2', Destination: 'AutoScalingGroup' } : { Origin: 'AutoScalingGroup', Destination: 'EC2' }),
    },
  };
}

const okXml = (action: string) =>
  `<${action}Response xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><${action}Result/><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></${action}Response>`;
const errorXml = (code: string, message: string) =>
  `<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`;
