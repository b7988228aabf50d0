/** Composition root: builds the orchestrator from settings and clients (the handler, tests and benchmark share it). */
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EC2Client } from '@aws-sdk/client-ec2';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SNSClient } from '@aws-sdk/client-sns';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { ConfiguredRetryStrategy } from '@smithy/core/retry';
import { LifecycleActions, SlotGroupsAdapter } from './aws/autoscaling.ts';
import { HEARTBEAT_STALE_SECONDS, slotGroupName } from '../../lib/contract.ts';
import { Rollout } from './rollout.ts';
import { CloudWatchAdapter } from './aws/cloudwatch.ts';
import { Ec2Adapter } from './aws/ec2.ts';
import { Ec2RequestLimiter } from './aws/ec2-request-limiter.ts';
import { InflightReads } from './aws/inflight-reads.ts';
import { asOneResult, GroupsCoordinator, type GroupsResult } from './groups.ts';
import type { Clock } from './clock.ts';
import { InstanceLifecycle } from './instance-lifecycle.ts';
import { Lease } from './lease.ts';
import { observeInstances } from './observe.ts';
import type { Command } from './events.ts';
import { Orchestrator, type Result } from './orchestrator.ts';
import { Reporter } from './report.ts';
import { groupsOf, type Settings } from './settings.ts';
import { type EniState, type EniStep, EniStrategy } from './strategy/eni.ts';
import { type RouteState, type RouteStep, RouteStrategy } from './strategy/route.ts';

export interface ClientOptions {
  region: string;
  /** Endpoint override (the emulator in tests); undefined on AWS. */
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Maps a retry backoff (ms) to the real wait; tests use it to run retries in simulated time. */
  backoff?: (ms: number) => number;
  maxAttempts?: number;
  /** Appended to the SDK's user agent (the emulator tells one simulated run's calls from another's by it). */
  userAgent?: string;
}

export interface Clients {
  ec2: EC2Client;
  cloudwatch: CloudWatchClient;
  dynamodb: DynamoDBClient;
  events: EventBridgeClient;
  sns: SNSClient;
  autoscaling: AutoScalingClient;
}

export function makeClients(o: ClientOptions): Clients {
  const backoff = o.backoff ?? ((ms: number) => ms);
  // SDK standard retries (throttling such as RequestLimitExceeded, 5xx, timeouts), exponential backoff with jitter, capped.
  const retryStrategy = new ConfiguredRetryStrategy(o.maxAttempts ?? 8, (attempt) => backoff(Math.min(8000, 100 * 2 ** attempt * (0.5 + Math.random()))));
  const common = { region: o.region, endpoint: o.endpoint, credentials: o.credentials, retryStrategy, ...(o.userAgent ? { customUserAgent: o.userAgent } : {}) };
  return {
    ec2: new EC2Client(common),
    cloudwatch: new CloudWatchClient(common),
    dynamodb: new DynamoDBClient(common),
    events: new EventBridgeClient(common),
    sns: new SNSClient(common),
    autoscaling: new AutoScalingClient(common),
  };
}

/**
 * Lease lifetime. A live holder renews it every 3 s in the background (./lease-keeper.ts) and before
 * every mutation (the fence); a holder that died (timeout, out of memory) frees it within 9 s, and
 * the next run, polling as the expiry nears, takes it within about a second of that.
 */
export const LEASE_TTL_MS = 9_000;

export interface Built {
  orchestrator: Orchestrator<EniStep, EniState> | Orchestrator<RouteStep, RouteState>;
  ec2: Ec2Adapter;
  cloudwatch: CloudWatchAdapter;
  lease: Lease;
  /** Runs a slot's Auto Scaling lifecycle actions (launching, terminating). */
  instanceLifecycle: InstanceLifecycle;
  /** Steps a rolling replacement of the slots' instances (a deploy changed their template). */
  rollout: Rollout;
  /** Tells operators (EMF, EventBridge, SNS). */
  reporter: Reporter;
}

/** A step of whichever strategy the settings choose. */
export type AnyStep = EniStep | RouteStep;

type Extra = {
  afterStep?: (s: AnyStep) => void | Promise<void>;
  stuckDetachMs?: number;
  syncWaitMs?: number;
  /** Another lease lifetime and renewal interval (the benchmark's baseline: the former 30 s lease renewed every 10 s). */
  lease?: { ttlMs: number; renewMs: number };
  /** One EC2 request limiter for every group of the run (the account's buckets are shared). */
  limiter?: Ec2RequestLimiter;
  /** Shared by the groups: identical reads in flight go out once. */
  reads?: InflightReads;
  /** Group runs at once (GroupsDeps.concurrency). */
  groupConcurrency?: number;
  /** One of several groups (its moves counted per group too). */
  several?: boolean;
};

/** Runs a command to one result: a group's orchestrator, or the coordinator's runs summed up. */
type RunCommand = (command: Command, deadline: number) => Promise<Result>;

/** What the slots' lifecycle actions and the rollout are built from. */
interface SlotParts {
  settings: Settings;
  clients: Clients;
  clock: Clock;
  logger: Logger;
  ec2: Ec2Adapter;
  reporter: Reporter;
}

/** A slot's Auto Scaling lifecycle actions; a terminating instance's VIP moves off it through `run`. */
function instanceLifecycleOver(run: RunCommand, p: SlotParts): InstanceLifecycle {
  return new InstanceLifecycle({
    ec2: p.ec2,
    actions: new LifecycleActions(p.clients.autoscaling),
    moveOff: (from, deadline) => run({ kind: 'failover', from, reason: 'instance-terminating', via: 'lifecycle-hook' }, deadline),
    clock: p.clock,
    log: (level, msg, extra) => p.logger[level](msg, extra ?? {}),
    notify: (n) => p.reporter.slotChanged(n),
  });
}

/** The slots' rolling replacement, reading the owner and health through `run`'s status. */
function rolloutOver(run: RunCommand, p: SlotParts): Rollout {
  return new Rollout({
    groups: new SlotGroupsAdapter(p.clients.autoscaling, Array.from({ length: p.settings.slotCount }, (_, i) => slotGroupName(p.settings.deploymentId, i))),
    status: (deadline) => run({ kind: 'status' }, deadline),
    clock: p.clock,
    log: (level, msg, extra) => p.logger[level](msg, extra ?? {}),
    readyTimeoutMs: p.settings.readyTimeoutSeconds * 1000,
  });
}

export function buildOrchestrator(settings: Settings, clients: Clients, clock: Clock, logger: Logger, metrics: Metrics, extra: Extra = {}): Built {
  const ec2 = new Ec2Adapter(clients.ec2, { deploymentId: settings.deploymentId, vpcId: settings.vpcId, clock, limiter: extra.limiter ?? new Ec2RequestLimiter(clock), group: settings.group, ...(extra.reads ? { reads: extra.reads } : {}) });
  const cloudwatch = new CloudWatchAdapter(clients.cloudwatch, settings.deploymentId);
  const lease = new Lease(clients.dynamodb, settings.leaseTable, settings.deploymentId, extra.lease?.ttlMs ?? LEASE_TTL_MS, settings.group);
  const readSessionsInSync = async (id: string) => (await cloudwatch.agentReports([id], clock.now())).get(id)?.sessionsInSync;
  const common = {
    calls: ec2,
    lease,
    clock,
    observeInstances: (now: number) => observeInstances({ ec2, cloudwatch }, now),
    notifier: new Reporter({ logger, metrics, events: clients.events, eventBusName: settings.eventBusName, sns: clients.sns, topicArn: settings.topicArn, deploymentId: settings.deploymentId, group: settings.group, ...(extra.several ? { several: true } : {}) }),
    // Several groups: failback is the placement's (each group to its own preferred slot, bounded per run), not each group's.
    policy: { failback: extra.several ? 'never' : settings.failback, holdDownMs: settings.holdDownSeconds * 1000 },
    afterStep: extra.afterStep,
    leaseRenewMs: extra.lease?.renewMs,
  };
  const syncWaitMs = extra.syncWaitMs ?? 15_000;
  const parts = { settings, clients, clock, logger, ec2, reporter: common.notifier };
  const lifecycleOf = (o: { run: RunCommand }) => instanceLifecycleOver((c, d) => o.run(c, d), parts);
  const rolloutOf = (o: { run: RunCommand }) => rolloutOver((c, d) => o.run(c, d), parts);
  if (settings.strategy === 'route') {
    const strategy = new RouteStrategy(ec2, clock, {
      vip: settings.vip,
      eipAllocationId: settings.eipAllocationId,
      routeTableIds: settings.routeTableIds!,
      ingressIps: Object.fromEntries(settings.ingressIps!.map((ip, i) => [i, ip])),
      readSessionsInSync,
      syncWaitMs,
    });
    const orchestrator = new Orchestrator<RouteStep, RouteState>({ ...common, strategy });
    return { orchestrator, ec2, cloudwatch, lease, instanceLifecycle: lifecycleOf(orchestrator), rollout: rolloutOf(orchestrator), reporter: common.notifier };
  }
  const strategy = new EniStrategy(ec2, clock, {
    cloudCidrBlock: settings.cloudCidrBlock!,
    vip: settings.vip,
    eipAllocationId: settings.eipAllocationId,
    floatingRouteTableId: settings.floatingRouteTableId!,
    stuckDetachMs: extra.stuckDetachMs ?? 60_000,
    syncWaitMs,
    readSessionsInSync,
  });
  const orchestrator = new Orchestrator<EniStep, EniState>({ ...common, strategy });
  return { orchestrator, ec2, cloudwatch, lease, instanceLifecycle: lifecycleOf(orchestrator), rollout: rolloutOf(orchestrator), reporter: common.notifier };
}

/** The deployment as the handler drives it: one group as before, or several through the coordinator. */
export interface Deployment {
  /** Every group's own parts (one for a deployment without groups). */
  groups: Built[];
  /** Set with several groups: the run over all of them (./groups.ts). */
  coordinator: GroupsCoordinator | undefined;
  /** Runs a command: the one group's orchestrator, or the coordinator's runs summed up as one result. */
  run(command: Command, deadline: number): Promise<Result | GroupsResult>;
  instanceLifecycle: InstanceLifecycle;
  rollout: Rollout;
  reporter: Reporter;
}

/** Builds each group's orchestrator over shared clients and one EC2 request limiter; with several groups, the coordinator over them. */
export function buildDeployment(settings: Settings, clients: Clients, clock: Clock, logger: Logger, metrics: Metrics, extra: Extra = {}): Deployment {
  const limiter = extra.limiter ?? new Ec2RequestLimiter(clock);
  const list = groupsOf(settings);
  const reads = list.length > 1 ? new InflightReads() : undefined;
  const groups = list.map((g) =>
    buildOrchestrator(
      {
        ...settings,
        groups: undefined,
        group: g.name,
        vip: g.vip,
        eipAllocationId: g.eipAllocationId,
        cloudCidrBlock: g.cloudCidrBlock ?? settings.cloudCidrBlock,
        floatingRouteTableId: g.floatingRouteTableId ?? settings.floatingRouteTableId,
        ingressIps: g.ingressIps ?? settings.ingressIps,
      },
      clients,
      clock,
      logger,
      metrics,
      { ...extra, limiter, ...(reads ? { reads, several: true } : {}) },
    ),
  );
  const first = groups[0]!;
  if (groups.length === 1) return { groups, coordinator: undefined, run: (c, d) => first.orchestrator.run(c, d), instanceLifecycle: first.instanceLifecycle, rollout: first.rollout, reporter: first.reporter };
  const coordinator = new GroupsCoordinator({
    groups: list.map((g, k) => ({ name: g.name, ...(g.preferredSlot !== undefined ? { preferredSlot: g.preferredSlot } : {}), orchestrator: groups[k]!.orchestrator })),
    observeInstances: (now) => observeInstances({ ec2: first.ec2, cloudwatch: first.cloudwatch }, now),
    clock,
    staleMs: HEARTBEAT_STALE_SECONDS * 1000,
    ...(extra.groupConcurrency ? { concurrency: extra.groupConcurrency } : {}),
    failback: settings.failback === 'preferred',
    // eni: each group's loxi-eni takes an interface on its owner.
    ...(settings.strategy === 'eni' ? { interfaceLimits: (types: string[]) => first.ec2.interfaceLimits(types) } : {}),
  });
  // A terminating slot's groups move off it (the coordinator's suspect), each to where the placement
  // puts it; a rollout has no single owner to keep for last: each replaced slot's hook moves its groups.
  const asOne: RunCommand = async (c, d) => asOneResult(await coordinator.run(c, d));
  const parts = { settings, clients, clock, logger, ec2: first.ec2, reporter: first.reporter };
  const instanceLifecycle = instanceLifecycleOver(asOne, parts);
  const rollout = rolloutOver(asOne, parts);
  return { groups, coordinator, run: (c, d) => coordinator.run(c, d), instanceLifecycle, rollout, reporter: first.reporter };
}
