/**
 * CloudWatch alarm evaluation for the simulation: moto stores alarms and metric data but never
 * evaluates. This reads each alarm's own definition from the emulator (statistic, period,
 * evaluation periods, datapoints to alarm, threshold, comparison, missing-data treatment),
 * evaluates it every second over the metric data the agents put there, records state changes in
 * the emulator (SetAlarmState) and delivers the alarm action to the failover function in the shape
 * CloudWatch sends a Lambda alarm action.
 */
import { type CloudWatchClient, DescribeAlarmsCommand, GetMetricStatisticsCommand, type MetricAlarm, SetAlarmStateCommand } from '@aws-sdk/client-cloudwatch';
import { Poller } from './poller.ts';

export type AlarmValue = 'OK' | 'ALARM' | 'INSUFFICIENT_DATA';

export const STATISTICS = ['SampleCount', 'Sum', 'Average', 'Minimum', 'Maximum'] as const;
export type Statistic = (typeof STATISTICS)[number];

export interface AlarmDefinition {
  statistic: Statistic;
  periodSeconds: number;
  evaluationPeriods: number;
  datapointsToAlarm: number;
  threshold: number;
  comparison: 'LessThanThreshold' | 'LessThanOrEqualToThreshold' | 'GreaterThanThreshold' | 'GreaterThanOrEqualToThreshold';
  treatMissingData: 'breaching' | 'notBreaching' | 'ignore' | 'missing';
}

/** One value put to the metric (a heartbeat: 1; a status check: 0 or 1). */
export interface Sample {
  at: number;
  value: number;
}

function breaches(def: AlarmDefinition, v: number): boolean {
  switch (def.comparison) {
    case 'LessThanThreshold':
      return v < def.threshold;
    case 'LessThanOrEqualToThreshold':
      return v <= def.threshold;
    case 'GreaterThanThreshold':
      return v > def.threshold;
    case 'GreaterThanOrEqualToThreshold':
      return v >= def.threshold;
  }
}

function statistic(stat: Statistic, values: number[]): number {
  switch (stat) {
    case 'SampleCount':
      return values.length;
    case 'Sum':
      return values.reduce((a, b) => a + b, 0);
    case 'Average':
      return values.reduce((a, b) => a + b, 0) / values.length;
    case 'Minimum':
      return Math.min(...values);
    case 'Maximum':
      return Math.max(...values);
  }
}

/**
 * The alarm's state at `now`: the statistic over each of the last `evaluationPeriods` whole
 * periods (aligned to the period, the newest ending at or before `now`) is breaching or not
 * (a period without samples as `treatMissingData` says); ALARM when at least `datapointsToAlarm`
 * of them breach, OK when enough periods are known and fewer breach, INSUFFICIENT_DATA otherwise.
 * Periods that began before `since` (the alarm's creation) are not evaluated.
 */
export function evaluateAlarm(def: AlarmDefinition, samples: Sample[], now: number, since = -Infinity): AlarmValue {
  const p = def.periodSeconds * 1000;
  const end = Math.floor(now / p) * p;
  let breaching = 0;
  let known = 0;
  for (let k = 0; k < def.evaluationPeriods; k++) {
    const from = end - (k + 1) * p;
    // Periods before the alarm existed are not evaluated.
    if (from < since) continue;
    const values = samples.filter((s) => s.at >= from && s.at < from + p).map((s) => s.value);
    if (values.length === 0) {
      if (def.treatMissingData === 'breaching') (breaching++, known++);
      else if (def.treatMissingData === 'notBreaching') known++;
      continue;
    }
    known++;
    if (breaches(def, statistic(def.statistic, values))) breaching++;
  }
  if (breaching >= def.datapointsToAlarm) return 'ALARM';
  if (known >= def.datapointsToAlarm) return 'OK';
  return 'INSUFFICIENT_DATA';
}

export function definitionOf(a: MetricAlarm): AlarmDefinition {
  if (!(STATISTICS as readonly string[]).includes(a.Statistic ?? '')) throw new Error(`alarm ${a.AlarmName}: statistic ${a.Statistic ?? a.ExtendedStatistic} is not evaluated here (${STATISTICS.join(', ')} are)`);
  return {
    statistic: a.Statistic as Statistic,
    periodSeconds: a.Period!,
    evaluationPeriods: a.EvaluationPeriods!,
    datapointsToAlarm: a.DatapointsToAlarm ?? a.EvaluationPeriods!,
    threshold: a.Threshold!,
    comparison: a.ComparisonOperator as AlarmDefinition['comparison'],
    treatMissingData: (a.TreatMissingData ?? 'missing') as AlarmDefinition['treatMissingData'],
  };
}

/** The event a CloudWatch alarm sends to a Lambda function it names as an action. */
export function alarmActionEvent(a: MetricAlarm, value: AlarmValue, previous: AlarmValue, reason: string, now: number): Record<string, unknown> {
  const [, , , region = 'us-east-1', account = '123456789012'] = (a.AlarmArn ?? '').split(':');
  return {
    source: 'aws.cloudwatch',
    alarmArn: a.AlarmArn ?? `arn:aws:cloudwatch:${region}:${account}:alarm:${a.AlarmName}`,
    accountId: account,
    time: new Date(now).toISOString(),
    region,
    alarmData: {
      alarmName: a.AlarmName,
      state: { value, reason, timestamp: new Date(now).toISOString() },
      previousState: { value: previous, timestamp: new Date(now).toISOString() },
      configuration: {
        description: a.AlarmDescription ?? '',
        metrics: [{ id: 'm1', metricStat: { metric: { namespace: a.Namespace, name: a.MetricName, dimensions: Object.fromEntries((a.Dimensions ?? []).map((d) => [d.Name, d.Value])) }, period: a.Period, stat: a.Statistic }, returnData: true }],
      },
    },
  };
}

export class AlarmEvaluator {
  private readonly cw: CloudWatchClient;
  private readonly functionArn: string;
  private readonly deliver: (event: Record<string, unknown>) => void;
  private alarms: MetricAlarm[] = [];
  private readonly states = new Map<string, AlarmValue>();
  private poller: Poller | undefined;
  private since = 0;
  onChange: (name: string, value: AlarmValue, previous: AlarmValue) => void = () => {};
  onError: (e: Error) => void = () => {};

  constructor(cw: CloudWatchClient, functionArn: string, deliver: (event: Record<string, unknown>) => void) {
    this.cw = cw;
    this.functionArn = functionArn;
    this.deliver = deliver;
  }

  async start(): Promise<void> {
    this.alarms = (await this.cw.send(new DescribeAlarmsCommand({}))).MetricAlarms ?? [];
    for (const a of this.alarms) this.states.set(a.AlarmName!, 'INSUFFICIENT_DATA');
    this.since = Date.now();
    this.poller = new Poller(() => this.evaluate(Date.now()), 1000, (e) => this.onError(e));
    this.poller.start();
  }

  async stop(): Promise<void> {
    await this.poller?.stop();
  }

  state(name: string): AlarmValue | undefined {
    return this.states.get(name);
  }

  async evaluate(now: number): Promise<void> {
    for (const a of this.alarms) {
      const def = definitionOf(a);
      const span = (def.evaluationPeriods + 1) * def.periodSeconds * 1000;
      const r = await this.cw.send(
        new GetMetricStatisticsCommand({ Namespace: a.Namespace, MetricName: a.MetricName, Dimensions: a.Dimensions, StartTime: new Date(now - span), EndTime: new Date(now), Period: 1, Statistics: ['SampleCount', 'Sum'] }),
      );
      // Per second: as many samples as were put, each the second's mean (exact for the 0/1 and 1-only metrics alarmed on here).
      const samples: Sample[] = (r.Datapoints ?? []).flatMap((d) => Array.from({ length: d.SampleCount ?? 0 }, () => ({ at: d.Timestamp!.getTime(), value: (d.Sum ?? 0) / (d.SampleCount || 1) })));
      const value = evaluateAlarm(def, samples, now, this.since);
      const previous = this.states.get(a.AlarmName!) ?? 'INSUFFICIENT_DATA';
      if (value === previous) continue;
      this.states.set(a.AlarmName!, value);
      const reason = `Threshold Crossed: ${def.datapointsToAlarm} of the last ${def.evaluationPeriods} periods of ${def.periodSeconds} s evaluated (missing data ${def.treatMissingData})`;
      await this.cw.send(new SetAlarmStateCommand({ AlarmName: a.AlarmName, StateValue: value, StateReason: reason }));
      this.onChange(a.AlarmName!, value, previous);
      const actions = value === 'ALARM' ? a.AlarmActions : value === 'OK' ? a.OKActions : a.InsufficientDataActions;
      if (a.ActionsEnabled !== false && actions?.includes(this.functionArn)) this.deliver(alarmActionEvent(a, value, previous, reason, now));
    }
  }
}
