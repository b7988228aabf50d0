/**
 * The secret-rotation function: Secrets Manager invokes it once per step of a rotation of the API
 * token or the sync key (./rotate.ts). Composition root only: validates the event and wires clients.
 */
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import * as z from 'zod';
import { ROTATION_ENV, ROTATION_SERVICE_NAME } from '../../lib/contract.ts';
import { SlotGroupsAdapter } from '../failover/aws/autoscaling.ts';
import { ConfirmationsAdapter, SecretsAdapter } from './aws.ts';
import { ROTATION_STEPS, rotationStep } from './rotate.ts';

const logger = new Logger({ serviceName: ROTATION_SERVICE_NAME });

const env = z
  .object({
    [ROTATION_ENV.deploymentId]: z.string().min(1),
    [ROTATION_ENV.slotGroups]: z.string().min(1),
    [ROTATION_ENV.confirmTimeoutSeconds]: z.coerce.number().int().min(10).max(900).default(600),
    [ROTATION_ENV.confirmPollSeconds]: z.coerce.number().min(0.5).max(60).default(10),
  })
  .parse(process.env);

/** Secrets Manager's rotation event (its fields as AWS sends them; anything else is refused). */
export const rotationEventSchema = z.object({
  SecretId: z.string().min(1),
  ClientRequestToken: z.string().min(32).max(64),
  Step: z.enum(ROTATION_STEPS),
  RotationToken: z.string().optional(),
});

const common = { region: process.env.AWS_REGION ?? 'us-east-1', endpoint: process.env.LOXIHA_AWS_ENDPOINT, maxAttempts: 6 };
const secrets = new SecretsAdapter(new SecretsManagerClient(common));
const confirmations = new ConfirmationsAdapter({
  groups: new SlotGroupsAdapter(new AutoScalingClient(common), env[ROTATION_ENV.slotGroups].split(',')),
  cloudwatch: new CloudWatchClient(common),
  deploymentId: env[ROTATION_ENV.deploymentId],
  now: Date.now,
});

/** Margin kept before the function's timeout to answer. */
const SAFETY_MS = 15_000;

export const handler = middy(async (event: unknown, context: Context): Promise<string> => {
  const parsed = rotationEventSchema.safeParse(event);
  if (!parsed.success) {
    logger.error('not a Secrets Manager rotation event: nothing done', { issues: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) });
    throw new Error(`invalid rotation event: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const { SecretId, ClientRequestToken, Step } = parsed.data;
  const started = Date.now();
  const result = await rotationStep(
    {
      deploymentId: env[ROTATION_ENV.deploymentId],
      secrets,
      confirmations,
      now: Date.now,
      sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
      waitUntil: () => Math.min(started + env[ROTATION_ENV.confirmTimeoutSeconds] * 1000, Date.now() + context.getRemainingTimeInMillis() - SAFETY_MS),
      pollMs: env[ROTATION_ENV.confirmPollSeconds] * 1000,
      log: (msg, extra) => logger.info(msg, { step: Step, ...extra }),
    },
    SecretId,
    ClientRequestToken,
    Step,
  );
  logger.info('rotation step done', { step: Step, secret: SecretId, version: ClientRequestToken, result });
  return result;
}).use(injectLambdaContext(logger));
