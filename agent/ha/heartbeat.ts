/**
 * The agent's heartbeat to CloudWatch: every interval one PutMetricData with `AgentHeartbeat`
 * = 1 and `SessionSyncInSync` (1/0), high resolution, dimensions Deployment + InstanceId — what
 * the failover function reads — and `AgentHeartbeat` and the sync lag again per Deployment + Slot,
 * what the slot's alarm and dashboard read whichever instance serves the slot (lib/contract.ts). A beat that fails is
 * logged (once per failure streak, then when it recovers) and the next one is tried on time;
 * beats never overlap.
 */
import { type CloudWatchClient, type MetricDatum, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { METRICS, type SecretKind } from '../../lib/contract.ts';

export interface SyncState {
  inSync: boolean;
  /** Age of the oldest change the peer has not acknowledged; omitted when unknown. */
  lagSeconds?: number;
  /** Whether the kernel prerequisites hold (../host/prerequisites.ts); omitted: not reported. */
  ready?: boolean;
  /** Whether it serves the owner's services (a backup; the owner always does); omitted: not reported. */
  servicesMatch?: boolean;
  /** Per secret the agent follows from Secrets Manager: the fingerprint of the newest version it is ready for (SecretHeld). */
  secrets?: { kind: SecretKind; fingerprint: number }[];
  /** Several VIP groups: each group, whether this instance owns it, and whether it is in sync for it. */
  groups?: { name: string; owned: boolean; inSync: boolean }[];
}

export interface HeartbeatOptions {
  cloudwatch: CloudWatchClient;
  namespace: string;
  deploymentId: string;
  instanceId: string;
  /** The slot this instance serves (its config's instanceIndex). */
  slot: number;
  intervalMs: number;
  syncState: () => SyncState;
  log: (level: 'info' | 'warn', msg: string, extra?: Record<string, unknown>) => void;
}

/** The metric data of one beat (pure: tested without CloudWatch). */
export function beatData(o: Pick<HeartbeatOptions, 'deploymentId' | 'instanceId' | 'slot'>, sync: SyncState, at: Date): MetricDatum[] {
  const byInstance: { Name: string; Value: string }[] = [
    { Name: METRICS.dimensions.deployment, Value: o.deploymentId },
    { Name: METRICS.dimensions.instanceId, Value: o.instanceId },
  ];
  const bySlot = [
    { Name: METRICS.dimensions.deployment, Value: o.deploymentId },
    { Name: METRICS.dimensions.slot, Value: String(o.slot) },
  ];
  const datum = (MetricName: string, Value: number, Unit: 'Count' | 'Seconds' | 'None', Dimensions = byInstance): MetricDatum => ({ MetricName, Dimensions, Value, Unit, Timestamp: at, StorageResolution: 1 });
  const data = [datum(METRICS.heartbeat, 1, 'Count'), datum(METRICS.heartbeat, 1, 'Count', bySlot), datum(METRICS.sessionsInSync, sync.inSync ? 1 : 0, 'None')];
  if (sync.lagSeconds !== undefined && Number.isFinite(sync.lagSeconds)) {
    data.push(datum(METRICS.syncLagSeconds, Math.max(0, sync.lagSeconds), 'Seconds'), datum(METRICS.syncLagSeconds, Math.max(0, sync.lagSeconds), 'Seconds', bySlot));
  }
  if (sync.ready !== undefined) data.push(datum(METRICS.agentReady, sync.ready ? 1 : 0, 'None'));
  // Per slot too: the slot's ServicesDiffer alarm follows the slot, whichever instance serves it.
  if (sync.servicesMatch !== undefined) data.push(datum(METRICS.servicesMatch, sync.servicesMatch ? 1 : 0, 'None'), datum(METRICS.servicesMatch, sync.servicesMatch ? 1 : 0, 'None', bySlot));
  for (const h of sync.secrets ?? []) data.push(datum(METRICS.secretHeld, h.fingerprint, 'None', [...byInstance, { Name: METRICS.dimensions.secret, Value: h.kind }]));
  for (const g of sync.groups ?? []) {
    const byGroup = [
      { Name: METRICS.dimensions.deployment, Value: o.deploymentId },
      { Name: METRICS.dimensions.group, Value: g.name },
    ];
    if (g.owned) data.push(datum(METRICS.groupOwnerSlot, o.slot, 'None', byGroup));
    data.push(datum(METRICS.sessionsInSync, g.inSync ? 1 : 0, 'None', byGroup));
  }
  return data;
}

export class Heartbeat {
  private readonly o: HeartbeatOptions;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private failing = false;
  sent = 0;
  failed = 0;

  constructor(o: HeartbeatOptions) {
    this.o = o;
  }

  start(): void {
    if (this.timer) return;
    void this.beat();
    this.timer = setInterval(() => void this.beat(), this.o.intervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.inFlight;
  }

  /** One beat now (skipped if the previous one is still in flight). */
  beat(): Promise<void> {
    if (this.inFlight) return this.inFlight;
    this.inFlight = this.send().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async send(): Promise<void> {
    try {
      await this.o.cloudwatch.send(new PutMetricDataCommand({ Namespace: this.o.namespace, MetricData: beatData(this.o, this.o.syncState(), new Date()) }));
      this.sent++;
      if (this.failing) this.o.log('info', 'heartbeats reach CloudWatch again', { failed: this.failed });
      this.failing = false;
    } catch (e) {
      this.failed++;
      if (!this.failing) this.o.log('warn', 'a heartbeat did not reach CloudWatch; retrying every interval', { error: (e as Error).name, message: (e as Error).message });
      this.failing = true;
    }
  }
}
