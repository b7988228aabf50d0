/** Thin adapter over CloudWatch: the agents' heartbeats and sync state, read in one GetMetricData call. */
import { type CloudWatchClient, GetMetricDataCommand, type MetricDataQuery } from '@aws-sdk/client-cloudwatch';
import { METRICS } from '../../../lib/contract.ts';

export interface AgentReport {
  lastHeartbeatAt: number | undefined;
  sessionsInSync: boolean | undefined;
  /** The agent's kernel prerequisites hold (AgentReady); undefined: not reported (an agent from before it was sent). */
  ready: boolean | undefined;
  /** It serves the owner's services (ServicesMatch); undefined: not reported. */
  servicesMatch?: boolean | undefined;
}

/** Window looked at: long enough to tell "stale" from "never seen" over a few alarm periods. */
export const HEARTBEAT_WINDOW_MS = 180_000;
const PERIOD_SECONDS = 10;

export class CloudWatchAdapter {
  private readonly client: CloudWatchClient;
  private readonly deploymentId: string;
  calls = 0;

  constructor(client: CloudWatchClient, deploymentId: string) {
    this.client = client;
    this.deploymentId = deploymentId;
  }

  async agentReports(instanceIds: string[], now: number): Promise<Map<string, AgentReport>> {
    const out = new Map<string, AgentReport>(instanceIds.map((id) => [id, { lastHeartbeatAt: undefined, sessionsInSync: undefined, ready: undefined }]));
    if (!instanceIds.length) return out;
    const metric = (name: string, id: string, stat: string, q: string): MetricDataQuery => ({
      Id: q,
      MetricStat: {
        Metric: {
          Namespace: METRICS.namespace,
          MetricName: name,
          Dimensions: [
            { Name: METRICS.dimensions.deployment, Value: this.deploymentId },
            { Name: METRICS.dimensions.instanceId, Value: id },
          ],
        },
        Period: PERIOD_SECONDS,
        Stat: stat,
      },
      ReturnData: true,
    });
    const queries = instanceIds.flatMap((id, n) => [metric(METRICS.heartbeat, id, 'SampleCount', `hb${n}`), metric(METRICS.sessionsInSync, id, 'Minimum', `sync${n}`), metric(METRICS.agentReady, id, 'Minimum', `ready${n}`), metric(METRICS.servicesMatch, id, 'Minimum', `svc${n}`)]);
    let NextToken: string | undefined;
    do {
      this.calls++;
      const r = await this.client.send(
        new GetMetricDataCommand({
          MetricDataQueries: queries,
          StartTime: new Date(now - HEARTBEAT_WINDOW_MS),
          EndTime: new Date(now + PERIOD_SECONDS * 1000),
          ScanBy: 'TimestampDescending',
          NextToken,
        }),
      );
      for (const res of r.MetricDataResults ?? []) {
        const m = /^(hb|sync|ready|svc)(\d+)$/.exec(res.Id ?? '');
        if (!m) continue;
        const report = out.get(instanceIds[Number(m[2])]!)!;
        const points = (res.Timestamps ?? []).map((t, i) => ({ t: new Date(t).getTime(), v: res.Values?.[i] ?? 0 })).sort((a, b) => b.t - a.t);
        if (m[1] === 'hb') {
          const latest = points.find((p) => p.v > 0);
          if (latest && (report.lastHeartbeatAt === undefined || latest.t > report.lastHeartbeatAt)) report.lastHeartbeatAt = latest.t;
        } else if (m[1] === 'svc') {
          if (points[0] && report.servicesMatch === undefined) report.servicesMatch = points[0].v >= 1;
        } else if (m[1] === 'sync') {
          if (points[0] && report.sessionsInSync === undefined) report.sessionsInSync = points[0].v >= 1;
        } else if (points[0] && report.ready === undefined) {
          // The latest period's minimum: not ready at any beat of it counts (an agent that never sent it: unknown).
          report.ready = points[0].v >= 1;
        }
      }
      NextToken = r.NextToken;
    } while (NextToken);
    return out;
  }
}
