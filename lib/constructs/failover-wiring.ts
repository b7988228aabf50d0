import * as cdk from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as cr from 'aws-cdk-lib/custom-resources';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { type LoxihaConfig, vipGroupsOf } from '../config.ts';
import { ALARM_KIND, FAILOVER_PHASES, FAILOVER_SERVICE_NAME, METRICS, namePrefix, PHASE_DIMENSION, ROLLOUT_RESOURCE_TYPE, SLOT_READY_TIMEOUT_SECONDS, alarmName } from '../contract.ts';
import type { LbSlot } from './lb-slots.ts';

export interface FailoverWiringProps {
  readonly config: LoxihaConfig;
  readonly fn: lambda.IFunction;
  readonly slots: LbSlot[];
  /** Everything the lifecycle custom resource must outlive (created before it, deleted after it). */
  readonly lifecycleDependsOn: Construct[];
}

/**
 * What makes the function run: per-slot alarms (direct Lambda alarm actions), the slots' Auto
 * Scaling lifecycle actions (EventBridge), a schedule for level-triggered reconcile, the lifecycle
 * custom resource that places the VIP at deploy and removes the run-time resources at destroy, and
 * the dashboard. Alarms and dashboard follow the slot (its heartbeat per slot, EC2's status checks
 * per group), not an instance id: a replaced instance leaves nothing watching the dead one.
 *
 * Alarm → Lambda directly (not through EventBridge): one hop less on the critical path,
 * no rule to keep in sync with alarm names, and the alarm's ARN is the permission's source.
 */
export class FailoverWiring extends Construct {
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly dashboard: cloudwatch.Dashboard;
  /** Replaces the slots' instances after a deploy changed their launch template (one VIP move). */
  readonly rollout: cdk.CustomResource;

  constructor(scope: Construct, id: string, props: FailoverWiringProps) {
    super(scope, id);
    const { config, fn } = props;
    const action = () => new cwActions.LambdaAction(fn, { useUniquePermissionId: true });

    props.slots.forEach(({ index, groupName }) => {
      const heartbeat = new cloudwatch.Alarm(this, `Heartbeat${index}`, {
        alarmName: alarmName(config.deploymentId, index, ALARM_KIND.heartbeat),
        alarmDescription: `loxiha agent heartbeat of LB slot ${index} missing`,
        metric: heartbeatMetric(config, index, config.alarms.heartbeatPeriodSeconds),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: config.alarms.evaluationPeriods,
        datapointsToAlarm: config.alarms.datapointsToAlarm,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      });
      const statusCheck = new cloudwatch.Alarm(this, `StatusCheck${index}`, {
        alarmName: alarmName(config.deploymentId, index, ALARM_KIND.statusCheck),
        alarmDescription: `EC2 status check of LB slot ${index}'s instance failed`,
        metric: new cloudwatch.Metric({
          namespace: 'AWS/EC2',
          metricName: 'StatusCheckFailed',
          // EC2's per-group figure: whichever instance serves the slot.
          dimensionsMap: { AutoScalingGroupName: groupName },
          statistic: 'Maximum',
          period: cdk.Duration.minutes(1),
        }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 2,
        datapointsToAlarm: 2,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      });
      // The slot's agent serving other services than the owner for minutes (kube-loxilb's call refused,
      // an agent restarted mid-burst): a failover there would lose the flows of the services it lacks.
      // The function tells operators (SNS + EventBridge, with the slot); it moves nothing.
      const servicesDiffer = new cloudwatch.Alarm(this, `ServicesDiffer${index}`, {
        alarmName: alarmName(config.deploymentId, index, ALARM_KIND.servicesDiffer),
        alarmDescription: `LB slot ${index}'s agent serves other services than the VIP owner`,
        metric: new cloudwatch.Metric({
          namespace: METRICS.namespace,
          metricName: METRICS.servicesMatch,
          dimensionsMap: { [METRICS.dimensions.deployment]: config.deploymentId, [METRICS.dimensions.slot]: String(index) },
          statistic: 'Minimum',
          period: cdk.Duration.minutes(1),
        }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: SERVICES_DIFFER_MINUTES,
        datapointsToAlarm: SERVICES_DIFFER_MINUTES,
        // No data (an agent down: the heartbeat alarm's business) says nothing about services.
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      for (const alarm of [heartbeat, statusCheck, servicesDiffer]) {
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

    // The slots' lifecycle actions: attach the slot's interface as an instance launches, move the VIP
    // off one before it terminates. The rule and its permission exist before any group launches.
    const lifecycleActions = new events.Rule(this, 'SlotLifecycleActions', {
      description: `loxiha ${config.deploymentId}: the LB slots' Auto Scaling lifecycle actions`,
      eventPattern: {
        source: ['aws.autoscaling'],
        detailType: ['EC2 Instance-launch Lifecycle Action', 'EC2 Instance-terminate Lifecycle Action'],
        detail: { AutoScalingGroupName: props.slots.map((s) => s.groupName) },
      },
      targets: [new targets.LambdaFunction(fn, { retryAttempts: 2, maxEventAge: cdk.Duration.minutes(30) })],
    });
    const rulePermissions = fn.node.findAll().filter((c): c is lambda.CfnPermission => c instanceof lambda.CfnPermission && c.principal === 'events.amazonaws.com');
    for (const { group } of props.slots) {
      group.node.addDependency(lifecycleActions);
      for (const p of rulePermissions) group.node.addDependency(p);
    }

    const lifecycle = new cdk.CustomResource(this, 'Lifecycle', {
      serviceToken: fn.functionArn,
      resourceType: 'Custom::LoxihaLifecycle',
      // A changed property makes CloudFormation send Update: the synth time changes at every deploy,
      // so every deploy reconciles (after a teardown by hand too), not only one that changes the VIP.
      properties: { deploymentId: config.deploymentId, vip: config.vip, cloudCidrBlock: config.cloudCidrBlock, synthesizedAt: new Date().toISOString() },
    });
    for (const d of [...props.lifecycleDependsOn, ...props.slots.map((s) => s.group)]) lifecycle.node.addDependency(d);
    // On `cdk destroy` CloudFormation deletes dependents first: the schedule and the alarms are gone
    // before the lifecycle's teardown runs, so nothing re-places the VIP behind it. (The function also
    // remembers the teardown and ignores automatic triggers that were already in flight.)
    for (const trigger of [schedule, ...this.alarms]) trigger.node.addDependency(lifecycle);

    // A deploy that changes the slots' launch template (the agent, the user data, the AMI, the
    // instance type) changes the groups only; this resource then replaces their instances at run time,
    // one slot at a time, the backup's first and the VIP owner's last (its terminating hook moves the
    // VIP once, planned), each new instance ready before the next goes. A new instance that never
    // becomes ready fails it, and CloudFormation rolls the deploy back (the same way back to the old
    // template). CloudFormation's provider framework polls the function (isComplete) until it is done.
    const providerLogs = new logs.LogGroup(this, 'RolloutProviderLogs', { retention: config.logRetentionDays as logs.RetentionDays, removalPolicy: cdk.RemovalPolicy.DESTROY });
    const rolloutProvider = new cr.Provider(this, 'RolloutProvider', {
      onEventHandler: fn,
      isCompleteHandler: fn,
      queryInterval: cdk.Duration.seconds(15),
      totalTimeout: cdk.Duration.seconds(props.slots.length * SLOT_READY_TIMEOUT_SECONDS + 600),
      logGroup: providerLogs,
      // Every state transition logged; not the execution data (it carries CloudFormation's presigned response URL).
      disableWaiterStateMachineLogging: false,
      waiterStateMachineLogOptions: { destination: providerLogs, level: sfn.LogLevel.ALL, includeExecutionData: false },
    });
    for (const role of ['framework-onEvent', 'framework-isComplete', 'framework-onTimeout']) {
      cdk.Validations.of(rolloutProvider.node.findChild(role)).acknowledge(
        { id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]', reason: "The CDK provider framework's own function: the AWS-managed basic execution role only writes its logs." },
        { id: `AwsSolutions-IAM5[Resource::<${cdk.Stack.of(this).getLogicalId(fn.node.defaultChild as cdk.CfnElement)}.Arn>:*]`, reason: "The provider framework's grant to invoke the failover function (CloudFormation's rollout calls); the version wildcard is the framework's." },
      );
    }
    cdk.Validations.of(rolloutProvider.node.findChild('waiter-state-machine')).acknowledge(
      ...['isComplete', 'onTimeout'].map((h) => ({
        id: `AwsSolutions-IAM5[Resource::<${cdk.Stack.of(this).getLogicalId(rolloutProvider.node.findChild(`framework-${h}`).node.defaultChild as cdk.CfnElement)}.Arn>:*]`,
        reason: `The provider framework's waiter invokes its own ${h} function (any version).`,
      })),
      { id: 'AwsSolutions-IAM5[Resource::*]', reason: 'Step Functions log delivery (logs:CreateLogDelivery, …) has no resource-level permissions.' },
      { id: 'AwsSolutions-SF2', reason: "The provider framework's waiter state machine offers no X-Ray option; its transitions are logged (SF1) and the function it polls logs every step." },
    );
    this.rollout = new cdk.CustomResource(this, 'Rollout', {
      serviceToken: rolloutProvider.serviceToken,
      resourceType: ROLLOUT_RESOURCE_TYPE,
      // A new template version in any slot is a new rollout.
      properties: { templates: props.slots.map((s) => `${s.launchTemplate.launchTemplateId}:${s.launchTemplate.latestVersionNumber}`) },
    });
    this.rollout.node.addDependency(lifecycle);

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: namePrefix(config.deploymentId),
      widgets: [
        [
          new cloudwatch.GraphWidget({
            title: 'Agent heartbeats (beats per 10 s)',
            left: props.slots.map(({ index }) => heartbeatMetric(config, index, 10).with({ label: `slot ${index}` })),
            width: 12,
          }),
          new cloudwatch.GraphWidget({
            title: 'Session sync lag (s)',
            left: props.slots.map(({ index }) =>
              new cloudwatch.Metric({
                namespace: METRICS.namespace,
                metricName: METRICS.syncLagSeconds,
                dimensionsMap: { [METRICS.dimensions.deployment]: config.deploymentId, [METRICS.dimensions.slot]: String(index) },
                statistic: 'Maximum',
                period: cdk.Duration.seconds(10),
                label: `slot ${index}`,
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
        ...groupWidgets(config),
      ],
    });
  }
}

/**
 * Several VIP groups: which slot owns each group over time (its owner's agent sends the slot), each
 * group's sessions in sync on every peer (the minimum over the agents), and each group's moves.
 */
function groupWidgets(config: LoxihaConfig): cloudwatch.IWidget[][] {
  const groups = vipGroupsOf(config);
  if (groups.length < 2) return [];
  const byGroup = (metricName: string, g: string, statistic: string, period: cdk.Duration, extra: Record<string, string> = {}) =>
    new cloudwatch.Metric({ namespace: METRICS.namespace, metricName, dimensionsMap: { ...extra, [METRICS.dimensions.deployment]: config.deploymentId, [METRICS.dimensions.group]: g }, statistic, period, label: g });
  return [
    [
      new cloudwatch.GraphWidget({ title: 'VIP groups: owner slot', left: groups.map((g) => byGroup(METRICS.groupOwnerSlot, g.name, 'Maximum', cdk.Duration.seconds(10))), width: 8 }),
      new cloudwatch.GraphWidget({ title: 'VIP groups: sessions in sync on every peer (1/0)', left: groups.map((g) => byGroup(METRICS.sessionsInSync, g.name, 'Minimum', cdk.Duration.seconds(10))), width: 8 }),
      new cloudwatch.GraphWidget({ title: 'VIP groups: moves', left: groups.map((g) => byGroup(METRICS.failovers, g.name, 'Sum', cdk.Duration.minutes(1), { service: FAILOVER_SERVICE_NAME })), width: 8 }),
    ],
  ];
}

/** How long a slot's services may differ from the owner's before operators are told (minutes). */
export const SERVICES_DIFFER_MINUTES = 3;

/** A slot's heartbeats, whichever instance serves it (the agent sends AgentHeartbeat per slot too). */
function heartbeatMetric(config: LoxihaConfig, slot: number, periodSeconds: number): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: METRICS.namespace,
    metricName: METRICS.heartbeat,
    dimensionsMap: { [METRICS.dimensions.deployment]: config.deploymentId, [METRICS.dimensions.slot]: String(slot) },
    statistic: 'SampleCount',
    period: cdk.Duration.seconds(periodSeconds),
  });
}
