import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as cdk from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { handlerCode } from '../bundling/handler-code.ts';
import type { LoxihaConfig } from '../config.ts';
import { DEFAULT_GROUP, EIP_CLAIM_RESOURCE_TYPE, groupResourceName, TAG } from '../contract.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The deployment's EIP when `cdk destroy` keeps it (`uninstall.retainEip`, the default): a custom
 * resource finds the EIP tagged as this deployment's — one an earlier install kept — or allocates
 * one, tagged; deleting the resource keeps the address. So uninstalling and installing the same
 * deployment id again keeps the public address without editing config. An in-place upgrade from a
 * stack that had the EIP as its own resource (kept on removal) finds that one.
 */
export class EipClaim extends Construct {
  /** Each group's EIP, by group name. */
  readonly addresses: ReadonlyMap<string, { allocationId: string; publicIp: string }>;

  /** `groups`: the VIP groups whose EIP the stack claims (one custom resource each, one function for all). */
  constructor(scope: Construct, id: string, props: { config: LoxihaConfig; groups: readonly string[] }) {
    super(scope, id);
    const { config } = props;
    const stack = cdk.Stack.of(this);
    const fn = new lambda.Function(this, 'Fn', {
      code: handlerCode(path.join(ROOT, 'lambda/eip-claim/handler.ts')),
      handler: 'index.handler',
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: 256,
      timeout: cdk.Duration.minutes(2),
      logGroup: new logs.LogGroup(this, 'Logs', { retention: config.logRetentionDays as logs.RetentionDays, removalPolicy: cdk.RemovalPolicy.DESTROY }),
      loggingFormat: lambda.LoggingFormat.JSON,
      description: `loxiha ${config.deploymentId}: finds the EIP an earlier install of this deployment kept, or allocates one`,
    });
    const eipArn = `arn:${stack.partition}:ec2:${stack.region}:${stack.account}:elastic-ip/*`;
    fn.addToRolePolicy(new iam.PolicyStatement({ sid: 'FindTheDeploymentsEip', actions: ['ec2:DescribeAddresses'], resources: ['*'] }));
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'AllocateOnlyTagged',
        actions: ['ec2:AllocateAddress'],
        resources: [eipArn],
        conditions: { StringEquals: { [`aws:RequestTag/${TAG.deployment}`]: config.deploymentId } },
      }),
    );
    fn.addToRolePolicy(new iam.PolicyStatement({ sid: 'TagAtAllocation', actions: ['ec2:CreateTags'], resources: [eipArn], conditions: { StringEquals: { 'ec2:CreateAction': 'AllocateAddress' } } }));
    cdk.Validations.of(fn).acknowledge(
      { id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]', reason: 'Writes only to its own log group.' },
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'ec2:DescribeAddresses has no resource-level permissions.',
      },
      {
        id: `AwsSolutions-IAM5[Resource::arn:${cdk.Token.isUnresolved(stack.partition) ? '<AWS::Partition>' : stack.partition}:ec2:${cdk.Token.isUnresolved(stack.region) ? '<AWS::Region>' : stack.region}:${cdk.Token.isUnresolved(stack.account) ? '<AWS::AccountId>' : stack.account}:elastic-ip/*]`,
        reason: 'A new EIP has no id before it exists: AllocateAddress only with the deployment tag in the request, CreateTags only as part of that allocation.',
      },
    );
    const addresses = new Map<string, { allocationId: string; publicIp: string }>();
    for (const group of props.groups) {
      // The default group's claim keeps the id (and properties) it had before groups existed: an upgrade changes nothing.
      const claim = new cdk.CustomResource(this, group === DEFAULT_GROUP ? 'Resource' : `Resource-${group}`, {
        serviceToken: fn.functionArn,
        resourceType: EIP_CLAIM_RESOURCE_TYPE,
        properties: { DeploymentId: config.deploymentId, Name: groupResourceName(config.deploymentId, group), ...(group === DEFAULT_GROUP ? {} : { Group: group }) },
      });
      addresses.set(group, { allocationId: claim.getAttString('AllocationId'), publicIp: claim.getAttString('PublicIp') });
    }
    this.addresses = addresses;
  }
}
