/**
 * npm run bench:agent-consistency (root) — how fast two agents that differ on services agree again,
 * with 1,000 services loaded: two LBs running the shipped agent with session sync, in namespaces.
 *
 * - `refused-change`: a new service POSTed to the backup only (the owner refused it, as a 401 during a
 *   rotation would): seconds until the owner holds it, side by side with the baseline — the same POST
 *   sent to both agents, as kube-loxilb does when nothing fails (seconds until both hold it);
 * - `restart-mid-burst`: 1,000 new services POSTed to both agents by 8 clients each, the backup's agent
 *   SIGKILLed 1 s into the burst and restarted 1 s later: seconds from the end of the burst until both
 *   hold the same services (the backup missed what came while it was down);
 * - `rotate`: the demo's `--rotate` (both secrets rotated three times under traffic): API calls failed,
 *   sync frames and heartbeats rejected, flows lost.
 *
 * Prints one JSON line per figure (median, min, max over the runs). BENCH_RUNS (default 5) repetitions.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { AgentRunner, lbEntry } from '../../sim/agents.ts';
import { haOf, sleep, until } from '../../sim/flows.ts';
import { BACK, Lab } from '../../sim/netns.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const ROOT = join(import.meta.dirname, '../..');
const stat = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s.at(-1)!, runs: s.length };
};
const say = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);

const lab = new Lab();
const run = new AgentRunner(lab);
const cleanup = async () => {
  await lab.stop();
  run.cleanup();
};
process.on('SIGINT', () => void cleanup().finally(() => process.exit(130)));

try {
  lab.buildVpc({ lbs: 2, backends: 3 });
  await run.startBackends(3);
  lab.plugEni(1);
  const startAgent = (lb: number) => run.startAgent(lb, { peers: [{ index: 2 - lb, ip: `${BACK}.${10 + (3 - lb)}` }], sync: { secretFile: run.syncKeyFile } }, 2000);
  for (const lb of [1, 2]) await startAgent(lb);
  await until('lb1 MASTER, lb2 BACKUP', async () => (await haOf(run, 1)).state === 'MASTER' && (await haOf(run, 2)).state === 'BACKUP', 30_000);
  /** api-load.mjs in LB `lb`'s namespace; resolves with its JSON line, or undefined when it failed (its agent died). */
  const load = (lb: number, args: string[]) =>
    new Promise<unknown>((resolve) => {
      const c = spawn('ip', ['netns', 'exec', lab.ns(`lb${lb}`), process.execPath, join(import.meta.dirname, 'api-load.mjs'), run.token, ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      c.stdout.on('data', (d) => (out += d));
      c.on('exit', (code) => resolve(code === 0 ? JSON.parse(out.trim()) : undefined));
    });
  const count = async (lb: number) => ((await run.api(lb, 'GET', '/config/loadbalancer/all')).body.lbAttr as unknown[]).length;
  const holds = async (lb: number, port: number) => ((await run.api(lb, 'GET', '/config/loadbalancer/all')).body.lbAttr as { serviceArguments: { port: number } }[]).some((e) => e.serviceArguments.port === port);
  const digestsAgree = async () => {
    const [a, b] = await Promise.all([1, 2].map((lb) => run.api(lb, 'GET', '/config/loadbalancer/all')));
    const key = (r: { body: any }) => JSON.stringify((r.body.lbAttr as { serviceArguments: { port: number }; endpoints: { endpointIP: string }[] }[]).map((e) => [e.serviceArguments.port, e.endpoints.map((x) => x.endpointIP).sort()]).sort());
    return key(a!) === key(b!);
  };
  const waitUntil = async (f: () => Promise<boolean>, ms = 60_000) => {
    const end = Date.now() + ms;
    while (!(await f())) {
      if (Date.now() > end) throw new Error('did not converge within the bound');
      await sleep(50);
    }
  };

  // 1,000 services on both, as kube-loxilb would have given them.
  await Promise.all([1, 2].map((lb) => load(lb, ['bulk', '1000', '8'])));
  await waitUntil(digestsAgree);
  say({ setup: 'loaded', services: await count(1) });

  const refused: number[] = [];
  const baseline: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const port = 40000 + i;
    let at = Date.now();
    if ((await run.api(2, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2], port }))).status !== 200) throw new Error('the backup refused the change');
    await waitUntil(() => holds(1, port));
    refused.push((Date.now() - at) / 1000);
    at = Date.now();
    for (const lb of [1, 2]) await run.api(lb, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2], port: port + 100 }));
    await waitUntil(async () => (await holds(1, port + 100)) && (await holds(2, port + 100)));
    baseline.push((Date.now() - at) / 1000);
  }
  say({ metric: 'converge-after-refused-change-seconds', services: await count(1), ...stat(refused), baseline: { what: 'the change sent to both agents', ...stat(baseline) } });

  const afterRestart: number[] = [];
  const missedTotal: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    // Each run starts from the two demo services and creates the 1,000 again (later than their deletion: the creates win).
    await Promise.all([1, 2].map((lb) => run.api(lb, 'DELETE', '/config/loadbalancer/all').catch(() => undefined)));
    for (const lb of [1, 2]) for (const protocol of ['tcp', 'udp'] as const) await run.api(lb, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3], protocol }));
    await waitUntil(digestsAgree);
    const owner = load(1, ['bulk', '1000', '8']);
    const backup = load(2, ['bulk', '1000', '8']);
    await sleep(1000);
    await lab.kill(run.procs.get('agent2')!, 'SIGKILL');
    await backup;
    await sleep(1000);
    await startAgent(2);
    await owner;
    const held = await count(2);
    const at = Date.now();
    await waitUntil(digestsAgree);
    afterRestart.push((Date.now() - at) / 1000);
    missedTotal.push(1002 - held);
  }
  say({ metric: 'converge-after-restart-mid-burst-seconds', services: 1002, ...stat(afterRestart), missedByTheBackupAtBurstEnd: stat(missedTotal) });
} finally {
  await cleanup();
}

// Rotation under load: the demo's --rotate, as CI runs it.
const rotations: Record<string, number>[] = [];
for (let i = 0; i < Math.min(RUNS, 3); i++) {
  const out = await new Promise<string>((resolve) => {
    const c = spawn(process.execPath, [join(ROOT, 'bin/demo.ts'), '--rotate', '--fast'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] });
    let text = '';
    c.stdout.on('data', (d) => (text += d));
    c.on('exit', () => resolve(text));
  });
  const line = out.split('\n').filter((l) => l.startsWith('{"failoverSeconds"')).pop();
  if (!line) throw new Error('the rotate demo printed no result');
  const r = JSON.parse(line) as Record<string, number>;
  rotations.push({ apiCallsFailed: r.apiCallsFailed!, syncBreaks: r.syncBreaks!, flowsLost: r.flowsTotal! - r.flowsKept!, fastPathTriggers: r.fastPathTriggers!, vipMoves: r.vipMoves!, rotationsDone: r.rotationsDone!, seconds: r.seconds! });
}
say({ metric: 'rotate-under-traffic', runs: rotations.length, ...Object.fromEntries(['apiCallsFailed', 'syncBreaks', 'flowsLost', 'fastPathTriggers', 'vipMoves', 'rotationsDone', 'seconds'].map((k) => [k, stat(rotations.map((r) => r[k]!))])) });
