/**
 * The failover function: any entry point (alarm, fast path, manual, schedule, CloudFormation
 * lifecycle) becomes one Command, run by the orchestrator.
 */
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { systemClock } from './clock.ts';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { AGENT_ENTRY_ALIAS, ALARM_KIND, METRICS } from '../../lib/contract.ts';
import { entryOf, InvalidEventError, type LifecycleRequest, parseEvent, type RolloutCommand } from './events.ts';
import type { LifecycleResult } from './instance-lifecycle.ts';
import type { Result } from './orchestrator.ts';
import { RolloutFailedError, type Rollout } from './rollout.ts';
import { logger, metrics } from './powertools.ts';
import { settingsFromEnv } from './settings.ts';
import { buildDeployment, makeClients } from './wiring.ts';
import { asOneResult, type GroupsResult } from './groups.ts';

const settings = settingsFromEnv(process.env);
const deployment = buildDeployment(
  settings,
  makeClients({ region: process.env.AWS_REGION ?? 'us-east-1', endpoint: process.env.LOXIHA_AWS_ENDPOINT }),
  systemClock,
  logger,
  metrics,
);
const { instanceLifecycle, rollout, reporter } = deployment;

/** Margin kept before the function's timeout to report and release the lease. */
const SAFETY_MS = 10_000;

export async function respondToCloudFormation(req: LifecycleRequest, result: Result | { ok: false; reason: string }, send: typeof fetch = fetch): Promise<void> {
  // Placing the VIP waits for a healthy agent; when none came up in time the stack still completes and the schedule places it.
  const success = result.ok || ('outcome' in result && result.outcome === 'no-healthy-instance' && req.requestType !== 'Delete');
  const body = JSON.stringify({
    Status: success ? 'SUCCESS' : 'FAILED',
    Reason: result.reason.slice(0, 1000),
    PhysicalResourceId: req.physicalResourceId ?? `loxiha-lifecycle-${settings.deploymentId}`,
    StackId: req.stackId,
    RequestId: req.requestId,
    LogicalResourceId: req.logicalResourceId,
    Data: { owner: 'owner' in result ? (result.owner ?? '') : '' },
  });
  const r = await send(req.responseUrl, { method: 'PUT', body, headers: { 'content-type': '' } });
  if (!r.ok) throw new Error(`CloudFormation response rejected: HTTP ${r.status}`);
}

/** What CloudFormation's provider framework reads from its onEvent and isComplete handlers. */
export interface ProviderAnswer {
  PhysicalResourceId: string;
  IsComplete?: boolean;
  Data?: Record<string, string>;
}

/**
 * The rollout custom resource, as the provider framework's onEvent (`start`: nothing done yet; the
 * time it started comes back with every poll) and isComplete (`poll`: one step). A step that fails on
 * an AWS error is tried again at the next poll; only a new instance that never became ready fails the
 * resource (CloudFormation then rolls the deploy back).
 */
export async function answerRollout(c: RolloutCommand, r: Pick<Rollout, 'step'>, deadline: number, log: Pick<typeof logger, 'info' | 'warn'>): Promise<ProviderAnswer> {
  const PhysicalResourceId = c.physicalResourceId ?? `loxiha-rollout-${settings.deploymentId}`;
  if (c.requestType === 'Delete') return { PhysicalResourceId, IsComplete: true };
  if (c.phase === 'start') return { PhysicalResourceId, Data: { rolloutStartedAt: new Date().toISOString() } };
  try {
    const step = await r.step(deadline);
    log.info('rollout step', { ...step });
    return { PhysicalResourceId, IsComplete: step.complete };
  } catch (e) {
    if (e instanceof RolloutFailedError) throw e;
    log.warn('rollout step failed; the next poll tries again', { error: (e as Error).message });
    return { PhysicalResourceId, IsComplete: false };
  }
}

/** What the function answers a slot's ServicesDiffer alarm: operators told, nothing moved. */
export interface ServicesNoticeResult {
  ok: true;
  command: 'alarm';
  outcome: 'notified' | 'no-op';
  slot: number;
  reason: string;
}

async function run(event: unknown, context: Context): Promise<Result | GroupsResult | LifecycleResult | ProviderAnswer | ServicesNoticeResult | { ok: false; outcome: 'invalid-event'; reason: string }> {
  let parsed;
  const entry = entryOf(context.invokedFunctionArn, AGENT_ENTRY_ALIAS);
  metrics.addMetric(METRICS.invocations, MetricUnit.Count, 1);
  try {
    parsed = parseEvent(event, settings.deploymentId, entry);
  } catch (e) {
    if (!(e instanceof InvalidEventError)) throw e;
    logger.error('rejected event', { reason: e.message, entry });
    return { ok: false, outcome: 'invalid-event', reason: e.message };
  }
  logger.appendKeys({ command: parsed.command.kind });
  const deadline = Date.now() + context.getRemainingTimeInMillis() - SAFETY_MS;
  if (parsed.command.kind === 'rollout') return answerRollout(parsed.command, rollout, deadline, logger);
  if (parsed.command.kind === 'alarm' && parsed.command.alarmKind === ALARM_KIND.servicesDiffer) {
    const { instanceIndex: slot, state } = parsed.command;
    // A matter for operators, not for the VIP: the owner is where it is for other reasons.
    if (state === 'INSUFFICIENT_DATA') return { ok: true, command: 'alarm', outcome: 'no-op', slot, reason: `slot ${slot}'s services alarm has no data (its agent is not reporting): the heartbeat alarm covers that` };
    await reporter.servicesChanged({ slot, differ: state === 'ALARM' });
    return { ok: true, command: 'alarm', outcome: 'notified', slot, reason: state === 'ALARM' ? `slot ${slot}'s services differ from the owner's: operators told` : `slot ${slot}'s services match again: operators told` };
  }
  if (parsed.command.kind === 'instance-lifecycle') {
    const r = await instanceLifecycle.run(parsed.command, deadline);
    logger.info('lifecycle action', { ...r });
    // Held past this run's deadline: failing makes the asynchronous delivery try again (the hook's timeout bounds it).
    if (r.outcome === 'timed-out') throw new Error(`timed-out: ${r.reason}`);
    return r;
  }
  let result: Result | GroupsResult;
  try {
    result = await deployment.run(parsed.command, deadline);
  } catch (e) {
    if (parsed.lifecycle) await respondToCloudFormation(parsed.lifecycle, { ok: false, reason: (e as Error).message });
    throw e;
  }
  if (parsed.lifecycle) {
    await respondToCloudFormation(parsed.lifecycle, result.outcome === 'groups' ? asOneResult(result) : result);
    return result;
  }
  // Failed or timed-out runs throw so that async invocations (alarms) are retried; the state they left is resumable.
  const unfinished = (result.outcome === 'groups' ? result.groups.map((g) => g.result) : [result]).filter((r) => r?.outcome === 'failed' || r?.outcome === 'timed-out');
  if (unfinished.length) throw new Error(unfinished.map((r) => `${r!.outcome}: ${r!.reason}`).join('; '));
  if (result.outcome === 'groups' && result.placement.unplaced.length) {
    logger.error('VIP groups without an owner', { unplaced: result.placement.unplaced });
    throw new Error(`unplaced: ${result.placement.unplaced.map((u) => `${u.group} (${u.why})`).join(', ')}`);
  }
  return result;
}

export const handler = middy(run).use(injectLambdaContext(logger, { clearState: true })).use(logMetrics(metrics));
