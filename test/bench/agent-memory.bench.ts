/**
 * npm run bench:agent-memory (root) — the agent's RSS with 1,000 services × 8 endpoints, as the
 * packet path alone (no `aws` section: what bench:datapath measures) against the production
 * configuration (heartbeats to CloudWatch, the IMDS role watcher, the peer link and the fast-path
 * client), interleaved runs, medians. CloudWatch is an unreachable endpoint here (beats fail and
 * are retried each interval, as during an outage); IMDS is the e2e stand-in. One JSON line per path.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentConfigInput } from '../../agent/config.ts';
import { AgentRunner, ROOT } from '../harness/agents.ts';
import { BACK, Lab, VIP } from '../harness/netns.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SETTLE_MS = 8000;

const lab = new Lab();
const run = new AgentRunner(lab);

const service = (i: number) => ({
  name: `bench_${i}`,
  externalIP: '100.100.100.100',
  privateIP: VIP,
  port: 10000 + i,
  protocol: 'tcp',
  sel: 0,
  mode: 2,
  monitor: false,
  probe: { type: 'none', port: 0, req: '', resp: '', retries: 2, timeoutSeconds: 1 },
  inactiveTimeOut: 0,
  block: 0,
  managed: false,
  bgp: false,
  endpoints: Array.from({ length: 8 }, (_, k) => ({ ip: `${BACK}.${((i * 8 + k) % 250) + 1}`, port: 30000 + (i % 2000), weight: 1 })),
  allowedSources: [],
  secondaryIPs: [],
});

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

try {
  lab.build({ lbs: 2, backends: 1 });
  const keyFile = join(run.dir, 'sync-key');
  writeFileSync(keyFile, 's'.repeat(48), { mode: 0o600 });
  const imds = lab.spawn('lb1', process.execPath, [join(ROOT, 'test/e2e/fixtures/imds.mjs'), '5001', 'i-0aaaaaaaaaaaaaaa1', `${BACK}.11`]);
  await imds.waitFor(/imds listening/);
  const paths: Record<string, Partial<AgentConfigInput>> = {
    'packet-path-only': {},
    'production-config': {
      peers: [{ index: 1, ip: `${BACK}.12` }],
      sync: { secretFile: keyFile },
      aws: { region: 'us-east-1', failoverFunctionName: 'loxiha-failover', metricNamespace: 'Loxiha', endpoint: 'http://127.0.0.1:9', imdsEndpoint: 'http://127.0.0.1:5001' },
    },
  };
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(paths).map((p) => [p, []]));
  for (let r = 0; r < RUNS; r++) {
    const order = r % 2 ? Object.keys(paths).reverse() : Object.keys(paths);
    for (const path of order) {
      const state = join(run.dir, `state-${path}-${r}`);
      mkdirSync(state, { recursive: true });
      writeFileSync(join(state, 'services.json'), JSON.stringify({ version: 1, services: Array.from({ length: 1000 }, (_, i) => service(i)) }));
      lab.exec('lb1', 'sh', ['-c', 'nft delete table ip loxiha 2>/dev/null; true']);
      const agent = await run.startAgent(1, { stateDir: state, ...paths[path] }, 2000, { AWS_ACCESS_KEY_ID: 'bench', AWS_SECRET_ACCESS_KEY: 'bench' });
      await new Promise((res) => setTimeout(res, SETTLE_MS));
      // A few API changes on top, as bench:datapath does before it reads RSS.
      for (let i = 0; i < 3; i++) {
        await run.api(1, 'POST', '/config/loadbalancer', { serviceArguments: { externalIP: '100.100.100.100', privateIP: VIP, port: 9999, protocol: 'tcp', mode: 2, name: 'one_more' }, endpoints: [{ endpointIP: `${BACK}.101`, targetPort: 8080, weight: 1 }] });
        await run.api(1, 'DELETE', '/config/loadbalancer/externalipaddress/100.100.100.100/port/9999/protocol/tcp');
      }
      samples[path]!.push(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${agent.child.pid}/status`, 'utf8'))![1]) / 1024);
      await lab.kill(agent);
    }
  }
  const base = median(samples['packet-path-only']!);
  for (const [path, xs] of Object.entries(samples)) {
    console.log(JSON.stringify({ metric: 'agent-rss-mb-1000x8', path, median: Math.round(median(xs)), min: Math.round(Math.min(...xs)), max: Math.round(Math.max(...xs)), deltaToPacketPathOnly: Math.round(median(xs) - base), runs: xs.length, targetMax: 120 }));
  }
} finally {
  await lab.stop();
  run.cleanup();
}
