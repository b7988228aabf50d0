/**
 * npm run bench:agent-memory (root) — the agent's RSS with 1,000 services × 8 endpoints, as the
 * packet path alone (no `aws` section: what bench:datapath measures) against the production
 * configuration (heartbeats to CloudWatch, the IMDS role watcher, the peer link and the fast-path
 * client), interleaved runs, medians. CloudWatch is an unreachable endpoint here (beats fail and
 * are retried each interval, as during an outage); IMDS is the e2e stand-in. In the production
 * configuration the peer is a second agent (lb2, the same services): heartbeats both ways, the
 * session stream connected and in sync, and 300 connections through the VIP streamed to it before
 * the sample. One JSON line per path (lb1's RSS), and the peer's RSS.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentConfigInput } from '../../agent/config.ts';
import { AgentRunner, awsSection, IMDS_PORT, lbEntry } from '../../sim/agents.ts';
import { haOf, until } from '../../sim/flows.ts';
import { BACK, Lab, VIP } from '../../sim/netns.ts';
import { ONE_MORE, thousandByEight } from './workload.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SETTLE_MS = 8000;

const lab = new Lab();
const run = new AgentRunner(lab);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

try {
  lab.build({ lbs: 2, backends: 1 });
  await run.startImds(1, 'i-0aaaaaaaaaaaaaaa1');
  // lb1 holds the VIP as IMDS tells it (the production configuration's role source): MASTER, the stream's owner.
  lab.exec('lb1', 'curl', ['-sf', '-X', 'POST', `http://127.0.0.1:${IMDS_PORT}/control/attach?vip=${VIP}`]);
  await run.startBackends(1);
  const peerRss: number[] = [];
  const streamed: number[] = [];
  const paths: Record<string, Partial<AgentConfigInput>> = {
    'packet-path-only': {},
    'production-config': {
      peers: [{ index: 1, ip: `${BACK}.12` }],
      sync: { secretFile: run.syncKeyFile },
      // As on AWS: the agent follows both secrets (its Secrets Manager client loaded; the endpoint answers nothing, so the files keep what they hold).
      aws: awsSection('http://127.0.0.1:9', { secrets: { apiToken: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:loxiha-api-token', syncKey: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:loxiha-sync-key' } }),
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
      const production = path === 'production-config';
      const agent = await run.startAgent(1, { stateDir: state, ...paths[path] }, 2000);
      let peer: Awaited<ReturnType<typeof run.startAgent>> | undefined;
      if (production) {
        const peerState = join(run.dir, `state-peer-${r}`);
        mkdirSync(peerState, { recursive: true });
        writeFileSync(join(peerState, 'services.json'), JSON.stringify({ version: 1, services: thousandByEight() }));
        lab.exec('lb2', 'sh', ['-c', 'nft delete table ip loxiha 2>/dev/null; true']);
        peer = await run.startAgent(2, { stateDir: peerState, peers: [{ index: 0, ip: `${BACK}.11` }], sync: { secretFile: run.syncKeyFile } }, 2000);
        // The traffic's service on both, as kube-loxilb sets it on every instance.
        for (const lb of [1, 2]) await run.api(lb, 'POST', '/config/loadbalancer', lbEntry({ backends: [1] }));
        await until('the peer in sync', async () => (await haOf(run, 2)).sync === 1, 20_000).catch(async (e) => { throw new Error(`${e.message}: lb1 ${JSON.stringify(await haOf(run, 1))} lb2 ${JSON.stringify(await haOf(run, 2))}`); });
      }
      await new Promise((res) => setTimeout(res, SETTLE_MS));
      // A few API changes on top, as bench:datapath does before it reads RSS.
      for (let i = 0; i < 3; i++) {
        await run.api(1, 'POST', '/config/loadbalancer', ONE_MORE.body);
        await run.api(1, 'DELETE', ONE_MORE.path);
      }
      if (production) {
        const before = (await haOf(run, 2)).syncEntries ?? 0;
        const r = run.client(['tcp', VIP, '80', '300']);
        if (r.results.filter((x: string) => /^be\d/.test(x)).length < 300) throw new Error(`the connections through the VIP failed: ${JSON.stringify(r).slice(0, 300)}`);
        await until('the peer received the connections', async () => ((await haOf(run, 2)).syncEntries ?? 0) - before >= 300, 20_000);
        streamed.push(((await haOf(run, 2)).syncEntries ?? 0) - before);
      }
      const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
      samples[path]!.push(rssOf(agent.child.pid!));
      if (peer) {
        peerRss.push(rssOf(peer.child.pid!));
        await lab.kill(peer);
      }
      await lab.kill(agent);
    }
  }
  const base = median(samples['packet-path-only']!);
  for (const [path, xs] of Object.entries(samples)) {
    console.log(JSON.stringify({ metric: 'agent-rss-mb-1000x8', path, median: Math.round(median(xs)), min: Math.round(Math.min(...xs)), max: Math.round(Math.max(...xs)), deltaToPacketPathOnly: Math.round(median(xs) - base), runs: xs.length, ...(path === 'production-config' ? { syncEntriesStreamedToPeer: streamed } : {}), targetMax: 120 }));
  }
  console.log(JSON.stringify({ metric: 'agent-rss-mb-1000x8', path: 'production-config, the peer (receiving the stream)', median: Math.round(median(peerRss)), min: Math.round(Math.min(...peerRss)), max: Math.round(Math.max(...peerRss)), runs: peerRss.length, targetMax: 120 }));
} finally {
  await lab.stop();
  run.cleanup();
}
