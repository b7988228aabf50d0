/**
 * The dashboard graphs what the function emits: every metric the dashboard queries in the
 * function's namespace, with the dimensions it queries, appears in the EMF the function writes
 * for a failover that went through every phase.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FAILOVER_PHASES, FUNCTION_ENV, METRICS } from '../../lib/contract.ts';
import { synthStack } from '../helpers/stack.ts';

type EmfDoc = { _aws: { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[] } } & Record<string, unknown>;

/** (namespace, metric, sorted dimension name=value pairs) of every metric in the EMF documents. */
function emitted(docs: EmfDoc[]): Set<string> {
  const out = new Set<string>();
  for (const d of docs) {
    for (const m of d._aws.CloudWatchMetrics) {
      for (const dims of m.Dimensions) {
        for (const metric of m.Metrics) out.add([m.Namespace, metric.Name, ...dims.map((k) => `${k}=${String(d[k])}`).sort()].join('|'));
      }
    }
  }
  return out;
}

/** The same key for every metric a dashboard widget queries (`[namespace, name, dim, value, …, {options}]`). */
function graphed(body: string, namespace: string): string[] {
  const widgets = (JSON.parse(body) as { widgets: { properties: { metrics?: unknown[][] } }[] }).widgets;
  return widgets
    .flatMap((w) => w.properties.metrics ?? [])
    .filter((m) => m[0] === namespace)
    .map((m) => {
      const parts = m.filter((x) => typeof x === 'string') as string[];
      const [ns, name, ...dims] = parts;
      const pairs: string[] = [];
      for (let i = 0; i + 1 < dims.length; i += 2) pairs.push(`${dims[i]}=${dims[i + 1]}`);
      return [ns, name, ...pairs.sort()].join('|');
    });
}

afterEach(() => vi.restoreAllMocks());

type Reporters = typeof import('../../lambda/failover/report.ts');
type Powertools = typeof import('../../lambda/failover/powertools.ts');

/**
 * What the function emits (as EMF keys) while `emit` reports through its Reporter, loaded as deployed:
 * the environment names the deployment, metrics on, everything written to stdout captured.
 */
async function emittedBy(deploymentId: string, emit: (m: { Reporter: Reporters['Reporter']; metrics: Powertools['metrics']; logger: Powertools['logger'] }) => Promise<void>): Promise<Set<string>> {
  process.env[FUNCTION_ENV.deploymentId] = deploymentId;
  delete process.env.POWERTOOLS_METRICS_DISABLED;
  vi.resetModules();
  const { metrics, logger } = await import('../../lambda/failover/powertools.ts');
  const { Reporter } = await import('../../lambda/failover/report.ts');
  const lines: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  logger.setLogLevel('SILENT');
  await emit({ Reporter, metrics, logger });
  metrics.publishStoredMetrics();
  vi.restoreAllMocks();
  return emitted(lines.flatMap((l) => l.split('\n')).filter((l) => l.includes('"_aws"')).map((l) => JSON.parse(l) as EmfDoc));
}

describe('metrics: the dashboard and the function agree', () => {
  it('every failover metric the dashboard graphs is emitted, with the deployment and the dimensions it queries', async () => {
    const s = synthStack({});
    const deploymentId = s.config.deploymentId;
    // The function as deployed: its environment names the deployment; metrics on.
    const out = await emittedBy(deploymentId, async ({ Reporter, metrics, logger }) => {
      const reporter = new Reporter({ logger, metrics, eventBusName: 'default', deploymentId });
      await reporter.finished({
        ok: true,
        command: 'alarm',
        outcome: 'converged',
        reason: 'test',
        moved: true,
        steps: [],
        phases: Object.fromEntries(FAILOVER_PHASES.map((p, i) => [p, 100 + i])),
        durationMs: 1000,
        ec2Calls: 1,
        ec2Mutations: 1,
        sequentialMutations: 1,
      });
    });

    const body = JSON.stringify(Object.values(s.template.findResources('AWS::CloudWatch::Dashboard'))[0]!.Properties.DashboardBody);
    // The body is a CloudFormation join of strings and tokens: the failover widgets hold no tokens.
    const text = JSON.parse(body)['Fn::Join'][1].map((x: unknown) => (typeof x === 'string' ? x : 'TOKEN')).join('');
    const failoverGraphs = graphed(text, METRICS.namespace).filter((k) => k.includes(`|${METRICS.failoverPhaseDuration}|`) || k.includes(`|${METRICS.failoverDuration}|`));
    expect(failoverGraphs).toHaveLength(FAILOVER_PHASES.length);
    for (const k of failoverGraphs) expect(out, `${k} is graphed but never emitted`).toContain(k);
    // And every phase metric carries the deployment (two deployments in one account stay apart).
    for (const k of out) expect(k).toContain(`${METRICS.dimensions.deployment}=${deploymentId}`);
  });

  it('several VIP groups: the dashboard graphs each group\'s moves as the function counts them, and its owner and in-sync as the agents send them', async () => {
    const s = synthStack({ strategy: 'route', vip: '100.127.0.10', groups: [{ name: 'g1', vip: '100.127.1.10' }] });
    const deploymentId = s.config.deploymentId;
    const { beatData } = await import('../../agent/ha/heartbeat.ts');
    const out = await emittedBy(deploymentId, async ({ Reporter, metrics, logger }) => {
      for (const group of ['default', 'g1']) {
        const reporter = new Reporter({ logger, metrics, eventBusName: 'default', deploymentId, group, several: true });
        await reporter.finished({ ok: true, command: 'alarm', outcome: 'converged', reason: 'test', moved: true, steps: [], phases: {}, durationMs: 1000, ec2Calls: 1, ec2Mutations: 1, sequentialMutations: 1 });
      }
    });
    // What the agents send (PutMetricData): the owner's slot and in-sync, per group.
    for (const d of beatData({ deploymentId, instanceId: 'i-1', slot: 0 }, { inSync: true, groups: [{ name: 'default', owned: true, inSync: true }, { name: 'g1', owned: true, inSync: true }] }, new Date())) {
      out.add([METRICS.namespace, d.MetricName, ...(d.Dimensions ?? []).map((x) => `${x.Name}=${x.Value}`).sort()].join('|'));
    }
    const body = JSON.stringify(Object.values(s.template.findResources('AWS::CloudWatch::Dashboard'))[0]!.Properties.DashboardBody);
    const text = JSON.parse(body)['Fn::Join'][1].map((x: unknown) => (typeof x === 'string' ? x : 'TOKEN')).join('');
    const groupGraphs = graphed(text, METRICS.namespace).filter((k) => k.includes(`${METRICS.dimensions.group}=`));
    expect(groupGraphs).toHaveLength(6);
    for (const k of groupGraphs) expect(out, `${k} is graphed but never emitted`).toContain(k);
  });
});
