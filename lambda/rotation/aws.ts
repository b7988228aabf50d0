/** Thin adapters of the rotation function: Secrets Manager, and the instances' SecretHeld reports. */
import { type CloudWatchClient, GetMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { DescribeSecretCommand, GetRandomPasswordCommand, GetSecretValueCommand, PutSecretValueCommand, type SecretsManagerClient, UpdateSecretVersionStageCommand } from '@aws-sdk/client-secrets-manager';
import { METRICS, SECRET_STAGE, type SecretKind } from '../../lib/contract.ts';
import type { SlotGroupsAdapter } from '../failover/aws/autoscaling.ts';
import type { InstanceView } from './confirm.ts';
import type { Confirmations, SecretDescription, SecretStore } from './rotate.ts';

export class SecretsAdapter implements SecretStore {
  private readonly client: SecretsManagerClient;

  constructor(client: SecretsManagerClient) {
    this.client = client;
  }

  async describe(secretId: string): Promise<SecretDescription> {
    const r = await this.client.send(new DescribeSecretCommand({ SecretId: secretId }));
    return { arn: r.ARN ?? secretId, stages: r.VersionIdsToStages ?? {}, tags: Object.fromEntries((r.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? ''])) };
  }

  async value(secretId: string, versionId: string): Promise<string> {
    const r = await this.client.send(new GetSecretValueCommand({ SecretId: secretId, VersionId: versionId }));
    if (r.SecretString === undefined) throw new Error(`version ${versionId} holds no string`);
    return r.SecretString;
  }

  async hasValue(secretId: string, versionId: string): Promise<boolean> {
    try {
      await this.client.send(new GetSecretValueCommand({ SecretId: secretId, VersionId: versionId, VersionStage: SECRET_STAGE.pending }));
      return true;
    } catch (e) {
      if ((e as Error).name === 'ResourceNotFoundException') return false;
      throw e;
    }
  }

  async randomValue(length: number): Promise<string> {
    const r = await this.client.send(new GetRandomPasswordCommand({ PasswordLength: length, ExcludePunctuation: true, IncludeSpace: false }));
    if (!r.RandomPassword) throw new Error('GetRandomPassword returned nothing');
    return r.RandomPassword;
  }

  async putPending(secretId: string, versionId: string, value: string): Promise<void> {
    await this.client.send(new PutSecretValueCommand({ SecretId: secretId, ClientRequestToken: versionId, SecretString: value, VersionStages: [SECRET_STAGE.pending] }));
  }

  async moveCurrent(secretId: string, to: string, from: string): Promise<void> {
    await this.client.send(new UpdateSecretVersionStageCommand({ SecretId: secretId, VersionStage: SECRET_STAGE.current, MoveToVersionId: to, RemoveFromVersionId: from }));
  }
}

/** How far back a SecretHeld datum still counts: a few of the agents' 5 s beats. */
export const HELD_WINDOW_MS = 30_000;
const PERIOD_SECONDS = 5;

export class ConfirmationsAdapter implements Confirmations {
  private readonly groups: SlotGroupsAdapter;
  private readonly cloudwatch: CloudWatchClient;
  private readonly deploymentId: string;
  private readonly now: () => number;

  constructor(o: { groups: SlotGroupsAdapter; cloudwatch: CloudWatchClient; deploymentId: string; now: () => number }) {
    this.groups = o.groups;
    this.cloudwatch = o.cloudwatch;
    this.deploymentId = o.deploymentId;
    this.now = o.now;
  }

  async instances(): Promise<InstanceView[]> {
    return (await this.groups.read()).flatMap((g) => g.instances.map((i) => ({ id: i.id, lifecycleState: i.lifecycleState })));
  }

  /**
   * The latest 5 s period (about one beat)'s minimum and maximum of each instance's SecretHeld: a value only when
   * both agree (the agent did not change its report within the period) and the period is recent.
   */
  async held(instanceIds: string[], kind: SecretKind): Promise<Map<string, number | undefined>> {
    const out = new Map<string, number | undefined>(instanceIds.map((id) => [id, undefined]));
    if (!instanceIds.length) return out;
    const now = this.now();
    const query = (id: string, n: number, stat: 'Minimum' | 'Maximum') => ({
      Id: `${stat === 'Minimum' ? 'lo' : 'hi'}${n}`,
      MetricStat: {
        Metric: {
          Namespace: METRICS.namespace,
          MetricName: METRICS.secretHeld,
          Dimensions: [
            { Name: METRICS.dimensions.deployment, Value: this.deploymentId },
            { Name: METRICS.dimensions.instanceId, Value: id },
            { Name: METRICS.dimensions.secret, Value: kind },
          ],
        },
        Period: PERIOD_SECONDS,
        Stat: stat,
      },
      ReturnData: true,
    });
    const latest = new Map<string, { t: number; v: number }>();
    let NextToken: string | undefined;
    do {
      const r = await this.cloudwatch.send(
        new GetMetricDataCommand({
          MetricDataQueries: instanceIds.flatMap((id, n) => [query(id, n, 'Minimum'), query(id, n, 'Maximum')]),
          StartTime: new Date(now - HELD_WINDOW_MS),
          EndTime: new Date(now + PERIOD_SECONDS * 1000),
          ScanBy: 'TimestampDescending',
          NextToken,
        }),
      );
      for (const res of r.MetricDataResults ?? []) {
        const newest = (res.Timestamps ?? []).map((t, i) => ({ t: new Date(t).getTime(), v: res.Values?.[i] })).sort((a, b) => b.t - a.t)[0];
        if (newest?.v !== undefined && res.Id) latest.set(res.Id, { t: newest.t, v: newest.v });
      }
      NextToken = r.NextToken;
    } while (NextToken);
    instanceIds.forEach((id, n) => {
      const lo = latest.get(`lo${n}`);
      const hi = latest.get(`hi${n}`);
      if (lo && hi && lo.t === hi.t && lo.v === hi.v) out.set(id, lo.v);
    });
    return out;
  }
}
