/** The handler end to end with mocked SDK clients: validation before any AWS call, and the CloudFormation lifecycle. */
import { createServer, type Server } from 'node:http';
import { CloudWatchClient, GetMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import {
  DescribeAddressesCommand,
  DescribeInstanceStatusCommand,
  DescribeInstancesCommand,
  DescribeNetworkInterfacesCommand,
  DescribeRouteTablesCommand,
  DescribeSubnetsCommand,
  EC2Client,
} from '@aws-sdk/client-ec2';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { SNSClient, PublishCommand } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ALARM_KIND, alarmName, functionEnv } from '../../lib/contract.ts';
import { SAMPLE_SETTINGS } from './fixtures/settings.ts';

const ec2 = mockClient(EC2Client);
const ddb = mockClient(DynamoDBClient);
const cw = mockClient(CloudWatchClient);
const eventBridge = mockClient(EventBridgeClient);
eventBridge.on(PutEventsCommand).resolves({ FailedEntryCount: 0 });
const snsMock = mockClient(SNSClient);
snsMock.on(PublishCommand).resolves({});

Object.assign(process.env, {
  AWS_REGION: 'us-east-1',
  POWERTOOLS_LOG_LEVEL: 'SILENT',
  POWERTOOLS_METRICS_DISABLED: 'true',
  ...functionEnv({ ...SAMPLE_SETTINGS, failback: 'never', holdDownSeconds: 60, topicArn: 'arn:aws:sns:us-east-1:111111111111:loxiha-sim' }),
});
const { handler } = await import('../../lambda/failover/handler.ts');

const context = { getRemainingTimeInMillis: () => 120_000, functionName: 'f', awsRequestId: 'r', invokedFunctionArn: 'arn:aws:lambda:us-east-1:1:function:f' } as never;

let server: Server;
let responses: any[] = [];
let url = '';
beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      responses.push({ method: req.method, body: JSON.parse(body) });
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/response`;
});
afterAll(() => new Promise((r) => server.close(r)));

beforeEach(() => {
  ec2.reset();
  ddb.reset();
  cw.reset();
  responses = [];
  ec2.on(DescribeInstancesCommand).resolves({ Reservations: [] });
  ec2.on(DescribeInstanceStatusCommand).resolves({ InstanceStatuses: [] });
  ec2.on(DescribeSubnetsCommand).resolves({ Subnets: [] });
  ec2.on(DescribeRouteTablesCommand).resolves({ RouteTables: [] });
  ec2.on(DescribeNetworkInterfacesCommand).resolves({ NetworkInterfaces: [] });
  ec2.on(DescribeAddressesCommand).resolves({ Addresses: [{ AllocationId: 'eipalloc-0123456789abcdef0', PublicIp: '198.51.100.7' }] });
  ddb.on(UpdateItemCommand).resolves({ Attributes: { holder: { S: 'h' }, epoch: { N: '1' }, expiresAt: { N: String(Date.now() + 90_000) } } });
  ddb.on(GetItemCommand).resolves({});
  cw.on(GetMetricDataCommand).resolves({ MetricDataResults: [] });
});

const lifecycle = (RequestType: string) => ({
  RequestType,
  ServiceToken: 'arn:aws:lambda:us-east-1:111111111111:function:f',
  ResponseURL: url,
  StackId: 'arn:aws:cloudformation:us-east-1:111111111111:stack/s/1',
  RequestId: 'req-1',
  LogicalResourceId: 'Lifecycle',
  ResourceType: 'Custom::LoxihaLifecycle',
  ResourceProperties: { ServiceToken: 'x' },
  ...(RequestType === 'Delete' ? { PhysicalResourceId: 'loxiha-lifecycle-loxiha-sim' } : {}),
});

/** A CloudWatch alarm's direct Lambda action for one of the deployment's alarms. */
function directAlarm(index: number, kind: (typeof ALARM_KIND)[keyof typeof ALARM_KIND], state: string) {
  const name = alarmName(SAMPLE_SETTINGS.deploymentId, index, kind);
  return {
    source: 'aws.cloudwatch',
    alarmArn: `arn:aws:cloudwatch:us-east-1:111111111111:alarm:${name}`,
    accountId: '111111111111',
    time: '2026-11-26T10:00:00.000+0000',
    region: 'us-east-1',
    alarmData: { alarmName: name, state: { value: state, reason: 'x', timestamp: '2026-11-26T10:00:00.000+0000' }, previousState: { value: 'OK' }, configuration: {} },
  };
}

describe('handler', () => {
  it('rejects malformed input with a clear error and touches neither EC2 nor the lease', async () => {
    const r = await handler({ action: 'failover', to: 'not-an-instance' }, context);
    expect(r).toMatchObject({ ok: false, outcome: 'invalid-event' });
    expect((r as { reason: string }).reason).toMatch(/EC2 instance id/);
    expect(ec2.calls()).toHaveLength(0);
    expect(ddb.calls()).toHaveLength(0);
  });

  it('through the agents’ entry (the alias the LB instances may invoke), accepts fast-path requests and nothing else', async () => {
    const agents = { ...(context as object), invokedFunctionArn: 'arn:aws:lambda:us-east-1:1:function:f:agents' } as never;
    for (const body of [
      { action: 'teardown', confirm: true },
      { action: 'failover', to: 'i-0123456789abcdef0', reason: 'kernel upgrade' },
      // Shaped like the fast path, but not one: never read as a manual failover.
      { action: 'failover', from: 'i-0123456789abcdef0', reason: 'because' },
      { action: 'reconcile' },
      { action: 'status' },
    ]) {
      const r = await handler(body, agents);
      expect(r, JSON.stringify(body)).toMatchObject({ ok: false, outcome: 'invalid-event' });
      expect((r as { reason: string }).reason).toMatch(/invalid fast-path request/);
    }
    expect(ec2.calls()).toHaveLength(0);
    expect(ddb.calls()).toHaveLength(0);
    // A real fast-path request gets through (and is then decided on like any other).
    // Here it reaches the decision (the mocked EC2 lists no instance: nothing healthy to move to), through the lease and a look at EC2.
    const real = await handler({ action: 'failover', from: 'i-0123456789abcdef0', reason: 'peer-heartbeat-lost' }, agents);
    expect(real).toMatchObject({ command: 'failover', ok: false, outcome: 'no-healthy-instance' });
    expect((real as { ec2Calls: number }).ec2Calls).toBeGreaterThan(0);
  });

  it('rejects a request giving a fast-path reason that is not a whole fast-path request, rather than reading it as a manual one', async () => {
    const r = await handler({ action: 'failover', from: 'i-0123456789abcdef0', to: 'i-0123456789abcdef1', reason: 'peer-heartbeat-lost' }, context);
    expect(r).toMatchObject({ ok: false, outcome: 'invalid-event' });
    expect(ec2.calls()).toHaveLength(0);
  });

  it('answers status without taking the lease or mutating', async () => {
    const r = await handler({ action: 'status' }, context);
    expect(r).toMatchObject({ outcome: 'status', reason: 'no instance holds the VIP' });
    expect(ddb.commandCalls(UpdateItemCommand)).toHaveLength(0);
  });

  it('answers CloudFormation Delete with SUCCESS after a teardown that found nothing left', async () => {
    const r = await handler(lifecycle('Delete'), context);
    expect(r).toMatchObject({ outcome: 'torn-down' });
    expect(responses).toHaveLength(1);
    expect(responses[0]).toMatchObject({ method: 'PUT', body: { Status: 'SUCCESS', RequestId: 'req-1', PhysicalResourceId: 'loxiha-lifecycle-loxiha-sim' } });
  });

  it('an alarm whose run fails throws, so that Lambda retries the asynchronous invocation', async () => {
    ec2.on(DescribeNetworkInterfacesCommand).rejects(new Error('boom'));
    await expect(handler(directAlarm(0, ALARM_KIND.heartbeat, 'ALARM'), context)).rejects.toThrow(/^failed: .*boom/);
  });

  it('answers CloudFormation FAILED (and does not hang the stack) when the run throws', async () => {
    ec2.on(DescribeNetworkInterfacesCommand).rejects(new Error('boom'));
    await expect(handler(lifecycle('Delete'), context)).resolves.toMatchObject({ ok: false, outcome: 'failed' });
    expect(responses[0]).toMatchObject({ body: { Status: 'FAILED' } });
    expect(responses[0].body.Reason).toContain('boom');
  });
});

describe('the rollout resource (CloudFormation provider framework: onEvent, then isComplete polls)', () => {
  const rolloutEvent = (RequestType: string, extra: Record<string, unknown> = {}) => ({
    ...lifecycle(RequestType),
    LogicalResourceId: 'Rollout',
    ResourceType: 'Custom::LoxihaRollout',
    ...(RequestType !== 'Create' ? { PhysicalResourceId: 'loxiha-rollout-loxiha-sim' } : {}),
    ...(RequestType === 'Update' ? { OldResourceProperties: { ServiceToken: 'x', templates: ['lt-1:1', 'lt-2:1'] } } : {}),
    ...extra,
  });
  const log = { info: () => {}, warn: () => {} };
  const stepper = (step: () => Promise<any>) => ({ calls: 0, step(this: { calls: number }) { this.calls++; return step(); } });

  it('starts without touching AWS and never answers CloudFormation itself (the framework does; its ResponseURL is passed through)', async () => {
    const r = await handler(rolloutEvent('Update'), context);
    expect(r).toEqual({ PhysicalResourceId: 'loxiha-rollout-loxiha-sim', Data: { rolloutStartedAt: expect.any(String) } });
    expect(responses).toEqual([]);
    expect(ec2.calls()).toHaveLength(0);
  });

  it('polls: one step per call, IsComplete only when the step says so; a Delete is complete at once', async () => {
    const { answerRollout } = await import('../../lambda/failover/handler.ts');
    const poll = { kind: 'rollout' as const, requestType: 'Update' as const, phase: 'poll' as const, physicalResourceId: 'p' };
    const waiting = stepper(async () => ({ command: 'rollout', complete: false, step: { kind: 'wait', reason: 'x' } }));
    expect(await answerRollout(poll, waiting, Date.now() + 60_000, log)).toEqual({ PhysicalResourceId: 'p', IsComplete: false });
    const done = stepper(async () => ({ command: 'rollout', complete: true, step: { kind: 'done', reason: 'x' } }));
    expect(await answerRollout(poll, done, Date.now() + 60_000, log)).toEqual({ PhysicalResourceId: 'p', IsComplete: true });
    const untouched = stepper(async () => ({}));
    expect(await answerRollout({ ...poll, requestType: 'Delete' }, untouched, Date.now() + 60_000, log)).toEqual({ PhysicalResourceId: 'p', IsComplete: true });
    expect(untouched.calls).toBe(0);
  });

  it('fails the resource (the deploy rolls back) only for a new instance that never became ready; an AWS error is tried again at the next poll', async () => {
    const { answerRollout } = await import('../../lambda/failover/handler.ts');
    const { RolloutFailedError } = await import('../../lambda/failover/rollout.ts');
    const poll = { kind: 'rollout' as const, requestType: 'Update' as const, phase: 'poll' as const, physicalResourceId: 'p' };
    const never = stepper(async () => {
      throw new RolloutFailedError("slot 1's new instance i-c did not become ready within 15 min");
    });
    await expect(answerRollout(poll, never, Date.now() + 60_000, log)).rejects.toThrow(/did not become ready/);
    const throttled = stepper(async () => {
      throw Object.assign(new Error('Rate exceeded'), { name: 'Throttling' });
    });
    expect(await answerRollout(poll, throttled, Date.now() + 60_000, log)).toEqual({ PhysicalResourceId: 'p', IsComplete: false });
  });

  it('reads a poll (the onEvent answer’s Data comes back) apart from the start, and rejects a malformed request', async () => {
    const { parseEvent } = await import('../../lambda/failover/events.ts');
    expect(parseEvent(rolloutEvent('Create'), 'loxiha-sim').command).toEqual({ kind: 'rollout', requestType: 'Create', phase: 'start' });
    expect(parseEvent(rolloutEvent('Update', { Data: { rolloutStartedAt: '2026-12-02T00:00:00Z' } }), 'loxiha-sim').command).toEqual({
      kind: 'rollout',
      requestType: 'Update',
      phase: 'poll',
      physicalResourceId: 'loxiha-rollout-loxiha-sim',
    });
    const r = await handler(rolloutEvent('Update', { StackId: undefined }), context);
    expect(r).toMatchObject({ ok: false, outcome: 'invalid-event' });
  });
});

describe("a slot's ServicesDiffer alarm", () => {
  const alarm = (state: string) => directAlarm(1, ALARM_KIND.servicesDiffer, state);

  it('tells operators (SNS and EventBridge, with the slot) and moves nothing: no EC2 call, no lease', async () => {
    snsMock.resetHistory();
    eventBridge.resetHistory();
    const r = await handler(alarm('ALARM'), context);
    expect(r).toMatchObject({ ok: true, outcome: 'notified', slot: 1 });
    expect(ec2.calls()).toHaveLength(0);
    expect(ddb.calls()).toHaveLength(0);
    const published = snsMock.commandCalls(PublishCommand)[0]!.args[0].input;
    expect(published.Subject).toMatch(/slot 1 services differ from the owner/);
    const entry = eventBridge.commandCalls(PutEventsCommand)[0]!.args[0].input.Entries![0]!;
    expect(entry).toMatchObject({ Source: 'loxiha.failover', DetailType: 'Slot Services Differ' });
    expect(JSON.parse(entry.Detail!)).toMatchObject({ slot: 1 });
    const ok = await handler(alarm('OK'), context);
    expect(ok).toMatchObject({ outcome: 'notified' });
    expect(eventBridge.commandCalls(PutEventsCommand)[1]!.args[0].input.Entries![0]!.DetailType).toBe('Slot Services Match');
  });
});
