import { describe, expect, it } from 'vitest';
import { InvalidEventError, parseEvent } from '../../lambda/failover/events.ts';

const D = 'loxiha-sim';
const I0 = 'i-0123456789abcdef0';
const hb0 = 'loxiha-sim-lb0-heartbeat';

const direct = (name: string, state = 'ALARM') => ({
  source: 'aws.cloudwatch',
  alarmArn: `arn:aws:cloudwatch:us-east-1:111111111111:alarm:${name}`,
  accountId: '111111111111',
  time: '2026-11-26T10:00:00.000+0000',
  region: 'us-east-1',
  alarmData: { alarmName: name, state: { value: state, reason: 'x', timestamp: '2026-11-26T10:00:00.000+0000' }, previousState: { value: 'OK' }, configuration: {} },
});

const eventBridge = (name: string, state = 'ALARM') => ({
  version: '0',
  id: 'c4c1c1c9-6542-e61b-6ef0-8c4d36933a92',
  'detail-type': 'CloudWatch Alarm State Change',
  source: 'aws.cloudwatch',
  account: '111111111111',
  time: '2026-11-26T10:00:00Z',
  region: 'us-east-1',
  resources: [`arn:aws:cloudwatch:us-east-1:111111111111:alarm:${name}`],
  detail: { alarmName: name, state: { value: state, reason: 'x', timestamp: '2026-11-26T10:00:00.000+0000' }, previousState: { value: 'OK' }, configuration: { metrics: [] } },
});

const sns = (message: unknown) => ({
  Records: [
    {
      EventVersion: '1.0',
      EventSubscriptionArn: 'arn:aws:sns:us-east-1:111111111111:t:1b0c1e7a-0b1c-4b1e-9a1e-1b0c1e7a0b1c',
      EventSource: 'aws:sns',
      Sns: {
        SignatureVersion: '1',
        Timestamp: '2026-11-26T10:00:00.000Z',
        Signature: 'x',
        SigningCertUrl: 'https://sns.us-east-1.amazonaws.com/cert.pem',
        MessageId: '95df01b4-ee98-5cb9-9903-4c221d41eb5e',
        Message: typeof message === 'string' ? message : JSON.stringify(message),
        MessageAttributes: {},
        Type: 'Notification',
        UnsubscribeUrl: 'https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe',
        TopicArn: 'arn:aws:sns:us-east-1:111111111111:t',
        Subject: 'ALARM',
      },
    },
  ],
});

const cfn = (RequestType: string) => ({
  RequestType,
  ServiceToken: 'arn:aws:lambda:us-east-1:111111111111:function:f',
  ResponseURL: 'https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x',
  StackId: 'arn:aws:cloudformation:us-east-1:111111111111:stack/s/1',
  RequestId: 'r-1',
  LogicalResourceId: 'Lifecycle',
  ResourceType: 'Custom::LoxihaLifecycle',
  ResourceProperties: { ServiceToken: 'arn:aws:lambda:us-east-1:111111111111:function:f' },
  ...(RequestType !== 'Create' ? { PhysicalResourceId: 'loxiha-lifecycle', OldResourceProperties: {} } : {}),
});

describe('parseEvent', () => {
  it.each([
    ['direct alarm action', direct(hb0), 'direct'],
    ['EventBridge state change', eventBridge(hb0), 'eventbridge'],
    ['SNS-wrapped alarm', sns({ AlarmName: hb0, NewStateValue: 'ALARM', OldStateValue: 'OK', Trigger: { Dimensions: [{ name: 'InstanceId', value: I0 }] } }), 'sns'],
  ])('reads a %s', (_, event, via) => {
    expect(parseEvent(event, D).command).toEqual({ kind: 'alarm', alarmName: hb0, instanceIndex: 0, alarmKind: 'heartbeat', state: 'ALARM', via });
  });

  it('reads OK transitions and status-check alarms of other instances', () => {
    expect(parseEvent(direct('loxiha-sim-lb1-status-check', 'OK'), D).command).toMatchObject({ instanceIndex: 1, alarmKind: 'status-check', state: 'OK' });
  });

  it('reads the fast path', () => {
    expect(parseEvent({ action: 'failover', from: I0, reason: 'peer-heartbeat-lost' }, D).command).toEqual({ kind: 'failover', from: I0, reason: 'peer-heartbeat-lost', via: 'fast-path' });
  });

  it('treats a failover "from" with another reason as a manual move away from that instance', () => {
    expect(parseEvent({ action: 'failover', from: I0, reason: 'kernel upgrade' }, D).command).toEqual({ kind: 'failover', from: I0, reason: 'kernel upgrade', via: 'manual' });
  });

  it.each([
    [{ action: 'failover' }, { kind: 'failover', reason: 'manual', via: 'manual' }],
    [{ action: 'failover', to: I0 }, { kind: 'failover', to: I0, reason: 'manual', via: 'manual' }],
    [{ action: 'status' }, { kind: 'status' }],
    [{ action: 'plan', to: I0 }, { kind: 'plan', to: I0 }],
    [{ action: 'reconcile' }, { kind: 'reconcile', via: 'manual' }],
    [{ action: 'reconcile', trigger: 'schedule' }, { kind: 'reconcile', via: 'schedule' }],
    [{ action: 'teardown', confirm: true }, { kind: 'teardown', via: 'manual' }],
  ])('reads manual %j', (event, command) => {
    expect(parseEvent(event, D).command).toMatchObject(command);
  });

  it('turns CloudFormation Create/Update into reconcile and Delete into teardown', () => {
    expect(parseEvent(cfn('Create'), D)).toMatchObject({ command: { kind: 'reconcile', via: 'lifecycle' }, lifecycle: { requestType: 'Create', requestId: 'r-1' } });
    expect(parseEvent(cfn('Update'), D).command).toEqual({ kind: 'reconcile', via: 'lifecycle' });
    expect(parseEvent(cfn('Delete'), D)).toMatchObject({ command: { kind: 'teardown', via: 'lifecycle' }, lifecycle: { physicalResourceId: 'loxiha-lifecycle' } });
  });

  it.each([
    ['null', null, /JSON object/],
    ['an array', [], /JSON object/],
    ['an empty object', {}, /unrecognised event/],
    ['an unknown action', { action: 'explode' }, /invalid request/],
    ['a fast path without a valid instance id', { action: 'failover', from: 'i-nope', reason: 'peer-heartbeat-lost' }, /EC2 instance id/],
    ['a manual failover with an oversized reason', { action: 'failover', from: I0, reason: 'x'.repeat(201) }, /invalid request/],
    ['extra fields', { action: 'status', rm: '-rf' }, /invalid request/],
    ['teardown without confirm', { action: 'teardown' }, /confirm/],
    ['another deployment’s alarm', direct('loxiha-other-lb0-heartbeat'), /not one of deployment loxiha-sim/],
    ['an alarm with an unknown state', direct(hb0, 'ON_FIRE'), /invalid CloudWatch alarm/],
    ['an EventBridge event of another type', { ...eventBridge(hb0), 'detail-type': 'EC2 Instance State-change Notification' }, /invalid EventBridge/],
    ['an SNS message that is not JSON', sns('not json'), /not JSON/],
    ['an SNS message that is not an alarm', sns({ hello: 1 }), /not a CloudWatch alarm/],
    ['a CloudFormation request without ResponseURL', { ...cfn('Create'), ResponseURL: undefined }, /custom resource/],
  ])('rejects %s with a clear error', (_, event, message) => {
    expect(() => parseEvent(event, D)).toThrow(InvalidEventError);
    expect(() => parseEvent(event, D)).toThrow(message);
  });
});

describe('Auto Scaling lifecycle actions (EventBridge)', () => {
  const action = (over: { transition?: 'launching' | 'terminating'; hook?: string; group?: string; metadata?: string | undefined; detailType?: string } = {}) => {
    const transition = over.transition ?? 'terminating';
    return {
      version: '0',
      id: '12345678-1234-1234-1234-123456789012',
      'detail-type': over.detailType ?? (transition === 'launching' ? 'EC2 Instance-launch Lifecycle Action' : 'EC2 Instance-terminate Lifecycle Action'),
      source: 'aws.autoscaling',
      account: '111111111111',
      time: '2026-12-02T10:00:00Z',
      region: 'us-east-1',
      resources: ['arn:aws:autoscaling:us-east-1:111111111111:autoScalingGroup:0b1c:autoScalingGroupName/loxiha-sim-slot1'],
      detail: {
        LifecycleActionToken: '87654321-4321-4321-4321-210987654321',
        AutoScalingGroupName: over.group ?? 'loxiha-sim-slot1',
        LifecycleHookName: over.hook ?? (transition === 'launching' ? 'loxiha-launching' : 'loxiha-terminating'),
        EC2InstanceId: I0,
        LifecycleTransition: transition === 'launching' ? 'autoscaling:EC2_INSTANCE_LAUNCHING' : 'autoscaling:EC2_INSTANCE_TERMINATING',
        ...('metadata' in over ? (over.metadata === undefined ? {} : { NotificationMetadata: over.metadata }) : { NotificationMetadata: JSON.stringify({ deployment: D, slot: 1 }) }),
        Origin: 'AutoScalingGroup',
        Destination: 'EC2',
      },
    };
  };

  it('parses a slot’s terminate and launch actions into the command the function completes', () => {
    expect(parseEvent(action(), D).command).toEqual({
      kind: 'instance-lifecycle',
      transition: 'terminating',
      instanceId: I0,
      slot: 1,
      action: { autoScalingGroupName: 'loxiha-sim-slot1', lifecycleHookName: 'loxiha-terminating', lifecycleActionToken: '87654321-4321-4321-4321-210987654321' },
    });
    expect(parseEvent(action({ transition: 'launching' }), D).command).toMatchObject({ kind: 'instance-lifecycle', transition: 'launching', slot: 1 });
  });

  it.each([
    ['another hook', { hook: 'someone-elses-hook' }, /not loxiha's terminating hook/],
    ['another deployment’s metadata', { metadata: JSON.stringify({ deployment: 'other', slot: 1 }) }, /not one of deployment loxiha-sim's slots/],
    ['a group that is not the slot the metadata names', { group: 'loxiha-sim-slot0' }, /not one of deployment loxiha-sim's slots/],
    ['no metadata', { metadata: undefined }, /without loxiha's notification metadata/],
    ['metadata with extra keys', { metadata: JSON.stringify({ deployment: D, slot: 1, extra: true }) }, /invalid notification metadata/],
    ['a detail-type that contradicts the transition', { detailType: 'EC2 Instance-launch Lifecycle Action' }, /does not match transition/],
  ])('rejects %s, changing nothing', (_what, over, message) => {
    expect(() => parseEvent(action(over), D)).toThrow(InvalidEventError);
    expect(() => parseEvent(action(over), D)).toThrow(message);
  });

  it('rejects a lifecycle action on the agents’ entry (fast-path requests only)', () => {
    expect(() => parseEvent(action(), D, 'agents')).toThrow(/invalid fast-path request/);
  });
});
