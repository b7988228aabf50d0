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
import { AgentRunner, awsSection } from '../../sim/agents.ts';
import { BACK, Lab } from '../../sim/netns.ts';
import { ONE_MORE, thousandByEight } from './workload.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SETTLE_MS = 8000;

const lab = new Lab();
const run = new AgentRunner(lab);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

try {
  lab.build({ lbs: 2, backends: 1 });
  await run.startImds(1, 'i-0aaaaaaaaaaaaaaa1');
  const paths: Record<string, Partial<AgentConfigInput>> = {
    'packet-path-only': {},
    'production-config': {
      peers: [{ index: 1, ip: `${BACK}.12` }],
      sync: { secretFile: run.syncKeyFile },
      aws: awsSection('http://127.0.0.1:9'),
    },
  };
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(paths).map((p) => [p, []]));
  for (let r = 0; r < RUNS; r++) {
    const order = r % 2 ? Object.keys(paths).reverse() : Object.keys(paths);
    for (const path of order) {
      const state = join(run.dir, `state-${path}-${r}`);
      mkdirSync(state, { recursive: true });
      writeFileSync(join(state, 'services.json'), JSON.stringify({ version: 1, services: thousandByEight() }));
      lab.exec('lb1', 'sh', ['-c', 'nft delete table ip loxiha 2>/dev/null; true']);
      const agent = await run.startAgent(1, { stateDir: state, ...paths[path] }, 2000);
      await new Promise((res) => setTimeout(res, SETTLE_MS));
      // A few API changes on top, as bench:datapath does before it reads RSS.
      for (let i = 0; i < 3; i++) {
        await run.api(1, 'POST', '/config/loadbalancer', ONE_MORE.body);
        await run.api(1, 'DELETE', ONE_MORE.path);
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
