/**
 * npm run bench:datapath — in namespaces made here: keep-alive req/s, new connections/s
 * (wrk) and Gbit/s (iperf3) for the direct path, the agent's kernel path (full ruleset:
 * 100 services × 8 endpoints, probes running) and HAProxy in TCP mode, interleaved runs,
 * medians. Then the time and memory for the agent to apply 1,000 services × 8 endpoints,
 * against `nft -f` of the same ruleset. One JSON line per figure.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { render } from '../../agent/datapath/render.ts';
import type { Service } from '../../agent/services/model.ts';
import { AgentRunner } from '../../sim/agents.ts';
import { BACK, FRONT, Lab, VIP } from '../../sim/netns.ts';
import { benchService, thousandByEight } from './workload.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
/** BENCH_METRICS=cps,rps to run a subset while investigating; the recorded figures use all three. */
const METRICS = (process.env.BENCH_METRICS ?? 'rps,cps,gbps').split(',').filter((m) => m && m !== 'none') as ('rps' | 'cps' | 'gbps')[];
const SKIP_APPLY = process.env.BENCH_SKIP_APPLY === '1';
/** BENCH_CHURN_SECONDS: how long each churn of the memory measurement runs (default 120; 0 skips it). */
const CHURN_SECONDS = Number(process.env.BENCH_CHURN_SECONDS ?? 120);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const BACKEND = `${BACK}.101`;
const LB_FRONT = `${FRONT}.11`;

const lab = new Lab();
const run = new AgentRunner(lab);
const lines: object[] = [];
const emit = (o: object) => {
  lines.push(o);
  console.log(JSON.stringify(o));
};

/** The measured HTTP service's 8 endpoints: the backend host's HTTP server on 8 ports, every one live. */
const HTTP_ENDPOINTS = Array.from({ length: 8 }, (_, k) => ({ ip: BACKEND, port: 8080 + k }));

/** 100 services × 8 endpoints; service 0 is HTTP (VIP:80 → 8 live endpoints), service 1 is iperf3 (VIP:5201). */
function fullRuleset(): Service[] {
  const dummies = (i: number) => Array.from({ length: 7 }, (_, k) => ({ ip: `${BACK}.${110 + ((i + k) % 100)}`, port: 30000 + i }));
  return [
    benchService(0, HTTP_ENDPOINTS, 80, true),
    benchService(1, [{ ip: BACKEND, port: 5201 }], 5201, false),
    ...Array.from({ length: 98 }, (_, i) => benchService(i + 2, [{ ip: BACKEND, port: 8080 }, ...dummies(i + 2)], 1000 + i, true)),
  ];
}

function median(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** 95 % percentile-bootstrap interval of the median (fixed seed: the same samples give the same interval). */
function bootstrapMedianInterval(xs: number[], resamples = 4000): [number, number] {
  let seed = 0x2545f491;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const medians = Array.from({ length: resamples }, () => median(xs.map(() => xs[Math.floor(rand() * xs.length)]!))).sort((a, b) => a - b);
  return [medians[Math.floor(resamples * 0.025)]!, medians[Math.ceil(resamples * 0.975) - 1]!];
}

function wrk(url: string, close: boolean): number {
  const args = ['-t2', '-c64', `-d${SECONDS}s`, '--latency', url];
  if (close) args.push('-H', 'Connection: close');
  const out = lab.exec('cl0', 'wrk', args);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  if (!rps) throw new Error(`wrk output not understood: ${out}`);
  if (errors && Number(errors[1]) + Number(errors[4]) > Number(rps[1]) * SECONDS * 0.01) throw new Error(`wrk: too many socket errors: ${errors[0]}`);
  // A run with error answers is not a result.
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (non2xx) throw new Error(`wrk ${url}: ${non2xx[1]} answers were not 2xx/3xx`);
  return Number(rps[1]);
}

function iperf(host: string, port: number): number {
  const out = lab.exec('cl0', 'iperf3', ['-c', host, '-p', String(port), '-t', String(SECONDS), '-J']);
  return JSON.parse(out).end.sum_received.bits_per_second / 1e9;
}

/** LB `lb`'s agent's resident memory now, in MB. */
const agentRssMb = (lb: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${run.procs.get(`agent${lb}`)!.child.pid!}/status`, 'utf8'))![1]) / 1024;

/** 1,000 services × 8 endpoints: the agent's start-up apply, one API change on top, its RSS; and `nft -f` alone. */
async function measureApply(): Promise<void> {
  const big = thousandByEight();
  // Baseline: the kernel alone loading the same ruleset.
  const text = render({ table: 'loxiha_bench', services: big, down: new Set(), hashSeed: 1 }).text;
  const file = join(run.dir, 'big.nft');
  writeFileSync(file, text);
  const nftTimes: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    lab.exec('lb1', 'nft', ['-f', file]);
    nftTimes.push(performance.now() - t);
  }
  lab.exec('lb1', 'nft', ['delete', 'table', 'ip', 'loxiha_bench']);
  // The agent: start with 1,000 × 8 persisted services (render + transaction), then one API change on top.
  await run.api(1, 'DELETE', '/config/loadbalancer/all');
  await lab.kill(run.procs.get('agent1')!);
  const stateBig = join(run.dir, 'state-big');
  mkdirSync(stateBig, { recursive: true });
  writeFileSync(join(stateBig, 'services.json'), JSON.stringify({ version: 2, services: big, down: [] }));
  const agentTimes: number[] = [];
  const changeTimes: number[] = [];
  const load = (args: string[]) => JSON.parse(lab.exec('lb1', process.execPath, [join(import.meta.dirname, 'api-load.mjs'), run.token, ...args]).trim());
  let rssDisk = 0;
  for (let i = 0; i < 5; i++) {
    lab.exec('lb1', 'nft', ['delete', 'table', 'ip', 'loxiha']);
    const agent = await run.startAgent(1, { stateDir: stateBig });
    const m = /"msg":"applied the services to nftables".*?"ms":(\d+(?:\.\d+)?)/.exec(agent.output());
    if (!m) throw new Error(`agent did not report its apply time: ${agent.output().slice(-500)}`);
    agentTimes.push(Number(m[1]));
    // One change at a time on top of 1,000 × 8, as kube-loxilb sends it (from inside the namespace, no process per call).
    changeTimes.push(...(load(['single', '10']).times as number[]));
    rssDisk = Math.max(rssDisk, agentRssMb(1));
    await lab.kill(run.procs.get('agent1')!);
  }
  // The path users take: 1,000 × 8 created through the API from 8 clients, then churn from 16.
  const bulkSeconds: number[] = [];
  let rssApi = 0;
  const churns: { calls: number; p50: number; p99: number; max: number }[] = [];
  for (let i = 0; i < 3; i++) {
    lab.exec('lb1', 'nft', ['delete', 'table', 'ip', 'loxiha']);
    const empty = join(run.dir, `state-api-${i}`);
    await run.startAgent(1, { stateDir: empty });
    bulkSeconds.push(load(['bulk', '1000', '8']).seconds);
    await new Promise((r) => setTimeout(r, 2000));
    rssApi = Math.max(rssApi, agentRssMb(1));
    churns.push(load(['churn', '5000', '16', '1000']));
    await lab.kill(run.procs.get('agent1')!);
  }
  const stat = (xs: number[], digits = 0) => ({ median: +median(xs).toFixed(digits), min: +Math.min(...xs).toFixed(digits), max: +Math.max(...xs).toFixed(digits) });
  emit({ metric: 'apply-1000x8-ms', path: 'agent', ...stat(agentTimes), targetMax: 1000 });
  emit({ metric: 'apply-1000x8-ms', path: 'nft-f-alone', ...stat(nftTimes) });
  emit({ metric: 'api-change-with-1000-services-ms', path: 'agent', ...stat(changeTimes, 1), samples: changeTimes.length, targetMedianMax: 25 });
  emit({ metric: 'api-bulk-1000x8-seconds', path: 'agent', clients: 8, ...stat(bulkSeconds, 2), targetMax: 5 });
  const of = (k: 'calls' | 'p50' | 'p99' | 'max') => stat(churns.map((c) => c[k]), 1);
  emit({ metric: 'api-churn-16-clients-ms', path: 'agent', runs: churns.length, calls: of('calls'), p50: of('p50'), p99: of('p99'), max: of('max'), targetP99Max: 200 });
  emit({ metric: 'agent-rss-mb-1000x8', path: 'agent', value: Math.round(rssDisk), targetMax: 120 });
  emit({ metric: 'agent-rss-mb-1000x8-via-api', path: 'agent', value: Math.round(rssApi), targetMax: 120 });
}

/**
 * The agent's memory under sustained API churn, as kube-loxilb drives it: 1,000 × 8 services created
 * through the API (8 clients), then CHURN_SECONDS of 16 clients re-POSTing them with changed
 * endpoints, then as long of 16 clients creating services never seen before and deleting them; RSS
 * sampled every 2 s, at the end of each churn and after 30 s idle. Two agents with session sync,
 * each churned by its own clients (kube-loxilb calls every instance). The target: ≤ 120 MB
 * throughout and after.
 */
async function measureChurnRss(): Promise<void> {
  for (const lb of [1, 2]) if (run.procs.get(`agent${lb}`)) await lab.kill(run.procs.get(`agent${lb}`)!);
  lab.exec('lb1', 'nft', ['delete', 'table', 'ip', 'loxiha']);
  for (const lb of [1, 2]) await run.startAgent(lb, { stateDir: join(run.dir, `state-churn-${lb}`), peers: [{ index: 2 - lb, ip: `${BACK}.${10 + (3 - lb)}` }], sync: { secretFile: run.syncKeyFile } });
  const load = (lb: number, args: string[]) =>
    new Promise<{ calls: number; p50: number; p99: number }>((resolve, reject) => {
      const c = spawn('ip', ['netns', 'exec', lab.ns(`lb${lb}`), process.execPath, join(import.meta.dirname, 'api-load.mjs'), run.token, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      c.stdout!.on('data', (d) => (out += d));
      c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim())) : reject(new Error(`api-load ${args.join(' ')} exited ${code}`))));
    });
  await Promise.all([1, 2].map((lb) => load(lb, ['bulk', '1000', '8'])));
  await new Promise((r) => setTimeout(r, 2000));
  const before = [agentRssMb(1), agentRssMb(2)];
  for (const mode of ['churn', 'churn-new'] as const) {
    let peak = [0, 0];
    const sampler = setInterval(() => (peak = [Math.max(peak[0]!, agentRssMb(1)), Math.max(peak[1]!, agentRssMb(2))]), 2000);
    const results = await Promise.all([1, 2].map((lb) => load(lb, mode === 'churn' ? ['churn', String(CHURN_SECONDS * 1000), '16', '1000'] : ['churn-new', String(CHURN_SECONDS * 1000), '16'])));
    clearInterval(sampler);
    const atEnd = [agentRssMb(1), agentRssMb(2)];
    await new Promise((r) => setTimeout(r, 30_000));
    const afterIdle = [agentRssMb(1), agentRssMb(2)];
    const r0 = (xs: number[]) => xs.map((x) => Math.round(x));
    emit({ metric: 'agent-rss-mb-after-churn', churn: mode === 'churn' ? 'existing services re-POSTed with changed endpoints' : 'new services created and deleted', value: Math.round(Math.max(...atEnd, ...afterIdle)), atEnd: r0(atEnd), afterIdle30s: r0(afterIdle), peakDuringChurn: r0(peak), beforeChurn: r0(before), seconds: CHURN_SECONDS, changes: results.map((x) => x.calls), changesPerSecond: results.map((x) => Math.round(x.calls / CHURN_SECONDS)), apiP99Ms: results.map((x) => Math.round(x.p99)), agents: 2, clientsPerAgent: 16, targetMax: 120 });
  }
  for (const lb of [1, 2]) await lab.kill(run.procs.get(`agent${lb}`)!);
}

try {
  lab.build({ lbs: 2, backends: 1, wiring: 'point-to-point' });
  // Reference: lb2 holds only the bare full-NAT rule NOTES.md measured (no agent), on its own VIP.
  const BARE_VIP = '100.64.249.254';
  lab.exec('lb2', 'ip', ['addr', 'add', `${BARE_VIP}/32`, 'dev', 'lo']);
  lab.exec('cl0', 'ip', ['route', 'replace', `${BARE_VIP}/32`, 'via', `${FRONT}.12`]);
  lab.exec('be1', 'ip', ['route', 'replace', `${BARE_VIP}/32`, 'via', `${BACK}.12`]);
  const bareFile = join(run.dir, 'bare.nft');
  mkdirSync(run.dir, { recursive: true });
  writeFileSync(
    bareFile,
    `table ip bare {\n\tchain pre {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tip daddr ${BARE_VIP} tcp dport 80 dnat to ${BACKEND}:8080\n\t\tip daddr ${BARE_VIP} tcp dport 5201 dnat to ${BACKEND}:5201\n\t}\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tip daddr ${BACKEND} ct status dnat snat to ${BARE_VIP}\n\t}\n}\n`,
  );
  lab.exec('lb2', 'nft', ['-f', bareFile]);
  lab.exec('lb2', 'sysctl', ['-qw', 'net.netfilter.nf_conntrack_tcp_timeout_time_wait=1']);
  // Direct path: the client's own link to the backend (`direct`, made by the point-to-point wiring).
  for (const [role, kv] of [
    ['cl0', ['net.ipv4.ip_local_port_range=1024 65535', 'net.ipv4.tcp_tw_reuse=1']],
    ['be1', ['net.ipv4.tcp_tw_reuse=1', 'net.core.somaxconn=4096']],
    ['lb1', ['net.ipv4.ip_local_port_range=1024 65535', 'net.ipv4.tcp_tw_reuse=1']],
  ] as const) {
    for (const v of kv) lab.exec(role, 'sysctl', ['-qw', v]);
  }

  // Backend: HAProxy answering HTTP itself (a fast C server, so the LB path is what is measured), and iperf3.
  mkdirSync(run.dir, { recursive: true });
  const backendCfg = join(run.dir, 'backend.cfg');
  writeFileSync(backendCfg, `global\n  maxconn 8000\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend web\n  bind :8080-8087\n  http-request return status 200 content-type text/plain string ok\n`);
  const backendProxy = lab.spawn('be1', 'haproxy', ['-f', backendCfg, '-db']);
  lab.spawn('be1', 'iperf3', ['-s', '-p', '5201']);
  const listening = (role: string, port: number) => {
    for (let i = 0; i < 100; i++) {
      if (lab.exec(role, 'ss', ['-ltnH', `sport = :${port}`]).trim()) return;
      execFileSync('sleep', ['0.05']);
    }
    throw new Error(`nothing listens on ${role}:${port}: ${backendProxy.output()}`);
  };
  listening('be1', 8080);
  listening('be1', 5201);
  const proxyCfg = join(run.dir, 'lb.cfg');
  writeFileSync(proxyCfg, `global\n  maxconn 8000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend web\n  bind ${LB_FRONT}:8081\n  default_backend web\nbackend web\n  balance roundrobin\n${HTTP_ENDPOINTS.map((e, k) => `  server b${k} ${e.ip}:${e.port}\n`).join('')}frontend perf\n  bind ${LB_FRONT}:5202\n  default_backend perf\nbackend perf\n  server b ${BACKEND}:5201\n`);
  lab.spawn('lb1', 'haproxy', ['-f', proxyCfg, '-db']);
  listening('lb1', 8081);

  // The agent with its full ruleset: 100 services × 8 endpoints, probes running.
  const stateDir = join(run.dir, 'state1');
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(join(stateDir, 'services.json'), JSON.stringify({ version: 1, services: fullRuleset() }));
  // Probes every 5 s (LoxiLB's order of magnitude), 99 monitored services × 8 endpoints.
  await run.startAgent(1, { stateDir }, Number(process.env.BENCH_PROBE_MS ?? 5000));
  // Conntrack exists in the namespace once the agent's NAT table does: short TIME_WAIT so new-connection runs do not exhaust tuples.
  lab.exec('lb1', 'sysctl', ['-qw', 'net.netfilter.nf_conntrack_tcp_timeout_time_wait=1']);
  await new Promise((r) => setTimeout(r, 1500));

  const paths = {
    direct: { http: `http://${BACKEND}:8080/`, perf: [BACKEND, 5201] as const },
    agent: { http: `http://${VIP}:80/`, perf: [VIP, 5201] as const },
    'bare-nft-rule': { http: `http://${BARE_VIP}:80/`, perf: [BARE_VIP, 5201] as const },
    haproxy: { http: `http://${LB_FRONT}:8081/`, perf: [LB_FRONT, 5202] as const },
  };
  type P = keyof typeof paths;
  const empty = () => Object.fromEntries(Object.keys(paths).map((p) => [p, [] as number[]])) as Record<P, number[]>;
  const samples: Record<string, Record<P, number[]>> = { rps: empty(), cps: empty(), gbps: empty() };
  const measure = (metric: 'rps' | 'cps' | 'gbps', p: P) => (metric === 'gbps' ? iperf(paths[p].perf[0], paths[p].perf[1]) : wrk(paths[p].http, metric === 'cps'));
  for (let r = 0; r < (METRICS.length ? RUNS : 0); r++) {
    // Interleaved: every path once per round, the order rotating, so drift hits all alike; the
    // agent and the bare kernel rule run back to back (their order alternating), so each round
    // gives one paired ratio that the machine's drift between rounds does not move.
    for (const metric of METRICS) {
      const pair: P[] = r % 2 ? ['bare-nft-rule', 'agent'] : ['agent', 'bare-nft-rule'];
      const others: P[] = r % 2 ? ['haproxy', 'direct'] : ['direct', 'haproxy'];
      for (const p of [...others.slice(0, 1), ...pair, ...others.slice(1)]) samples[metric]![p].push(measure(metric, p));
    }
  }
  for (const metric of METRICS) {
    // The agent against the bare full-NAT rule: median of the per-round ratios, with a 95 % bootstrap interval.
    const ratios = samples[metric]!.agent.map((a, i) => a / samples[metric]!['bare-nft-rule'][i]!);
    const [lo, hi] = bootstrapMedianInterval(ratios);
    emit({ metric, path: 'agent-vs-bare-nft-rule', ratioMedian: +median(ratios).toFixed(3), ci95: [+lo.toFixed(3), +hi.toFixed(3)], rounds: ratios.length, target: 'interval includes or exceeds 0.95' });
    const direct = median(samples[metric]!.direct);
    for (const p of Object.keys(paths) as P[]) {
      const xs = samples[metric]![p];
      const round = (v: number) => (metric === 'gbps' ? +v.toFixed(2) : Math.round(v));
      emit({ metric, path: p, median: round(median(xs)), min: round(Math.min(...xs)), max: round(Math.max(...xs)), ratioToDirect: +(median(xs) / direct).toFixed(2), runs: xs.length });
    }
  }

  if (!SKIP_APPLY) await measureApply();
  if (CHURN_SECONDS > 0) await measureChurnRss();
} finally {
  await lab.stop();
  run.cleanup();
}
