import * as cdk from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import type { LoxihaConfig } from '../config.ts';
import { ALARM_KIND, FAILOVER_PHASES, FAILOVER_SERVICE_NAME, METRICS, namePrefix, PHASE_DIMENSION, alarmName } from '../contract.ts';

export interface FailoverWiringProps {
  readonly config: LoxihaConfig;
  readonly fn: lambda.IFunction;
  readonly instances: ec2.Instance[];
  /** Everything the lifecycle custom resource must outlive (created before it, deleted after it). */
  readonly lifecycleDependsOn: Construct[];
}

/**
 * What makes the function run: per-instance alarms (direct Lambda alarm actions), a
 * schedule for level-triggered reconcile, the lifecycle custom resource that places the
 * VIP at deploy and removes the run-time resources at destroy, and the dashboard.
 *
 * Alarm → Lambda directly (not through EventBridge): one hop less on the critical path,
 * no rule to keep in sync with alarm names, and the alarm's ARN is the permission's source.
 */
export class FailoverWiring extends Construct {
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: FailoverWiringProps) {
    super(scope, id);
    const { config, fn } = props;
    const action = () => new cwActions.LambdaAction(fn, { useUniquePermissionId: true });

    props.instances.forEach((instance, index) => {
      const heartbeat = new cloudwatch.Alarm(this, `Heartbeat${index}`, {
        alarmName: alarmName(config.deploymentId, index, ALARM_KIND.heartbeat),
        alarmDescription: `loxiha agent heartbeat of LB instance ${index} missing`,
        metric: heartbeatMetric(config, instance.instanceId, config.alarms.heartbeatPeriodSeconds),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: config.alarms.evaluationPeriods,
        datapointsToAlarm: config.alarms.datapointsToAlarm,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      });
      const statusCheck = new cloudwatch.Alarm(this, `StatusCheck${index}`, {
        alarmName: alarmName(config.deploymentId, index, ALARM_KIND.statusCheck),
        alarmDescription: `EC2 status check of LB instance ${index} failed`,
        metric: new cloudwatch.Metric({
          namespace: 'AWS/EC2',
          metricName: 'StatusCheckFailed',
          dimensionsMap: { InstanceId: instance.instanceId },
          statistic: 'Maximum',
          period: cdk.Duration.minutes(1),
        }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 2,
        datapointsToAlarm: 2,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      });
      for (const alarm of [heartbeat, statusCheck]) {
        alarm.addAlarmAction(action());
        alarm.addOkAction(action());
        this.alarms.push(alarm);
      }
    });

    const schedule = new events.Rule(this, 'ReconcileSchedule', {
      description: `loxiha ${config.deploymentId}: level-triggered reconcile`,
      schedule: events.Schedule.rate(cdk.Duration.minutes(config.reconcileEveryMinutes)),
      targets: [new targets.LambdaFunction(fn, { event: events.RuleTargetInput.fromObject({ action: 'reconcile', trigger: 'schedule' }), retryAttempts: 0 })],
    });

    const lifecycle = new cdk.CustomResource(this, 'Lifecycle', {
      serviceToken: fn.functionArn,
      resourceType: 'Custom::LoxihaLifecycle',
      // A changed value makes CloudFormation send Update, so every deploy reconciles.
      properties: { deploymentId: config.deploymentId, vip: config.vip, cloudCidrBlock: config.cloudCidrBlock },
    });
    for (const d of [...props.lifecycleDependsOn, ...props.instances]) lifecycle.node.addDependency(d);
    // On `cdk destroy` CloudFormation deletes dependents first: the schedule and the alarms are gone
    // before the lifecycle's teardown runs, so nothing re-places the VIP behind it. (The function also
    // remembers the teardown and ignores automatic triggers that were already in flight.)
    for (const trigger of [schedule, ...this.alarms]) trigger.node.addDependency(lifecycle);

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: namePrefix(config.deploymentId),
      widgets: [
        [
          new cloudwatch.GraphWidget({
            title: 'Agent heartbeats (beats per 10 s)',
            left: props.instances.map((i, n) => heartbeatMetric(config, i.instanceId, 10).with({ label: `lb${n}` })),
            width: 12,
          }),
          new cloudwatch.GraphWidget({
            title: 'Session sync lag (s)',
            left: props.instances.map((i, n) =>
              new cloudwatch.Metric({
                namespace: METRICS.namespace,
                metricName: METRICS.syncLagSeconds,
                dimensionsMap: { [METRICS.dimensions.deployment]: config.deploymentId, [METRICS.dimensions.instanceId]: i.instanceId },
                statistic: 'Maximum',
                period: cdk.Duration.seconds(10),
                label: `lb${n}`,
              }),
            ),
            width: 12,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Failover phases (ms)',
            left: FAILOVER_PHASES.map(
              (phase) =>
                new cloudwatch.Metric({
                  namespace: METRICS.namespace,
                  metricName: METRICS.failoverPhaseDuration,
                  dimensionsMap: { service: FAILOVER_SERVICE_NAME, [METRICS.dimensions.deployment]: config.deploymentId, [PHASE_DIMENSION]: phase },
                  statistic: 'Maximum',
                  period: cdk.Duration.minutes(1),
                  label: phase,
                }),
            ),
            stacked: true,
            width: 12,
          }),
          new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 12 }),
        ],
      ],
    });
  }
}

function heartbeatMetric(config: LoxihaConfig, instanceId: string, periodSeconds: number): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: METRICS.namespace,
    metricName: METRICS.heartbeat,
    dimensionsMap: { [METRICS.dimensions.deployment]: config.deploymentId, [METRICS.dimensions.instanceId]: instanceId },
    statistic: 'SampleCount',
    period: cdk.Duration.seconds(periodSeconds),
  });
}
