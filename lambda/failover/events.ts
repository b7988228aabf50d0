/**
 * Every way the function can be invoked, parsed into one Command.
 * Anything that does not match gets an InvalidEventError and causes no EC2 mutation.
 */
// One module per event source, not the schemas index: the index builds every schema Powertools has
// (API Gateway, Kafka, S3, …) at import, ≈ 35 ms of the function's cold start.
import {
  CloudFormationCustomResourceCreateSchema,
  CloudFormationCustomResourceDeleteSchema,
  CloudFormationCustomResourceUpdateSchema,
} from '@aws-lambda-powertools/parser/schemas/cloudformation-custom-resource';
import { EventBridgeSchema } from '@aws-lambda-powertools/parser/schemas/eventbridge';
import { SnsSchema } from '@aws-lambda-powertools/parser/schemas/sns';
import * as z from 'zod';
import { FAST_PATH_REASONS, fastPathRequestSchema, instanceIdSchema, LIFECYCLE_HOOKS, lifecycleHookMetadataSchema, parseAlarmName, ROLLOUT_RESOURCE_TYPE, slotGroupName, type AlarmKind } from '../../lib/contract.ts';

export type AlarmState = 'ALARM' | 'OK' | 'INSUFFICIENT_DATA';

export type Command =
  | { kind: 'alarm'; alarmName: string; instanceIndex: number; alarmKind: AlarmKind; state: AlarmState; via: 'direct' | 'eventbridge' | 'sns' }
  | { kind: 'failover'; from?: string; to?: string; reason: string; via: 'fast-path' | 'manual' | 'lifecycle-hook' }
  | { kind: 'reconcile'; via: 'manual' | 'schedule' | 'lifecycle' }
  | { kind: 'status' }
  | { kind: 'plan'; to?: string }
  | { kind: 'teardown'; via: 'manual' | 'lifecycle' }
  | InstanceLifecycleCommand
  | RolloutCommand;

/**
 * A step of the slots' rolling replacement, from CloudFormation's provider framework: `start` is its
 * onEvent call (nothing replaced yet), `poll` each isComplete call after it (the onEvent answer's Data
 * comes back with every poll). The framework answers CloudFormation itself.
 */
export interface RolloutCommand {
  kind: 'rollout';
  requestType: 'Create' | 'Update' | 'Delete';
  phase: 'start' | 'poll';
  physicalResourceId?: string;
}

/** An Auto Scaling lifecycle action on a slot's instance (EventBridge), to act on and then complete. */
export interface InstanceLifecycleCommand {
  kind: 'instance-lifecycle';
  transition: 'launching' | 'terminating';
  instanceId: string;
  slot: number;
  action: { autoScalingGroupName: string; lifecycleHookName: string; lifecycleActionToken: string };
}

/** A CloudFormation custom resource request: the command plus what is needed to answer it. */
export interface LifecycleRequest {
  requestType: 'Create' | 'Update' | 'Delete';
  responseUrl: string;
  stackId: string;
  requestId: string;
  logicalResourceId: string;
  physicalResourceId?: string;
}

export interface ParsedEvent {
  command: Command;
  lifecycle?: LifecycleRequest;
}

export class InvalidEventError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidEventError';
  }
}

const alarmStateSchema = z.enum(['ALARM', 'OK', 'INSUFFICIENT_DATA']);

const directAlarmSchema = z.object({
  source: z.literal('aws.cloudwatch'),
  alarmArn: z.string(),
  alarmData: z.object({
    alarmName: z.string().min(1),
    state: z.object({ value: alarmStateSchema }),
  }),
});

const eventBridgeAlarmSchema = EventBridgeSchema.extend({
  source: z.literal('aws.cloudwatch'),
  'detail-type': z.literal('CloudWatch Alarm State Change'),
  detail: z.object({ alarmName: z.string().min(1), state: z.object({ value: alarmStateSchema }) }),
});

/** EventBridge's "EC2 Instance-launch/terminate Lifecycle Action" events. */
const lifecycleActionSchema = EventBridgeSchema.extend({
  source: z.literal('aws.autoscaling'),
  'detail-type': z.enum(['EC2 Instance-launch Lifecycle Action', 'EC2 Instance-terminate Lifecycle Action']),
  detail: z.object({
    LifecycleActionToken: z.string().min(1).max(255),
    AutoScalingGroupName: z.string().min(1).max(255),
    LifecycleHookName: z.string().min(1).max(255),
    EC2InstanceId: instanceIdSchema,
    LifecycleTransition: z.enum(['autoscaling:EC2_INSTANCE_LAUNCHING', 'autoscaling:EC2_INSTANCE_TERMINATING']),
    NotificationMetadata: z.string().max(1023).optional(),
  }),
});

/** A lifecycle action of one of this deployment's slots, checked against the hook it names, its group and its metadata. */
function lifecycleActionCommand(deploymentId: string, e: Record<string, unknown>): Command {
  const r = lifecycleActionSchema.safeParse(e);
  if (!r.success) throw new InvalidEventError(`invalid Auto Scaling lifecycle action event: ${describe(r.error)}`);
  const d = r.data.detail;
  const transition = d.LifecycleTransition === 'autoscaling:EC2_INSTANCE_LAUNCHING' ? 'launching' : 'terminating';
  if ((transition === 'launching') !== (r.data['detail-type'] === 'EC2 Instance-launch Lifecycle Action')) {
    throw new InvalidEventError(`lifecycle action: detail-type "${r.data['detail-type']}" does not match transition ${d.LifecycleTransition}`);
  }
  if (d.LifecycleHookName !== LIFECYCLE_HOOKS[transition]) throw new InvalidEventError(`lifecycle action of hook "${d.LifecycleHookName}", not loxiha's ${transition} hook`);
  let metadata: unknown;
  try {
    metadata = JSON.parse(d.NotificationMetadata ?? '');
  } catch {
    throw new InvalidEventError('lifecycle action without loxiha\'s notification metadata (JSON naming the deployment and the slot)');
  }
  const m = lifecycleHookMetadataSchema.safeParse(metadata);
  if (!m.success) throw new InvalidEventError(`lifecycle action: invalid notification metadata: ${describe(m.error)}`);
  if (m.data.deployment !== deploymentId || d.AutoScalingGroupName !== slotGroupName(deploymentId, m.data.slot)) {
    throw new InvalidEventError(`lifecycle action of group "${d.AutoScalingGroupName}" (deployment ${m.data.deployment}, slot ${m.data.slot}) is not one of deployment ${deploymentId}'s slots`);
  }
  return {
    kind: 'instance-lifecycle',
    transition,
    instanceId: d.EC2InstanceId,
    slot: m.data.slot,
    action: { autoScalingGroupName: d.AutoScalingGroupName, lifecycleHookName: d.LifecycleHookName, lifecycleActionToken: d.LifecycleActionToken },
  };
}

const snsAlarmMessageSchema = z.object({ AlarmName: z.string().min(1), NewStateValue: alarmStateSchema });

const manualSchema = z.discriminatedUnion('action', [
  z.object({ action: z.literal('failover'), to: instanceIdSchema.optional(), from: instanceIdSchema.optional(), reason: z.string().max(200).optional() }).strict(),
  z.object({ action: z.literal('status') }).strict(),
  z.object({ action: z.literal('plan'), to: instanceIdSchema.optional() }).strict(),
  z.object({ action: z.literal('reconcile'), trigger: z.literal('schedule').optional() }).strict(),
  z.object({ action: z.literal('teardown'), confirm: z.literal(true, 'teardown needs "confirm": true: it removes the floating VIP') }).strict(),
]);

const lifecycleSchema = z.union([CloudFormationCustomResourceCreateSchema, CloudFormationCustomResourceUpdateSchema, CloudFormationCustomResourceDeleteSchema]);

const describe = (e: z.ZodError) => e.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');

/** Turns an alarm name into a Command, or rejects alarms that are not this deployment's. */
function alarmCommand(deploymentId: string, name: string, state: AlarmState, via: 'direct' | 'eventbridge' | 'sns'): Command {
  const parsed = parseAlarmName(deploymentId, name);
  if (!parsed) throw new InvalidEventError(`alarm "${name}" is not one of deployment ${deploymentId}'s alarms`);
  return { kind: 'alarm', alarmName: name, instanceIndex: parsed.instanceIndex, alarmKind: parsed.kind, state, via };
}

/**
 * Which entry the invocation came through: `agents` (the alias only the LB instances may invoke)
 * or `operator` (the function itself: alarms, the schedule, CloudFormation, people).
 */
export type Entry = 'agents' | 'operator';

/** The entry of an invocation, from the ARN it was invoked by (`…:function:name:agents` for the agents' alias). */
export function entryOf(invokedFunctionArn: string | undefined, alias: string): Entry {
  return invokedFunctionArn?.split(':')[7] === alias ? 'agents' : 'operator';
}

const fastPath = (e: Record<string, unknown>): ParsedEvent => {
  const fast = fastPathRequestSchema.safeParse(e);
  if (!fast.success) throw new InvalidEventError(`invalid fast-path request: ${describe(fast.error)}`);
  return { command: { kind: 'failover', from: fast.data.from, reason: fast.data.reason, via: 'fast-path' } };
};

export function parseEvent(event: unknown, deploymentId: string, entry: Entry = 'operator'): ParsedEvent {
  if (typeof event !== 'object' || event === null || Array.isArray(event)) throw new InvalidEventError('event must be a JSON object');
  const e = event as Record<string, unknown>;
  // The agents' entry takes fast-path requests and nothing else, whatever else the body looks like.
  if (entry === 'agents') return fastPath(e);

  if ('RequestType' in e) {
    const r = lifecycleSchema.safeParse(e);
    if (!r.success) throw new InvalidEventError(`invalid CloudFormation custom resource request: ${describe(r.error)}`);
    const physicalResourceId = typeof e.PhysicalResourceId === 'string' && e.PhysicalResourceId.length > 0 ? e.PhysicalResourceId : undefined;
    if (r.data.ResourceType === ROLLOUT_RESOURCE_TYPE) {
      const data = e.Data;
      const polled = typeof data === 'object' && data !== null && typeof (data as Record<string, unknown>).rolloutStartedAt === 'string';
      return { command: { kind: 'rollout', requestType: r.data.RequestType, phase: polled ? 'poll' : 'start', ...(physicalResourceId ? { physicalResourceId } : {}) } };
    }
    const lifecycle: LifecycleRequest = {
      requestType: r.data.RequestType,
      responseUrl: r.data.ResponseURL,
      stackId: r.data.StackId,
      requestId: r.data.RequestId,
      logicalResourceId: r.data.LogicalResourceId,
      // The Powertools schemas strip PhysicalResourceId; answering with another id would make CloudFormation think it was replaced.
      physicalResourceId,
    };
    const command: Command = r.data.RequestType === 'Delete' ? { kind: 'teardown', via: 'lifecycle' } : { kind: 'reconcile', via: 'lifecycle' };
    return { command, lifecycle };
  }

  if ('alarmData' in e) {
    const r = directAlarmSchema.safeParse(e);
    if (!r.success) throw new InvalidEventError(`invalid CloudWatch alarm action event: ${describe(r.error)}`);
    return { command: alarmCommand(deploymentId, r.data.alarmData.alarmName, r.data.alarmData.state.value, 'direct') };
  }

  if ('detail-type' in e && e.source === 'aws.autoscaling') return { command: lifecycleActionCommand(deploymentId, e) };

  if ('detail-type' in e) {
    const r = eventBridgeAlarmSchema.safeParse(e);
    if (!r.success) throw new InvalidEventError(`invalid EventBridge alarm state change: ${describe(r.error)}`);
    return { command: alarmCommand(deploymentId, r.data.detail.alarmName, r.data.detail.state.value, 'eventbridge') };
  }

  if ('Records' in e) {
    const r = SnsSchema.safeParse(e);
    if (!r.success) throw new InvalidEventError(`invalid SNS event: ${describe(r.error)}`);
    if (r.data.Records.length !== 1) throw new InvalidEventError(`SNS event must carry one record, got ${r.data.Records.length}`);
    let message: unknown;
    try {
      message = JSON.parse(r.data.Records[0]!.Sns.Message);
    } catch {
      throw new InvalidEventError('SNS message is not JSON');
    }
    const m = snsAlarmMessageSchema.safeParse(message);
    if (!m.success) throw new InvalidEventError(`SNS message is not a CloudWatch alarm: ${describe(m.error)}`);
    return { command: alarmCommand(deploymentId, m.data.AlarmName, m.data.NewStateValue, 'sns') };
  }

  // A request giving a fast-path reason is a fast-path request: whole, or rejected (never read as a manual one).
  if (e.action === 'failover' && (FAST_PATH_REASONS as readonly unknown[]).includes(e.reason)) return fastPath(e);

  if ('action' in e) {
    const r = manualSchema.safeParse(e);
    if (!r.success) throw new InvalidEventError(`invalid request: ${describe(r.error)}`);
    const a = r.data;
    switch (a.action) {
      case 'failover':
        return { command: { kind: 'failover', from: a.from, to: a.to, reason: a.reason ?? 'manual', via: 'manual' } };
      case 'status':
        return { command: { kind: 'status' } };
      case 'plan':
        return { command: { kind: 'plan', to: a.to } };
      case 'reconcile':
        return { command: { kind: 'reconcile', via: a.trigger ?? 'manual' } };
      case 'teardown':
        return { command: { kind: 'teardown', via: 'manual' } };
    }
  }
  throw new InvalidEventError('unrecognised event: expected a CloudWatch alarm (direct, EventBridge or SNS), an Auto Scaling lifecycle action, a fast-path request, a manual {"action": …} or a CloudFormation lifecycle request');
}
