/** Logger and metrics singletons (one per execution environment, as Powertools recommends). */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';

export const logger = new Logger({ serviceName: 'loxiha-failover' });
export const metrics = new Metrics({ namespace: 'Loxiha', serviceName: 'loxiha-failover' });
