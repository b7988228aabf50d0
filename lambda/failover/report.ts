/** Tells the world: EMF metrics per failover and phase, EventBridge events, SNS messages, structured logs. */
import { type EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import type { Logger } from '@aws-lambda-powertools/logger';
import { type Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { DEFAULT_GROUP, EVENTS, METRICS, PHASE_DIMENSION } from '../../lib/contract.ts';
import type { Notifier, Result } from './orchestrator.ts';

export interface ReporterDeps {
  logger: Logger;
  metrics: Metrics;
  events?: EventBridgeClient;
  eventBusName: string;
  sns?: SNSClient;
  topicArn?: string;
  deploymentId: string;
  /** The VIP group whose runs this reporter tells of: named in every log, event and message, unless DEFAULT_GROUP. */
  group?: string;
  /** One of several groups: its moves are also counted per group (`Failovers`, dimension Group). */
  several?: boolean;
}

/** What is told when a slot's instance goes or comes (./instance-lifecycle.ts). */
export interface SlotNotice {
  slot: number;
  instanceId: string;
  transition: 'terminating' | 'launching';
  why: string;
}

/** Outcomes that someone should hear about. */
const NOTIFY: ReadonlySet<string> = new Set(['converged', 'no-healthy-instance', 'failed', 'timed-out', 'torn-down']);

export class Reporter implements Notifier {
  private readonly d: ReporterDeps;

  constructor(deps: ReporterDeps) {
    this.d = deps;
  }

  /** `{ group }` for a named group; nothing for DEFAULT_GROUP (a deployment's output without groups is unchanged). */
  private get named(): { group?: string } {
    return this.d.group && this.d.group !== DEFAULT_GROUP ? { group: this.d.group } : {};
  }

  async started(info: Parameters<Notifier['started']>[0]): Promise<void> {
    this.d.logger.warn('moving the VIP', { ...this.named, from: info.from, to: info.to, reason: info.reason, epoch: info.epoch, trigger: info.command.kind });
    await this.event(EVENTS.started, { ...this.named, from: info.from, to: info.to, reason: info.reason, epoch: info.epoch });
  }

  async finished(r: Result): Promise<void> {
    const { metrics, logger } = this.d;
    if (r.moved || r.outcome === 'converged') {
      metrics.addMetric(METRICS.failoverDuration, MetricUnit.Milliseconds, r.durationMs);
      metrics.addMetric(METRICS.failovers, MetricUnit.Count, 1);
      if (this.d.several && this.d.group) {
        const byGroup = metrics.singleMetric();
        byGroup.addDimension(METRICS.dimensions.group, this.d.group);
        byGroup.addMetric(METRICS.failovers, MetricUnit.Count, 1);
      }
      for (const [phase, ms] of Object.entries(r.phases)) {
        const single = metrics.singleMetric();
        single.addDimension(PHASE_DIMENSION, phase);
        single.addMetric(METRICS.failoverPhaseDuration, MetricUnit.Milliseconds, ms);
      }
    }
    if (!r.ok) metrics.addMetric(METRICS.failoverErrors, MetricUnit.Count, 1);
    const summary = { ...this.named, outcome: r.outcome, owner: r.owner, previousOwner: r.previousOwner, epoch: r.epoch, durationMs: r.durationMs, phases: r.phases, ec2Calls: r.ec2Calls, reason: r.reason };
    if (r.outcome === 'no-healthy-instance' || !r.ok) logger.error('failover did not reach a healthy owner', { ...summary, problems: r.problems, health: r.health });
    else if (r.outcome === 'superseded') logger.warn('stopped: a newer invocation took the lease over and carries on', summary);
    else logger.info('done', summary);
    if (r.outcome === 'converged' || r.outcome === 'torn-down') await this.event(EVENTS.succeeded, summary);
    else if (!r.ok) await this.event(EVENTS.failed, summary);
    if (NOTIFY.has(r.outcome) && (r.moved || r.outcome !== 'converged')) await this.notify(r);
  }

  /** A slot's instance going (redundancy lost) or its replacement coming (redundancy on its way back): an event and a message. */
  async slotChanged(n: SlotNotice): Promise<void> {
    const detail = { slot: n.slot, instanceId: n.instanceId, why: n.why };
    this.d.logger.warn(n.transition === 'terminating' ? 'slot instance terminating: no redundancy until its replacement is ready' : 'slot instance launched', detail);
    await this.event(n.transition === 'terminating' ? EVENTS.slotInstanceTerminating : EVENTS.slotInstanceLaunched, detail);
    if (!this.d.sns || !this.d.topicArn) return;
    const subject = `loxiha ${this.d.deploymentId}: slot ${n.slot} ${n.transition === 'terminating' ? `instance ${n.instanceId} terminating` : `instance ${n.instanceId} launched`}`.slice(0, 99);
    try {
      await this.d.sns.send(new PublishCommand({ TopicArn: this.d.topicArn, Subject: subject, Message: JSON.stringify({ deploymentId: this.d.deploymentId, ...detail }, null, 2) }));
    } catch (e) {
      this.d.logger.error('could not publish the SNS notification', { error: e as Error });
      this.d.metrics.addMetric('ReportErrors', MetricUnit.Count, 1);
    }
  }

  /** A slot's services differ from the owner's (its ServicesDiffer alarm), or match again. */
  async servicesChanged(n: { slot: number; differ: boolean }): Promise<void> {
    const why = n.differ
      ? `slot ${n.slot}'s agent has served other services than the VIP owner for minutes: a failover there would lose the flows of the services it lacks (loxiha get ha on it says which; kube-loxilb reinstalls services on an LB it sees come back)`
      : `slot ${n.slot}'s services match the owner's again`;
    this.d.logger.warn(n.differ ? 'slot services differ' : 'slot services match', { slot: n.slot, why });
    await this.event(n.differ ? EVENTS.slotServicesDiffer : EVENTS.slotServicesMatch, { slot: n.slot, why });
    if (!this.d.sns || !this.d.topicArn) return;
    const subject = `loxiha ${this.d.deploymentId}: slot ${n.slot} services ${n.differ ? 'differ from the owner' : 'match again'}`.slice(0, 99);
    try {
      await this.d.sns.send(new PublishCommand({ TopicArn: this.d.topicArn, Subject: subject, Message: JSON.stringify({ deploymentId: this.d.deploymentId, slot: n.slot, why }, null, 2) }));
    } catch (e) {
      this.d.logger.error('could not publish the SNS notification', { error: e as Error });
      this.d.metrics.addMetric('ReportErrors', MetricUnit.Count, 1);
    }
  }

  private async event(detailType: string, detail: Record<string, unknown>): Promise<void> {
    if (!this.d.events) return;
    try {
      const out = await this.d.events.send(
        new PutEventsCommand({ Entries: [{ Source: EVENTS.source, DetailType: detailType, Detail: JSON.stringify({ deploymentId: this.d.deploymentId, ...detail }), EventBusName: this.d.eventBusName }] }),
      );
      if (out.FailedEntryCount) this.d.logger.error('EventBridge rejected the event', { detailType, entries: out.Entries });
    } catch (e) {
      // Telling must never stop the failover: the failure is logged and counted.
      this.d.logger.error('could not publish the EventBridge event', { detailType, error: e as Error });
      this.d.metrics.addMetric('ReportErrors', MetricUnit.Count, 1);
    }
  }

  private async notify(r: Result): Promise<void> {
    if (!this.d.sns || !this.d.topicArn) return;
    const group = this.named.group ? ` group ${this.named.group}` : '';
    const subject = `loxiha ${this.d.deploymentId}${group}: ${r.outcome}${r.owner ? ` (VIP on ${r.owner})` : ''}`.slice(0, 99);
    try {
      await this.d.sns.send(new PublishCommand({ TopicArn: this.d.topicArn, Subject: subject, Message: JSON.stringify({ ...this.named, ...r, steps: r.steps.map((s) => `${s.step}: ${s.ms} ms`) }, null, 2) }));
    } catch (e) {
      this.d.logger.error('could not publish the SNS notification', { error: e as Error });
      this.d.metrics.addMetric('ReportErrors', MetricUnit.Count, 1);
    }
  }
}
