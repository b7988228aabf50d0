import type { AgentConfig } from '../config.ts';
import type { SyncState } from '../ha/heartbeat.ts';
import type { Imds } from '../ha/imds.ts';
import { log } from '../log.ts';

/**
 * Heartbeats to CloudWatch once the instance id is known from IMDS (retried until it is: the
 * packet path and the API run meanwhile). Each beat carries what session sync says: a planned move
 * waits for the survivor to be in sync.
 */
export async function startHeartbeat(deploymentId: string, slot: number, aws: NonNullable<AgentConfig['aws']>, imds: Imds, onInstanceId: (id: string) => void, syncState: () => SyncState): Promise<{ stop: () => Promise<void> }> {
  const { Heartbeat } = await import('../ha/heartbeat.ts');
  const { CloudWatchClient } = await import('@aws-sdk/client-cloudwatch');
  let stopped = false;
  let beat: InstanceType<typeof Heartbeat> | undefined;
  const cloudwatch = new CloudWatchClient({ region: aws.region, endpoint: aws.endpoint, maxAttempts: 2 });
  void (async () => {
    for (let attempt = 0; !stopped; attempt++) {
      try {
        const instanceId = await imds.instanceId();
        if (stopped) return;
        onInstanceId(instanceId);
        beat = new Heartbeat({ cloudwatch, namespace: aws.metricNamespace, deploymentId, instanceId, slot, intervalMs: aws.heartbeatIntervalMs, syncState, log });
        beat.start();
        log('info', 'beating to CloudWatch', { instanceId, namespace: aws.metricNamespace, intervalMs: aws.heartbeatIntervalMs });
        return;
      } catch (e) {
        if (attempt === 0) log('warn', 'instance metadata unavailable; retrying before heartbeats start', { error: (e as Error).message });
        await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** attempt)));
      }
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await beat?.stop();
      cloudwatch.destroy();
    },
  };
}

