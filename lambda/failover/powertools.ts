/**
 * Logger and metrics singletons (one per execution environment, as Powertools recommends). Every
 * metric carries the deployment as a default dimension, so single metrics (per phase) carry it too.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { FAILOVER_SERVICE_NAME, FUNCTION_ENV, METRICS } from '../../lib/contract.ts';

export const logger = new Logger({ serviceName: FAILOVER_SERVICE_NAME });
export const metrics = new Metrics({
  namespace: METRICS.namespace,
  serviceName: FAILOVER_SERVICE_NAME,
  defaultDimensions: { [METRICS.dimensions.deployment]: process.env[FUNCTION_ENV.deploymentId] ?? 'unknown' },
});
