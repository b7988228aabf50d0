import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as cdk from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { handlerCode } from '../bundling/handler-code.ts';
import { type LoxihaConfig, slotCountOf } from '../config.ts';
import { ROTATION_ENV, ROTATION_SERVICE_NAME, type SecretKind, slotGroupName, TAG } from '../contract.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** How long the set step waits for every LB instance (and kube-loxilb) to take a pending value. */
export const CONFIRM_TIMEOUT_SECONDS = 600;

/**
 * Secrets Manager rotation of the agents' API token and sync key: one function (lambda/rotation)
 * for both, on the configured schedule. The function creates the pending value, waits until every
 * LB instance's agent reports it holds it (and, for the token, that kube-loxilb calls with it), then
 * makes it current. Least privilege: the rotation actions on these two secrets (granted by the
 * schedule), reading the slot groups and the agents' metrics.
 */
export class SecretRotation extends Construct {
  readonly fn: lambda.Function;

  constructor(scope: Construct, id: string, props: { config: LoxihaConfig; secrets: { kind: SecretKind; secret: secretsmanager.Secret }[] }) {
    super(scope, id);
    const { config } = props;
    const logGroup = new logs.LogGroup(this, 'Logs', { retention: config.logRetentionDays as logs.RetentionDays, removalPolicy: cdk.RemovalPolicy.DESTROY });
    this.fn = new lambda.Function(this, 'Fn', {
      code: handlerCode(path.join(ROOT, 'lambda/rotation/handler.ts')),
      handler: 'index.handler',
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: 256,
      timeout: cdk.Duration.seconds(CONFIRM_TIMEOUT_SECONDS + 60),
      logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      description: `loxiha ${config.deploymentId}: rotates the agents' API token and sync key, making a new value current only once every LB instance uses it`,
      environment: {
        [ROTATION_ENV.deploymentId]: config.deploymentId,
        [ROTATION_ENV.slotGroups]: Array.from({ length: slotCountOf(config) }, (_, i) => slotGroupName(config.deploymentId, i)).join(','),
        [ROTATION_ENV.confirmTimeoutSeconds]: String(CONFIRM_TIMEOUT_SECONDS),
        POWERTOOLS_SERVICE_NAME: ROTATION_SERVICE_NAME,
      },
    });
    this.fn.addToRolePolicy(new iam.PolicyStatement({ sid: 'ReadSlotGroups', actions: ['autoscaling:DescribeAutoScalingGroups'], resources: ['*'] }));
    this.fn.addToRolePolicy(new iam.PolicyStatement({ sid: 'ReadAgentReports', actions: ['cloudwatch:GetMetricData'], resources: ['*'] }));
    for (const { kind, secret } of props.secrets) {
      cdk.Tags.of(secret).add(TAG.deployment, config.deploymentId);
      cdk.Tags.of(secret).add(TAG.secret, kind);
      // Not at deploy: the first deploy has no agent to confirm yet, and a config change is no reason to rotate.
      secret.addRotationSchedule('Rotation', { rotationLambda: this.fn, automaticallyAfter: cdk.Duration.days(config.secretRotationDays), rotateImmediatelyOnUpdate: false });
    }
    cdk.Validations.of(this.fn).acknowledge(
      { id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]', reason: 'Writes only to its own log group.' },
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'secretsmanager:GetRandomPassword (added by the rotation schedule), autoscaling:DescribeAutoScalingGroups and cloudwatch:GetMetricData support no resource-level permissions; every write is on the two secrets only.',
      },
    );
  }
}
