/**
 * What the function tells the world (README: EventBridge `loxiha.failover` events Failover
 * Started/Succeeded/Failed, an SNS message, logs and metrics) — shape and content, checked on the
 * SDK calls it makes — and that telling never stops a failover.
 */
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { EVENTS } from '../../lib/contract.ts';
import type { Result } from '../../lambda/failover/orchestrator.ts';
import { Reporter } from '../../lambda/failover/report.ts';

process.env.POWERTOOLS_METRICS_DISABLED = 'true';
const events = mockClient(EventBridgeClient);
const sns = mockClient(SNSClient);
const reporter = (group?: string) =>
  new Reporter({
    ...(group ? { group } : {}),
    logger: new Logger({ serviceName: 'loxiha-test', logLevel: 'SILENT' }),
    metrics: new Metrics({ namespace: 'Loxiha', serviceName: 'loxiha-test' }),
    events: new EventBridgeClient({ region: 'us-east-1' }),
    eventBusName: 'default',
    sns: new SNSClient({ region: 'us-east-1' }),
    topicArn: 'arn:aws:sns:us-east-1:111111111111:loxiha',
    deploymentId: 'loxiha-prod',
  });
const result = (o: Partial<Result>): Result => ({
  ok: true,
  command: 'alarm',
  outcome: 'converged',
  reason: 'VIP on i-b: owner i-a is unhealthy',
  owner: 'i-b',
  previousOwner: 'i-a',
  moved: true,
  epoch: 7,
  steps: [{ step: 'detach', phase: 'detach', ms: 300 } as never],
  phases: { detach: 300 },
  durationMs: 6900,
  ec2Calls: 17,
  ec2Mutations: 9,
  sequentialMutations: 7,
  ...o,
});
const sentEvents = () => events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0]!);
const sentMessages = () => sns.commandCalls(PublishCommand).map((c) => c.args[0].input);

beforeEach(() => {
  events.reset();
  sns.reset();
  events.on(PutEventsCommand).resolves({ FailedEntryCount: 0 });
  sns.on(PublishCommand).resolves({});
});

describe('what a failover tells', () => {
  it('a move: Failover Started, then Failover Succeeded with the summary, and one SNS message naming the new owner', async () => {
    const r = reporter();
    await r.started({ command: { kind: 'alarm' } as never, from: 'i-a', to: 'i-b', reason: 'owner i-a is unhealthy', epoch: 7 });
    await r.finished(result({}));
    const [started, succeeded] = sentEvents();
    expect(sentEvents()).toHaveLength(2);
    expect(started).toMatchObject({ Source: 'loxiha.failover', DetailType: EVENTS.started, EventBusName: 'default' });
    expect(JSON.parse(started!.Detail!)).toEqual({ deploymentId: 'loxiha-prod', from: 'i-a', to: 'i-b', reason: 'owner i-a is unhealthy', epoch: 7 });
    expect(succeeded).toMatchObject({ Source: 'loxiha.failover', DetailType: 'Failover Succeeded' });
    expect(JSON.parse(succeeded!.Detail!)).toMatchObject({ deploymentId: 'loxiha-prod', outcome: 'converged', owner: 'i-b', previousOwner: 'i-a', epoch: 7, durationMs: 6900, ec2Calls: 17, phases: { detach: 300 } });
    const [message] = sentMessages();
    expect(sentMessages()).toHaveLength(1);
    expect(message).toMatchObject({ TopicArn: 'arn:aws:sns:us-east-1:111111111111:loxiha', Subject: 'loxiha loxiha-prod: converged (VIP on i-b)' });
    expect(JSON.parse(message!.Message!)).toMatchObject({ outcome: 'converged', owner: 'i-b', previousOwner: 'i-a', steps: ['detach: 300 ms'] });
  });

  it('a named VIP group is named in every event and message (the default group adds nothing)', async () => {
    const r = reporter('blue');
    await r.started({ command: { kind: 'alarm' } as never, from: 'i-a', to: 'i-b', reason: 'owner i-a is unhealthy', epoch: 7 });
    await r.finished(result({}));
    expect(sentEvents().map((e) => JSON.parse(e.Detail!).group)).toEqual(['blue', 'blue']);
    expect(sentMessages()[0]!.Subject).toBe('loxiha loxiha-prod group blue: converged (VIP on i-b)');
    expect(JSON.parse(sentMessages()[0]!.Message!).group).toBe('blue');
    events.resetHistory();
    await reporter('default').finished(result({}));
    expect(JSON.parse(sentEvents()[0]!.Detail!)).not.toHaveProperty('group');
  });

  it('a failure: Failover Failed and an SNS message with the reason; a no-op tells nobody', async () => {
    await reporter().finished(result({ ok: false, outcome: 'failed', moved: false, reason: 'did not converge after 4 rounds', problems: ['loxi-eni is not attached'] }));
    expect(sentEvents().map((e) => e.DetailType)).toEqual(['Failover Failed']);
    expect(JSON.parse(sentEvents()[0]!.Detail!)).toMatchObject({ outcome: 'failed', reason: 'did not converge after 4 rounds' });
    expect(sentMessages()[0]!.Subject).toBe('loxiha loxiha-prod: failed (VIP on i-b)');
    expect(JSON.parse(sentMessages()[0]!.Message!)).toMatchObject({ problems: ['loxi-eni is not attached'] });
    events.resetHistory();
    sns.resetHistory();
    await reporter().finished(result({ outcome: 'no-op', moved: false, reason: 'VIP already on i-b' }));
    expect(sentEvents()).toEqual([]);
    expect(sentMessages()).toEqual([]);
  });

  it('losing no healthy instance is told (SNS) even though nothing moved', async () => {
    await reporter().finished(result({ ok: false, outcome: 'no-healthy-instance', moved: false, owner: undefined, reason: 'no healthy instance' }));
    expect(sentMessages()[0]!.Subject).toBe('loxiha loxiha-prod: no-healthy-instance');
  });

  it('telling never stops the failover: EventBridge and SNS errors are swallowed (logged, counted)', async () => {
    events.on(PutEventsCommand).rejects(new Error('AccessDenied'));
    sns.on(PublishCommand).rejects(new Error('throttled'));
    await expect(reporter().finished(result({}))).resolves.toBeUndefined();
    await expect(reporter().started({ command: { kind: 'alarm' } as never, from: 'i-a', to: 'i-b', reason: 'x', epoch: 1 })).resolves.toBeUndefined();
  });
});

describe('a slot losing and getting back its instance', () => {
  beforeEach(() => {
    events.reset();
    sns.reset();
    events.on(PutEventsCommand).resolves({ FailedEntryCount: 0 });
  });

  it('sends an event and a message each time, with the slot, the instance and why', async () => {
    await reporter().slotChanged({ slot: 1, instanceId: 'i-0123456789abcdef0', transition: 'terminating', why: 'its Auto Scaling group is replacing it' });
    await reporter().slotChanged({ slot: 1, instanceId: 'i-0fedcba9876543210', transition: 'launching', why: 'it has slot 1’s interface' });
    const sent = events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries![0]!);
    expect(sent.map((e) => [e.Source, e.DetailType])).toEqual([
      [EVENTS.source, 'Slot Instance Terminating'],
      [EVENTS.source, 'Slot Instance Launched'],
    ]);
    expect(JSON.parse(sent[0]!.Detail!)).toEqual({ deploymentId: 'loxiha-prod', slot: 1, instanceId: 'i-0123456789abcdef0', why: 'its Auto Scaling group is replacing it' });
    const messages = sns.commandCalls(PublishCommand).map((c) => c.args[0].input);
    expect(messages.map((m) => m.Subject)).toEqual(['loxiha loxiha-prod: slot 1 instance i-0123456789abcdef0 terminating', 'loxiha loxiha-prod: slot 1 instance i-0fedcba9876543210 launched']);
    expect(JSON.parse(messages[1]!.Message!)).toMatchObject({ slot: 1, instanceId: 'i-0fedcba9876543210', why: 'it has slot 1’s interface' });
  });
});
