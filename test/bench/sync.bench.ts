/**
 * sudo npm run bench:sync — session sync's throughput and lag, the flows a failover keeps, and how
 * fast a dead owner is noticed. In namespaces this benchmark creates (100.64.0.0/10 only): two LBs
 * running the shipped agent, three backends, a client behind a VPC-like router.
 *
 * 1. Throughput and lag. A load generator in the client namespace sends new UDP flows through the
 *    VIP at a fixed rate (every datagram from a new source address and port: a raw socket, since
 *    this two-core machine cannot open tens of thousands of TCP connections per second and still
 *    have CPU left for the LBs). Marker flows are timed from their send to their appearance in the
 *    peer's kernel; at the end the flows are counted in both kernels. Side by side with a baseline that copies the table
 *    once per second (`conntrack -L` on the owner, `-R` on the peer: LoxiLB-like batching), on the
 *    same load. One line per rate and mode:
 *    {"entriesPerSecond", "lagP50Ms", "lagP99Ms", "dropped", …}
 *    Then the stream's own capacity, apart from kernel events and the generator (BENCH_PIPELINE_RATES,
 *    default 20000,40000): a sender fed synthetic new flows, a receiver loading them into a scratch
 *    namespace's kernel.
 * 2. The flow test: traffic through the VIP while it moves (sim/flows.ts):
 *    {"flowsKept", "flowsTotal", "maxPauseMs"}
 * 3. conntrackd (Debian's conntrackd, FTFW over UDP on the LBs' back network) on the same load: with
 *    DisableExternalCache (entries go into the peer's kernel at once, timed by the same markers) and
 *    with its external cache (entries counted in the peer daemon; the commit a failover runs is
 *    timed: commitMs); then per rate {"comparison": "loxiha ÷ conntrackd …", lag, CPU per flow …}.
 * 4. Peer detection (bench:peer-detect's first line): {"metric": "peer-detect-ms", "median", "max"}
 *
 * Both agents carry 1,000 services × 8 endpoints besides the measured ones; each loxiha line gives
 * their peak RSS during that measurement (the memory target: 120 MB).
 *
 * BENCH_RATES (flows/s, comma-separated, default 5000,10000,20000,30000), BENCH_SECONDS (default 4).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { serviceMark } from '../../agent/datapath/render.ts';
import { AgentRunner, lbEntry, ROOT } from '../../sim/agents.ts';
import { haOf, lostFlows, moveUnderTraffic, sleep, until } from '../../sim/flows.ts';
import { BACK, Lab, VIP } from '../../sim/netns.ts';
import { thousandByEight } from './workload.ts';
import { loadbalanceEntrySchema, toService } from '../../agent/api/schemas.ts';
import { serviceIndex } from '../../agent/sync/entry.ts';
import { conntrackWriter, Injector } from '../../agent/sync/inject.ts';
import { SyncServer } from '../../agent/sync/receiver.ts';
import { PeerStream } from '../../agent/sync/sender.ts';

const RATES = (process.env.BENCH_RATES ?? '5000,10000,20000,30000').split(',').map(Number);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
/** Which parts run (comma-separated; default all): pipeline, stream, flows, baseline, conntrackd, detect. */
const PARTS = new Set((process.env.BENCH_PARTS ?? 'pipeline,stream,flows,baseline,conntrackd,detect').split(','));
/** The loxiha and conntrackd lines by rate, for the ratios (the last of each rate). */
const loxihaLines = new Map<number, Record<string, unknown>>();
const conntrackdLines = new Map<number, Record<string, unknown>>();

/**
 * conntrackd in both LBs' namespaces, FTFW over UDP on the back network (the LBs' own link), each
 * with its own lock file, control socket and log; `external` keeps the peer's entries in its cache.
 */
function startConntrackd(external: boolean) {
  const procs = [1, 2].map((lb) => {
    const dir = join(run.dir, `conntrackd${lb}`);
    mkdirSync(dir, { recursive: true });
    const conf = join(dir, 'conntrackd.conf');
    writeFileSync(
      conf,
      `Sync {
  Mode FTFW {
    DisableExternalCache ${external ? 'Off' : 'On'}
  }
  UDP {
    IPv4_address ${BACK}.${10 + lb}
    IPv4_Destination_Address ${BACK}.${10 + (3 - lb)}
    Port 3780
    Interface back
    SndSocketBuffer 24985600
    RcvSocketBuffer 24985600
    Checksum on
  }
}
General {
  HashSize 32768
  HashLimit 524288
  LogFile ${join(dir, 'log')}
  Syslog off
  LockFile ${join(dir, 'lock')}
  UNIX {
    Path ${join(dir, 'ctl')}
  }
  NetlinkBufferSize 2097152
  NetlinkBufferSizeMaxGrowth 67108864
  Filter From Userspace {
    Protocol Accept {
      TCP
      UDP
    }
    Address Ignore {
      IPv4_address 127.0.0.1
      IPv4_address ${BACK}.${10 + lb}
    }
  }
}
`,
    );
    return { conf, proc: lab.spawn(`lb${lb}`, 'conntrackd', ['-C', conf]) };
  });
  const ctl = (lb: number, args: string[]) => execFileSync('ip', ['netns', 'exec', lab.ns(`lb${lb}`), 'conntrackd', '-C', procs[lb - 1]!.conf, ...args], { encoding: 'utf8', maxBuffer: 1 << 30 });
  return {
    pids: (): [number, number] => {
      for (const p of procs) if (p.proc.child.exitCode !== null) throw new Error(`conntrackd ended: ${p.proc.output().slice(-2000)}`);
      return [procs[0]!.proc.child.pid!, procs[1]!.proc.child.pid!];
    },
    /** The generator's flows in the peer daemon's external cache. */
    externalCount: () => ctl(2, ['-e']).split('\n').filter((l) => GEN.test(l)).length,
    commit: () => void ctl(2, ['-c']),
    stop: async () => {
      for (const p of procs) await lab.kill(p.proc);
    },
  };
}

if (PARTS.has('conntrackd') && spawnSync('conntrackd', ['-v'], { stdio: 'ignore' }).error) {
  console.error('bench:sync compares loxiha with conntrackd: apt-get install conntrackd (or leave it out: BENCH_PARTS without conntrackd)');
  process.exit(2);
}

const lab = new Lab();
const run = new AgentRunner(lab);
const stop = async () => {
  await lab.stop();
  run.cleanup();
};
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void stop().then(() => process.exit(130)));

/** The benchmark's UDP service: port 9 on the VIP, endpoints on the backends where nothing listens (no replies to pay for). */
const BENCH_PORT = 9;
const MARK = serviceMark({ externalIP: '100.100.100.100', port: BENCH_PORT, protocol: 'udp' });
const GEN = /src=100\.(9[5-9])\./;

/** How many of the generator's flows a namespace's kernel holds. */
function countFlows(role: string): number {
  const out = execFileSync('ip', ['netns', 'exec', lab.ns(role), 'conntrack', '-L', '-p', 'udp', '-m', `${MARK}`], { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] });
  let n = 0;
  for (const l of out.split('\n')) if (GEN.test(l)) n++;
  return n;
}


/** CPU time (user + system, µs) of a process itself, and of its children (the waited-for ones and those still running). */
function cpuUs(pid: number): { self: number; tools: number } {
  const ticks = (p: number) => readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ').map(Number);
  // Fields after the command: state is [0]; utime, stime, cutime, cstime are [11..14].
  const f = ticks(pid);
  let tools = f[13]! + f[14]!;
  for (const child of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean)) {
    try {
      const c = ticks(Number(child));
      tools += c[11]! + c[12]! + c[13]! + c[14]!;
    } catch {
      /* ended meanwhile: counted in the waited-for time */
    }
  }
  return { self: ((f[11]! + f[12]!) * 1e6) / 100, tools: (tools * 1e6) / 100 }; // USER_HZ = 100
}
/** An agent's pid; one that died fails the benchmark with what it printed last. */
const agentPid = (lb: number) => {
  const p = run.procs.get(`agent${lb}`)!;
  if (p.child.exitCode !== null || p.child.signalCode !== null) throw new Error(`agent ${lb} died (${p.child.exitCode ?? p.child.signalCode}): ${p.output().slice(-3000)}`);
  return p.child.pid!;
};

/** An agent's peak RSS (VmHWM, reset at each measurement's start), in MB: the memory target is 120 MB with 1,000 services × 8 endpoints. */
const peakRss = (pid: number) => Math.round(Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! * 10) / 10 : null;
};

/**
 * What is measured: loxiha's agents (the default), the once-a-second copy (`copier`), or
 * conntrackd (`daemons`: its two processes; `externalCache`: entries stay in the peer daemon's
 * cache until committed, so they are counted there, and the commit a failover would run is timed).
 */
interface Subject {
  copier?: () => void;
  daemons?: { pids: [number, number]; externalCache?: { count: () => number; commit: () => void } };
}

/**
 * New UDP flows through the VIP at `rate` per second for SECONDS, from the client namespace
 * (test/bench/fixtures/udp-flows.py: a raw socket, every datagram a new source address and port,
 * 1 ms apart in small groups, as traffic arrives). Marker flows are timed to the peer one by one
 * (their arrival stamped by a watcher of the peer's kernel events);
 * then the generator's flows are counted in both kernels. `subject` says what streams them:
 * loxiha's agents, the baseline's once-a-second copy, or conntrackd.
 */
async function measure(mode: string, rate: number, subject: Subject = {}): Promise<Record<string, unknown>> {
  const { copier, daemons } = subject;
  const agents = !copier && !daemons;
  const pids = () => (daemons ? daemons.pids : [agentPid(1), agentPid(2)]);
  const pending: { host: string; at: number }[] = [];
  const lags: number[] = [];
  let done: { sent: number; behindTicks: number; seconds: number } | undefined;
  const cpu0 = copier ? [] : pids().map(cpuUs);
  // Peak RSS within this window only: the kernel's high-water mark is reset (clear_refs 5).
  if (!copier) for (const pid of pids()) writeFileSync(`/proc/${pid}/clear_refs`, '5');
  const rssAtStart = copier ? [] : pids().map((pid) => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024));
  const arrivals = new Map<string, number>();
  let watcherLost = 0;
  // The watcher stamps each marker as it reads the kernel's event (netlink carries no timestamp):
  // it runs real-time, so that its own wait for the CPU is not counted as the stream's lag.
  const watcher = spawn('ip', ['netns', 'exec', lab.ns('lb2'), 'chrt', '--rr', '20', 'python3', join(ROOT, 'test/bench/fixtures/marker-watch.py'), '999'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let wbuf = '';
  let watching = false;
  watcher.stdout!.setEncoding('utf8').on('data', (d: string) => {
    wbuf += d;
    let i: number;
    while ((i = wbuf.indexOf('\n')) >= 0) {
      const [host, at] = wbuf.slice(0, i).split(' ');
      wbuf = wbuf.slice(i + 1);
      if (host === 'ready') watching = true;
      else if (host === 'lost') watcherLost++;
      else if (!arrivals.has(host!)) arrivals.set(host!, Number(at));
    }
  });
  await until('the marker watcher subscribed', async () => watching, 5000);
  const started = Date.now();
  const gen = spawn('ip', ['netns', 'exec', lab.ns('cl0'), 'env', 'FLOWS_TICK=0.001', 'python3', join(ROOT, 'test/bench/fixtures/udp-flows.py'), VIP, String(BENCH_PORT), String(rate), String(SECONDS)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let buf = '';
  gen.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const o = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      if (o.marker) pending.push({ host: o.marker, at: o.at });
      else if (o.done) done = o;
    }
  });
  const copierTimer = copier ? setInterval(copier, 1000) : undefined;
  // Markers time themselves: the peer's kernel announces each one (test/bench/fixtures/marker-watch.py
  // stamps the event as it reads it), so the lag does not depend on how often the benchmark looks,
  // nor on its own event loop being free.
  const lastMarkerBy = () => (pending.length ? pending[pending.length - 1]!.at : Date.now());
  // Kept in the peer daemon's cache, entries reach its kernel only when committed: no marker arrives.
  const markersArrive = !daemons?.externalCache;
  while (!done || (markersArrive && pending.some((m) => !arrivals.has(m.host)) && Date.now() - lastMarkerBy() < 10_000)) await sleep(20);
  watcher.kill();
  for (const m of pending) {
    const at = arrivals.get(m.host);
    if (at !== undefined) lags.push(at - m.at);
  }
  const lastArrival = Math.max(0, ...arrivals.values());
  // Throughput: how long until the peer's kernel holds every flow the owner's holds (or stops growing).
  const created = countFlows('lb1');
  const peerHolds = () => (daemons?.externalCache ? daemons.externalCache.count() : countFlows('lb2'));
  let delivered = peerHolds();
  let reachedAt = Date.now();
  // Waits while flows still arrive, or while the owner still owes the peer a resync (it backs off
  // up to 8 s under overrun), at most 60 s: what is missing then is lost.
  const owing = async () => agents && (await haOf(run, 1)).sync !== 1;
  for (let last = delivered, still = 0, end = Date.now() + 60_000; delivered < created && Date.now() < end && (still < 10 || (await owing())); ) {
    await sleep(200);
    delivered = peerHolds();
    if (delivered === last) still++;
    else (still = 0), (reachedAt = Date.now());
    last = delivered;
  }
  // conntrackd's cache: what a failover would do first (conntrackd -c), timed; then the kernel's count.
  let commitMs: number | undefined;
  if (daemons?.externalCache) {
    const t0 = performance.now();
    daemons.externalCache.commit();
    commitMs = Math.round(performance.now() - t0);
    delivered = countFlows('lb2');
  }
  clearInterval(copierTimer);
  // CPU per flow synced, the agent and its conntrack processes together: what one core sustains.
  const per = (lb: number, n: number) => {
    const now = cpuUs(pids()[lb - 1]!);
    return { self: (now.self - cpu0[lb - 1]!.self) / Math.max(1, n), tools: (now.tools - cpu0[lb - 1]!.tools) / Math.max(1, n) };
  };
  const split = copier ? undefined : [per(1, created), per(2, delivered)];
  const cpu = split?.map((c) => c.self + c.tools);
  const line = {
      bench: 'sync',
      mode,
      offeredFlowsPerSecond: rate,
      sentPerSecond: Math.round(done.sent / done.seconds),
      generatorBehindTicks: done.behindTicks,
      // Until the peer held them all: the last marker's arrival when every flow made it (the stream
      // keeps the kernel's order, and the marker went last), else the last time the count grew.
      entriesPerSecond: Math.round(delivered / (((delivered === created && lastArrival ? Math.min(reachedAt, lastArrival) : reachedAt) - started) / 1000)),
      lagP50Ms: markersArrive ? pct(lags, 50) : null,
      lagP99Ms: markersArrive ? pct(lags, 99) : null,
      lagMaxMs: markersArrive ? pct(lags, 100) : null,
      lagSamples: lags.length,
      ...(commitMs !== undefined ? { commitMs } : {}),
      ...(watcherLost ? { markerWatcherLost: watcherLost } : {}),
      dropped: created - delivered,
      created,
      ...(cpu && split
        ? {
            ownerCpuUsPerFlow: Math.round(cpu[0]! * 10) / 10,
            peerCpuUsPerFlow: Math.round(cpu[1]! * 10) / 10,
            // The agent's own share, and its conntrack processes' (and any other tool it ran).
            ...(agents ? { ownerAgentUsPerFlow: Math.round(split[0]!.self * 10) / 10, peerAgentUsPerFlow: Math.round(split[1]!.self * 10) / 10 } : {}),
            flowsPerCoreSecond: Math.round(1e6 / Math.max(cpu[0]!, cpu[1]!)),
          }
        : {}),
      ...(copier ? {} : { ownerPeakRssMB: peakRss(pids()[0]!), peerPeakRssMB: peakRss(pids()[1]!), rssAtStartMB: rssAtStart /* owner, peer: what earlier phases left */ }),
  };
  console.log(JSON.stringify(line));
  // A clean slate for the next rate: the owner's flows end (streamed to the peer as ends), then the peer's go too.
  execFileSync('ip', ['netns', 'exec', lab.ns('lb1'), 'conntrack', '-F'], { stdio: 'ignore' });
  if (agents) await until('the peer caught up with the ends', async () => (await haOf(run, 2)).syncLagSeconds === 0, 60_000).catch(() => undefined);
  await sleep(1000);
  execFileSync('ip', ['netns', 'exec', lab.ns('lb2'), 'conntrack', '-F'], { stdio: 'ignore' });
  await sleep(500);
  return line;
}

/**
 * The stream's own capacity, without kernel events or a load generator: a sender fed synthetic
 * new flows at `rate` per second (1 ms apart) streams to a receiver over loopback that loads them
 * with conntrack -R into a scratch namespace. Lag: the age of the oldest unacknowledged flow,
 * sampled every 2 ms (an upper bound on each flow's lag).
 */
async function pipeline(rate: number): Promise<void> {
  const ns = lab.ns('pipe');
  execFileSync('ip', ['netns', 'add', ns]);
  lab.namespaces.push(ns);
  execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: 'table ip t {\n chain a {\n type nat hook prerouting priority dstnat;\n }\n chain b {\n type nat hook postrouting priority srcnat;\n }\n}\n' });
  const svc = lbEntry({ backends: [1, 2, 3], protocol: 'udp', port: BENCH_PORT });
  const service = toService(loadbalanceEntrySchema.parse(svc));
  const writer = conntrackWriter({ netns: ns });
  const injector = new Injector(writer);
  const key = Buffer.from('p'.repeat(48));
  const server = new SyncServer({ keys: () => [key], deploymentId: 'bench', peers: new Set([0]), listen: { ip: '127.0.0.1', port: 0 }, services: () => serviceIndex([service]), injector, isOwner: () => false, listOurs: async function* () {}, log: () => undefined });
  await server.start();
  const port = (server as unknown as { server: { address: () => { port: number } } }).server.address().port;
  const stream = new PeerStream({ keys: () => [key], deploymentId: 'bench', selfIndex: 0, peer: { index: 1, ip: '127.0.0.1', port }, dump: async function* () {}, log: () => undefined });
  stream.start();
  await until('the pipeline stream in sync', async () => stream.inSync(), 10_000);
  const lags: number[] = [];
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  let n = 0;
  const perMs = rate / 1000;
  while (performance.now() - started < SECONDS * 1000) {
    const due = Math.floor((performance.now() - started) * perMs);
    for (; n < due; n++) {
      const host = `100.${96 + ((n >> 16) & 3)}.${(n >> 8) & 255}.${n & 255}`;
      // Reply tuples must be unique too: 49 endpoint addresses (coprime with the 60,000 ports) × ports.
      stream.offer(['n', 'udp', host, VIP, 1024 + (n % 60000), BENCH_PORT, `${BACK}.${101 + (n % 49)}`, VIP, BENCH_PORT, 1024 + (n % 60000), MARK, '', 30, 0], Date.now());
    }
    lags.push(stream.lagMs());
    await sleep(2);
  }
  await until('the pipeline drained', async () => stream.lagMs() === 0, 30_000).catch(() => undefined);
  const elapsed = (performance.now() - started) / 1000;
  const loaded = Number(execFileSync('ip', ['netns', 'exec', ns, 'conntrack', '-C'], { encoding: 'utf8' }).trim());
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({ bench: 'sync', mode: 'pipeline only: channel + receiver + conntrack writer (no kernel events, no generator)', offeredFlowsPerSecond: rate, entriesPerSecond: Math.round(loaded / elapsed), lagP50Ms: pct(lags, 50), lagP99Ms: pct(lags, 99), lagMaxMs: pct(lags, 100), dropped: n - loaded, created: n, benchProcessCpuUsPerFlow: Math.round(((cpu.user + cpu.system) / n) * 10) / 10, resyncs: stream.resyncs - 1 }));
  stream.stop();
  server.stop();
  writer.stop();
  execFileSync('ip', ['netns', 'del', ns]);
  lab.namespaces.splice(lab.namespaces.indexOf(ns), 1);
}

try {
  if (PARTS.has('pipeline')) for (const rate of (process.env.BENCH_PIPELINE_RATES ?? '20000,40000').split(',').map(Number)) await pipeline(rate);
  lab.buildVpc({ lbs: 2, backends: 3 });
  await run.startBackends(3);
  lab.plugEni(1);
  // The memory target's workload under the sync load: 1,000 services × 8 endpoints on both LBs.
  for (const lb of [1, 2]) {
    mkdirSync(join(run.dir, `state${lb}`), { recursive: true });
    writeFileSync(join(run.dir, `state${lb}`, 'services.json'), JSON.stringify({ version: 1, services: thousandByEight() }));
  }
  for (const lb of [1, 2]) {
    await run.startAgent(lb, { peers: [{ index: 2 - lb, ip: `${BACK}.${10 + (3 - lb)}` }], sync: { secretFile: run.syncKeyFile } }, 1000);
    for (const protocol of ['tcp', 'udp'] as const) await run.api(lb, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3], protocol }));
    const bench = lbEntry({ backends: [1, 2, 3], protocol: 'udp', port: BENCH_PORT, name: 'bench' });
    for (const e of bench.endpoints) e.targetPort = BENCH_PORT;
    await run.api(lb, 'POST', '/config/loadbalancer', bench);
  }
  // The generator's client addresses live behind the client namespace.
  for (const prefix of ['100.95.0.0/16', '100.96.0.0/14']) lab.exec('vpc', 'ip', ['route', 'add', prefix, 'via', '100.64.1.100']);
  await until('the backup in sync', async () => (await haOf(run, 2)).sync === 1, 20_000);

  let flowLine: { flowsKept: number; flowsTotal: number; maxPauseMs: number } | undefined;
  if (PARTS.has('flows')) {
    const r = await moveUnderTraffic(lab, run, 2);
    flowLine = { flowsKept: r.flows.length - lostFlows(r).length, flowsTotal: r.flows.length, maxPauseMs: Math.max(...r.flows.map((f) => f.maxGapMs)) };
    lab.unplugEni();
    lab.plugEni(1);
    await until('lb1 owner again, lb2 in sync', async () => (await haOf(run, 1)).state === 'MASTER' && (await haOf(run, 2)).sync === 1, 20_000);
  }

  if (PARTS.has('stream')) for (const rate of RATES) loxihaLines.set(rate, await measure('loxiha: kernel events streamed, ctnetlink writes', rate));

  // The baseline: no agent sync; the whole table copied once a second.
  for (const lb of [1, 2]) await lab.kill(run.procs.get(`agent${lb}`)!);
  const copyFile = join(run.dir, 'copy.conntrack');
  const load = (role: string, file: string, lines: string[]) => {
    writeFileSync(file, `${lines.join('\n')}\n`);
    execFileSync('ip', ['netns', 'exec', lab.ns(role), 'conntrack', '-R', file], { stdio: 'ignore' });
  };
  const copier = () => {
    const listing = execFileSync('ip', ['netns', 'exec', lab.ns('lb1'), 'conntrack', '-L', '-o', 'extended', '-m', '0x80000000/0x80000000', '-p', 'udp'], { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] });
    const lines: string[] = [];
    for (const l of listing.split('\n')) {
      const m = /udp\s+17\s+(\d+)\s+src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)\s+(?:\[UNREPLIED\]\s+)?src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+).*mark=(\d+)/.exec(l);
      if (m) lines.push(`-A -p udp -s ${m[2]} -d ${m[3]} --sport ${m[4]} --dport ${m[5]} --dst-nat ${m[6]}:${m[8]} --src-nat ${m[7]}:${m[9]} -t ${Math.max(1, Number(m[1]))} -u SEEN_REPLY,ASSURED -m ${m[10]}`);
    }
    if (lines.length) load('lb2', copyFile, lines);
  };
  if (PARTS.has('baseline')) for (const rate of RATES) await measure('baseline: whole table copied every second (conntrack -L, -R)', rate, { copier });

  // What users would otherwise pick: conntrackd (Debian's, FTFW over its own UDP link between the
  // two LBs, stock settings), with DisableExternalCache (entries go straight into the peer's
  // kernel, as loxiha's do) and with its external cache (the default: entries wait in the peer
  // daemon until a failover commits them). Same generator, rates and markers.
  if (PARTS.has('conntrackd')) {
    for (const external of [false, true]) {
      const d = startConntrackd(external);
      try {
        await sleep(1500);
        for (const rate of RATES) {
          const line = await measure(`conntrackd 1.4.7 FTFW${external ? ' (external cache; committed at the end)' : ', DisableExternalCache'}`, rate, { daemons: { pids: d.pids(), ...(external ? { externalCache: { count: () => d.externalCount(), commit: () => d.commit() } } : {}) } });
          if (!external) conntrackdLines.set(rate, line);
        }
      } finally {
        await d.stop();
      }
    }
    for (const rate of RATES) {
      const ours = loxihaLines.get(rate);
      const theirs = conntrackdLines.get(rate);
      if (!ours || !theirs) continue;
      const ratio = (k: string) => (typeof ours[k] === 'number' && typeof theirs[k] === 'number' && (theirs[k] as number) > 0 ? Math.round(((ours[k] as number) / (theirs[k] as number)) * 100) / 100 : null);
      console.log(JSON.stringify({ bench: 'sync', comparison: 'loxiha ÷ conntrackd (DisableExternalCache), same run', offeredFlowsPerSecond: rate, entriesPerSecond: ratio('entriesPerSecond'), lagP50Ms: ratio('lagP50Ms'), lagP99Ms: ratio('lagP99Ms'), ownerCpuUsPerFlow: ratio('ownerCpuUsPerFlow'), peerCpuUsPerFlow: ratio('peerCpuUsPerFlow'), droppedLoxiha: ours.dropped, droppedConntrackd: theirs.dropped }));
    }
  }

  if (flowLine) console.log(JSON.stringify(flowLine));
  if (PARTS.has('detect')) {
    const detect = execFileSync(process.execPath, [join(ROOT, 'test/bench/peer-detect.bench.ts')], { encoding: 'utf8', env: { ...process.env, BENCH_RUNS: '20' } });
    console.log(detect.split('\n')[0]);
  }
} finally {
  await stop();
}
