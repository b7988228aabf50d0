/**
 * npm run bench:peer-soak (root) — false alarms of the peer detection under load: two shipped
 * agents in namespaces, each holding 1,000 services × 8 endpoints (GC pressure) with an API change
 * every second, lb1 the MASTER carrying HTTP load (wrk, bounded runs) for BENCH_SOAK_SECONDS
 * (default 600). Counts the fast-path invokes (a Lambda stand-in in lb2) — there must be none —
 * and how often a peer was silent but alive. Prints one JSON line.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentRunner, awsSection, IMDS_PORT, lbEntry } from '../../sim/agents.ts';
import { FIX } from '../harness/fixtures.ts';
import { BACK, Lab, VIP } from '../../sim/netns.ts';
import { thousandByEight } from './workload.ts';

const SECONDS = Number(process.env.BENCH_SOAK_SECONDS ?? 600);
const IDS = ['i-0aaaaaaaaaaaaaaa1', 'i-0bbbbbbbbbbbbbbb2'];
const lab = new Lab();
const run = new AgentRunner(lab);
try {
  lab.build({ lbs: 2, backends: 1 });
  await run.startBackends(1);
  for (const lb of [1, 2]) await run.startImds(lb, IDS[lb - 1]!);
  lab.exec('lb1', 'curl', ['-sf', '-X', 'POST', `http://127.0.0.1:${IMDS_PORT}/control/attach?vip=${VIP}`]);
  const lambda = lab.spawn('lb2', process.execPath, [join(FIX, 'lambda.mjs'), '5002']);
  await lambda.waitFor(/lambda listening/);
  for (const lb of [1, 2]) {
    const stateDir = join(run.dir, `soak-state${lb}`);
    mkdirSync(stateDir, { recursive: true });
    writeFileSync(join(stateDir, 'services.json'), JSON.stringify({ version: 2, services: thousandByEight(), down: [] }));
    await run.startAgent(lb, { stateDir, peers: [{ index: 2 - lb, ip: `${BACK}.${10 + (3 - lb)}` }], sync: { secretFile: run.syncKeyFile }, aws: awsSection('http://127.0.0.1:5002') }, 5000);
  }
  for (const lb of [1, 2]) if ((await run.api(lb, 'POST', '/config/loadbalancer', lbEntry({ backends: [1], port: 80 }))).status !== 200) throw new Error(`peer-soak: lb${lb} refused the service`);
  lab.exec('lb1', 'sysctl', ['-qw', 'net.netfilter.nf_conntrack_tcp_timeout_time_wait=1']);
  // The link works before the soak (a soak over a link that never worked would also count 0 invokes):
  // lb2 receives lb1's sessions over the authenticated channel and says it is in sync.
  const ha = async (lb: number) => (await run.api(lb, 'GET', '/config/cistate/all')).body.Attr[0];
  for (const end = Date.now() + 30_000; !((await ha(1)).state === 'MASTER' && (await ha(2)).sync === 1); ) {
    if (Date.now() > end) throw new Error('peer-soak: lb2 never got in sync with lb1: the peer link is not working');
    await new Promise((r) => setTimeout(r, 200));
  }
  const until = Date.now() + SECONDS * 1000;
  let changes = 0;
  let apiFailed = 0;
  let wrkRuns = 0;
  const wrk = { requests: 0, non2xx: 0, socketErrors: 0 };
  while (Date.now() < until) {
    // Bounded load: 5 s of keep-alive requests, then an API change on each agent (churn, garbage).
    const o = lab.exec('cl0', 'wrk', ['-t2', '-c32', '-d5s', `http://${VIP}/`]);
    wrk.requests += Number(/(\d+) requests in/.exec(o)?.[1] ?? 0);
    wrk.non2xx += Number(/Non-2xx or 3xx responses: (\d+)/.exec(o)?.[1] ?? 0);
    const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(o);
    if (se) wrk.socketErrors += se.slice(1).reduce((a, b) => a + Number(b), 0);
    wrkRuns++;
    for (const lb of [1, 2]) {
      if ((await run.api(lb, 'POST', '/config/loadbalancer', lbEntry({ backends: [1], port: 9000 + (changes % 50), name: `soak_${changes % 50}` }))).status !== 200) apiFailed++;
      changes++;
    }
  }
  const out = [run.procs.get('agent1')!.output(), run.procs.get('agent2')!.output()].join('\n');
  const invokes = lambda.output().split('\n').filter((l) => l.startsWith('{"invoked"')).length;
  // The control: lb1's host going dark now (every packet in or out dropped: a dead instance, which
  // answers nothing) must be lost and invoke the fast path once — the same detection that stayed
  // quiet under load works. (A killed agent alone is not a failover: its host still answers.)
  const dark = join(run.dir, 'dark.nft');
  writeFileSync(dark, 'table inet dark {\n chain in { type filter hook input priority -400; policy drop; }\n chain out { type filter hook output priority -400; policy drop; }\n}\n');
  lab.exec('lb1', 'nft', ['-f', dark]);
  const killedAt = Date.now();
  let controlInvokes = 0;
  while (Date.now() - killedAt < 5000 && controlInvokes === 0) {
    await new Promise((r) => setTimeout(r, 100));
    controlInvokes = lambda.output().split('\n').filter((l) => l.startsWith('{"invoked"')).length - invokes;
  }
  console.log(
    JSON.stringify({
      metric: 'peer-soak',
      seconds: SECONDS,
      wrkRuns,
      apiChanges: changes,
      fastPathInvokes: invokes,
      controlInvokesAfterKill: controlInvokes,
      controlDetectMs: controlInvokes ? Date.now() - killedAt : null,
      apiCallsFailed: apiFailed,
      wrkRequests: wrk.requests,
      wrkNon2xx: wrk.non2xx,
      wrkSocketErrors: wrk.socketErrors,
      peersLost: (out.match(/"msg":"peer lost"/g) ?? []).length,
      silentButAlive: (out.match(/peer silent on the heartbeat channel but its host answers/g) ?? []).length,
      target: { fastPathInvokes: 0, controlInvokesAfterKill: 1, apiCallsFailed: 0, wrkNon2xx: 0 },
    }),
  );
} finally {
  await lab.stop();
  run.cleanup();
}
