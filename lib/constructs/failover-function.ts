import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as cdk from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subs from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { type LoxihaConfig, slotCountOf } from '../config.ts';
import { handlerCode } from '../bundling/handler-code.ts';
import { AGENT_ENTRY_ALIAS, FAILOVER_SERVICE_NAME, functionEnv, METRICS, SLOT_READY_TIMEOUT_SECONDS, slotGroupName, TAG } from '../contract.ts';
import { lbIngressIps } from '../topology.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface FailoverFunctionProps {
  readonly config: LoxihaConfig;
  readonly vpcId: string;
  /** The VIP groups with their EIPs, the default first (one: the settings of a deployment without groups). */
  readonly groups: ReadonlyArray<{ name: string; vip: string; allocationId: string; preferredSlot: number; cloudCidrBlock?: string }>;
  /** eni strategy: the route table the floating subnet is associated with. */
  readonly floatingRouteTableId?: string;
  /** route strategy: the tables whose /32 route to the VIP follows the owner. */
  readonly vipRouteTableIds?: string[];
  readonly lbSecurityGroupId: string;
}

/**
 * The failover function, its lease table and notification topic, and a role that can
 * mutate only this deployment's tagged resources, the one EIP and the one route table.
 */
export class FailoverFunction extends Construct {
  readonly fn: lambda.Function;
  /** The agents' entry: only the LB instances may invoke it, and the function accepts only fast-path requests through it. */
  readonly agentEntry: lambda.Alias;
  readonly leaseTable: dynamodb.TableV2;
  readonly topic: sns.Topic;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: FailoverFunctionProps) {
    super(scope, id);
    const { config } = props;

    this.leaseTable = new dynamodb.TableV2(this, 'LeaseTable', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      billing: dynamodb.Billing.onDemand(),
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      removalPolicy: cdk.RemovalPolicy.DESTROY,
    });

    this.topic = new sns.Topic(this, 'Notifications', {
      displayName: `loxiha ${config.deploymentId} failover notifications`,
      enforceSSL: true,
      masterKey: kms.Alias.fromAliasName(this, 'SnsKey', 'alias/aws/sns'),
    });
    if (config.notificationEmail) this.topic.addSubscription(new subs.EmailSubscription(config.notificationEmail));

    const logGroup = (this.logGroup = new logs.LogGroup(this, 'Logs', { retention: config.logRetentionDays as logs.RetentionDays, removalPolicy: cdk.RemovalPolicy.DESTROY }));

    this.fn = new lambda.Function(this, 'Fn', {
      code: handlerCode(path.join(ROOT, 'lambda/failover/handler.ts')),
      handler: 'index.handler',
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: 512,
      // A detach can take a minute; a run that still times out is resumed by the next one.
      timeout: cdk.Duration.minutes(3),
      logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      description: `loxiha ${config.deploymentId}: moves the VIP (${config.strategy === 'eni' ? 'loxi-eni' : 'overlay routes'}) and the EIP to a healthy AZ`,
      environment: {
        ...functionEnv({
          deploymentId: config.deploymentId,
          vpcId: props.vpcId,
          strategy: config.strategy,
          vip: config.vip,
          eipAllocationId: props.groups[0]!.allocationId,
          ...(config.strategy === 'eni'
            ? { cloudCidrBlock: config.cloudCidrBlock, floatingRouteTableId: props.floatingRouteTableId }
            : { routeTableIds: props.vipRouteTableIds, ingressIps: lbIngressIps(config) }),
          // Several groups: each its VIP, EIP and first slot; eni its block (one floating route table for all), route its ingress IPs.
          ...(props.groups.length > 1
            ? {
                groups: props.groups.map((g, k) => ({
                  name: g.name,
                  vip: g.vip,
                  eipAllocationId: g.allocationId,
                  preferredSlot: g.preferredSlot,
                  ...(config.strategy === 'eni' ? { cloudCidrBlock: g.cloudCidrBlock, floatingRouteTableId: props.floatingRouteTableId } : { ingressIps: lbIngressIps(config, k) }),
                })),
              }
            : {}),
          leaseTable: this.leaseTable.tableName,
          topicArn: this.topic.topicArn,
          failback: config.failback,
          holdDownSeconds: config.holdDownSeconds,
          slotCount: slotCountOf(config),
          readyTimeoutSeconds: SLOT_READY_TIMEOUT_SECONDS,
        }),
        POWERTOOLS_SERVICE_NAME: FAILOVER_SERVICE_NAME,
        POWERTOOLS_METRICS_NAMESPACE: METRICS.namespace,
      },
    });

    this.agentEntry = new lambda.Alias(this, 'AgentEntry', {
      aliasName: AGENT_ENTRY_ALIAS,
      version: this.fn.currentVersion,
      description: 'the LB agents’ fast path: the function accepts only fast-path requests invoked through this alias',
    });

    // Alarms, the schedule and CloudFormation invoke the function itself (resource permissions on it);
    // the agents reach the alias through their role's IAM policy, which needs no resource permission.
    cdk.Annotations.of(this.fn).acknowledgeWarning('@aws-cdk/aws-lambda:addPermissionsToVersionOrAlias', 'the unqualified function is what alarms and the schedule invoke; the agents’ alias is reached through IAM');

    this.leaseTable.grant(this.fn, 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem');
    // Publish only: the topic is encrypted with the AWS-managed key (alias/aws/sns), whose key policy
    // lets SNS use it for this account's publishers, so no KMS grant (grantPublish would add
    // kms:GenerateDataKey* on key/*).
    this.fn.addToRolePolicy(new iam.PolicyStatement({ sid: 'Notify', actions: ['sns:Publish'], resources: [this.topic.topicArn] }));
    this.grantEc2(props);
  }

  /**
   * The resources the lifecycle custom resource needs in place (the function, its role and
   * policies, table, topic, logs) — not the invoke permissions of the alarms, which depend on
   * the lifecycle themselves.
   */
  lifecycleDependencies(): cdk.CfnResource[] {
    return this.node.findAll().filter((c): c is cdk.CfnResource => c instanceof cdk.CfnResource && !(c instanceof lambda.CfnPermission));
  }

  /** eni: create and delete the floating subnet and loxi-eni (tagged), attach and detach it, associate the one route table. */
  private eniStatements(props: FailoverFunctionProps, arn: (r: string) => string, tagged: Record<string, Record<string, string>>): iam.PolicyStatement[] {
    return [
      new iam.PolicyStatement({ sid: 'CreateFloatingSubnetInVpc', actions: ['ec2:CreateSubnet'], resources: [arn(`vpc/${props.vpcId}`)] }),
      new iam.PolicyStatement({
        sid: 'CreateTaggedResources',
        actions: ['ec2:CreateSubnet', 'ec2:CreateNetworkInterface'],
        resources: [arn('subnet/*'), arn('network-interface/*')],
        conditions: { StringEquals: { [`aws:RequestTag/${TAG.deployment}`]: props.config.deploymentId } },
      }),
      new iam.PolicyStatement({
        sid: 'CreateEniInFloatingSubnet',
        actions: ['ec2:CreateNetworkInterface'],
        resources: [arn('subnet/*')],
        conditions: tagged,
      }),
      new iam.PolicyStatement({
        sid: 'CreateEniWithLbSecurityGroup',
        actions: ['ec2:CreateNetworkInterface'],
        resources: [arn(`security-group/${props.lbSecurityGroupId}`)],
      }),
      new iam.PolicyStatement({
        sid: 'TagOnCreate',
        actions: ['ec2:CreateTags'],
        resources: [arn('subnet/*'), arn('network-interface/*')],
        conditions: { StringEquals: { 'ec2:CreateAction': ['CreateSubnet', 'CreateNetworkInterface'] } },
      }),
      new iam.PolicyStatement({
        sid: 'MutateOwnTaggedResources',
        actions: [
          'ec2:DeleteSubnet',
          'ec2:DeleteNetworkInterface',
          'ec2:ModifyNetworkInterfaceAttribute',
          'ec2:AttachNetworkInterface',
          'ec2:DetachNetworkInterface',
          'ec2:AssociateRouteTable',
          'ec2:DisassociateRouteTable',
          'ec2:AssociateAddress',
          'ec2:CreateTags',
        ],
        resources: [arn('subnet/*'), arn('network-interface/*'), arn('instance/*'), arn(`route-table/${props.floatingRouteTableId}`)],
        conditions: tagged,
      }),
    ];
  }

  /** route: the VIP's /32 in the listed route tables only; the EIP only onto this deployment's interfaces. Nothing created or deleted. */
  private routeStatements(props: FailoverFunctionProps, arn: (r: string) => string, tagged: Record<string, Record<string, string>>): iam.PolicyStatement[] {
    return [
      new iam.PolicyStatement({
        sid: 'VipRoutesInListedTables',
        actions: ['ec2:CreateRoute', 'ec2:ReplaceRoute', 'ec2:DeleteRoute'],
        resources: (props.vipRouteTableIds ?? []).map((id) => arn(`route-table/${id}`)),
      }),
      new iam.PolicyStatement({
        sid: 'EipOntoOwnInterfaces',
        actions: ['ec2:AssociateAddress'],
        resources: [arn('network-interface/*')],
        conditions: tagged,
      }),
    ];
  }

  private grantEc2(props: FailoverFunctionProps): void {
    const stack = cdk.Stack.of(this);
    const arn = (resource: string, service = 'ec2') => `arn:${stack.partition}:${service}:${stack.region}:${stack.account}:${resource}`;
    const tagged = { StringEquals: { [`aws:ResourceTag/${TAG.deployment}`]: props.config.deploymentId } };
    const role = this.fn.role!;
    const statements = [
      new iam.PolicyStatement({
        sid: 'Observe',
        actions: [
          'ec2:DescribeInstances',
          'ec2:DescribeInstanceStatus',
          'ec2:DescribeInstanceTypes',
          'ec2:DescribeNetworkInterfaces',
          'ec2:DescribeSubnets',
          'ec2:DescribeAddresses',
          'ec2:DescribeRouteTables',
          'cloudwatch:GetMetricData',
          'autoscaling:DescribeAutoScalingGroups',
        ],
        resources: ['*'],
      }),
      ...(props.config.strategy === 'eni' ? this.eniStatements(props, arn, tagged) : this.routeStatements(props, arn, tagged)),
      new iam.PolicyStatement({
        sid: props.groups.length > 1 ? 'MoveTheGroupsEips' : 'MoveTheOneEip',
        actions: ['ec2:AssociateAddress', 'ec2:DisassociateAddress'],
        resources: props.groups.map((g) => arn(`elastic-ip/${g.allocationId}`)),
      }),
      // The slots' lifecycle actions: attach a slot's interface to its new instance, source/dest check
      // off on it, the draining tag on one being terminated — this deployment's tagged resources only.
      new iam.PolicyStatement({
        sid: 'SlotInstances',
        actions: ['ec2:AttachNetworkInterface', 'ec2:ModifyInstanceAttribute', 'ec2:CreateTags'],
        resources: [arn('network-interface/*'), arn('instance/*')],
        conditions: tagged,
      }),
      new iam.PolicyStatement({
        sid: 'SlotLifecycleActions',
        // and a rollout's one call: a group replaces its instance (through its terminating hook).
        actions: ['autoscaling:CompleteLifecycleAction', 'autoscaling:RecordLifecycleActionHeartbeat', 'autoscaling:TerminateInstanceInAutoScalingGroup'],
        resources: Array.from({ length: slotCountOf(props.config) }, (_, i) => arn(`autoScalingGroup:*:autoScalingGroupName/${slotGroupName(props.config.deploymentId, i)}`, 'autoscaling')),
      }),
      new iam.PolicyStatement({
        sid: 'Events',
        actions: ['events:PutEvents'],
        resources: [arn('event-bus/default', 'events')],
      }),
    ];
    for (const s of statements) role.addToPrincipalPolicy(s);
    cdk.Validations.of(role).acknowledge(
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'EC2 Describe*, autoscaling:DescribeAutoScalingGroups and cloudwatch:GetMetricData have no resource-level permissions.',
      },
    );
    for (const r of props.config.strategy === 'eni' ? ['subnet/*', 'network-interface/*', 'instance/*'] : ['network-interface/*', 'instance/*']) {
      cdk.Validations.of(role).acknowledge({
        id: `AwsSolutions-IAM5[Resource::arn:${nagValue(stack.partition, 'AWS::Partition')}:ec2:${nagValue(stack.region, 'AWS::Region')}:${nagValue(stack.account, 'AWS::AccountId')}:${r}]`,
        reason:
          props.config.strategy === 'eni'
            ? `The floating subnet, loxi-eni and the LB instances are found at run time; every statement on ${r} requires this deployment's tag (aws:ResourceTag or aws:RequestTag) or a create action.`
            : `The slots' interfaces and instances are found at run time; every statement on ${r} requires this deployment's tag (aws:ResourceTag).`,
      });
    }
    for (let i = 0; i < slotCountOf(props.config); i++) {
      cdk.Validations.of(role).acknowledge({
        id: `AwsSolutions-IAM5[Resource::arn:${nagValue(stack.partition, 'AWS::Partition')}:autoscaling:${nagValue(stack.region, 'AWS::Region')}:${nagValue(stack.account, 'AWS::AccountId')}:autoScalingGroup:*:autoScalingGroupName/${slotGroupName(props.config.deploymentId, i)}]`,
        reason: 'An Auto Scaling group ARN carries a generated id; the group is named by the stack and the statement names it.',
      });
    }
    cdk.Validations.of(this.fn).acknowledge({
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      reason: 'The AWS-managed basic execution role only allows writing the function’s own logs.',
    });
  }
}

/** How cdk-nag renders a value in a finding id: the pseudo parameter when it is a token. */
function nagValue(value: string, pseudo: string): string {
  return cdk.Token.isUnresolved(value) ? `<${pseudo}>` : value;
}
