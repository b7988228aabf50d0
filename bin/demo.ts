/**
 * `npm run demo` (root, Linux): the multi-AZ failover on this machine — AWS emulated, the VPC in
 * network namespaces, the real agents and failover function, real traffic. See sim/demo.ts.
 *
 *   --planned    a planned move (maintenance of lb0) instead of lb0 dying
 *   --terminate lbN  slot N's Auto Scaling group replaces its instance (self-healing): the VIP
 *                moves off it first when it holds it; the replacement rejoins as the backup
 *   --upgrade    a deploy changed the slots' launch template: the rollout replaces both slots'
 *                instances under traffic, the backup's first, moving the VIP once
 *   --reboot lbN lbN reboots (same instance and disk, kernel state wiped): it comes back ready,
 *                and is never given the VIP before
 *   --rotate     both secrets (API token, sync key) rotated under traffic three times: at once,
 *                again at once, and while lb1's agent is down — kube-loxilb's calls, the sync
 *                channel and every flow go on
 *   --failback   afterwards, move back to lb0 (revived first)
 *   --no-sync    session sync off: shows what a failover loses without it
 *   --fast       AWS without latencies (the behaviour layer's realistic values off)
 *   --strategy S how the VIP moves: eni (default: the floating subnet and loxi-eni) or route
 *   --azs N      availability zones, an LB in each: 2 (default) or 3
 *   --groups N   VIP groups (1–6, default 1), each its own VIP, EIP and traffic, spread over
 *                the LBs; with more than one, lb0's zone is lost: its group moves, the others
 *                must not pause, every established flow of every group is kept
 *   --keep       leave it running afterwards and print how to explore; Ctrl-C cleans up
 *   --report P   where the HTML report goes (default: loxiha-demo-report.html in the temp
 *                directory, so the checkout stays clean; the path is printed)
 *
 * Exit status: 0 when every established flow survived, 1 when some did not, 2 for a missing
 * prerequisite or bad option, 3 when the run itself failed.
 */
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Demo } from '../sim/demo.ts';
import { preflight } from '../sim/preflight.ts';

const print = (line: string) => process.stdout.write(`${line}\n`);

let values;
try {
  ({ values } = parseArgs({
    options: {
      planned: { type: 'boolean', default: false },
      terminate: { type: 'string' },
      upgrade: { type: 'boolean', default: false },
      reboot: { type: 'string' },
      rotate: { type: 'boolean', default: false },
      failback: { type: 'boolean', default: false },
      'no-sync': { type: 'boolean', default: false },
      fast: { type: 'boolean', default: false },
      strategy: { type: 'string', default: 'eni' },
      azs: { type: 'string', default: '2' },
      groups: { type: 'string', default: '1' },
      keep: { type: 'boolean', default: false },
      report: { type: 'string', default: join(tmpdir(), 'loxiha-demo-report.html') },
      help: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (e) {
  process.stderr.write(`demo: ${(e as Error).message}\nusage: npm run demo -- [--planned | --terminate lb0|lb1 | --upgrade | --reboot lb0|lb1 | --rotate] [--failback] [--no-sync] [--fast] [--strategy eni|route] [--azs 2|3] [--groups N] [--keep] [--report PATH]\n`);
  process.exit(2);
}
if (values.strategy !== 'eni' && values.strategy !== 'route') {
  process.stderr.write(`demo: --strategy must be eni or route, not ${JSON.stringify(values.strategy)}\n`);
  process.exit(2);
}
const terminate = values.terminate === undefined ? undefined : ({ lb0: 0, lb1: 1 } as const)[values.terminate as 'lb0' | 'lb1'];
if (values.terminate !== undefined && (terminate === undefined || values.planned || values.failback)) {
  process.stderr.write(`demo: --terminate takes lb0 or lb1, and neither --planned nor --failback (got ${JSON.stringify(values.terminate)})\n`);
  process.exit(2);
}
if (values.upgrade && (values.planned || values.failback || values.terminate !== undefined)) {
  process.stderr.write('demo: --upgrade takes none of --planned, --failback, --terminate\n');
  process.exit(2);
}
const reboot = values.reboot === undefined ? undefined : ({ lb0: 0, lb1: 1 } as const)[values.reboot as 'lb0' | 'lb1'];
if (values.reboot !== undefined && (reboot === undefined || values.planned || values.failback || values.upgrade || values.terminate !== undefined)) {
  process.stderr.write(`demo: --reboot takes lb0 or lb1, and none of --planned, --failback, --terminate, --upgrade (got ${JSON.stringify(values.reboot)})\n`);
  process.exit(2);
}
if (values.rotate && (values.planned || values.failback || values.upgrade || values.terminate !== undefined || values.reboot !== undefined)) {
  process.stderr.write('demo: --rotate takes none of --planned, --failback, --terminate, --upgrade, --reboot\n');
  process.exit(2);
}
const azs = ({ '2': 2, '3': 3 } as const)[values.azs as '2' | '3'];
const groups = Number(values.groups);
if (azs === undefined || !Number.isInteger(groups) || groups < 1 || groups > 6) {
  process.stderr.write(`demo: --azs takes 2 or 3 and --groups 1 to 6 (got ${JSON.stringify(values.azs)}, ${JSON.stringify(values.groups)})\n`);
  process.exit(2);
}
if (groups > 1 && (values.planned || values.failback || values.upgrade || values.rotate || values.terminate !== undefined || values.reboot !== undefined)) {
  process.stderr.write('demo: with several --groups the run is an availability zone lost; it takes none of --planned, --failback, --terminate, --upgrade, --reboot, --rotate\n');
  process.exit(2);
}
if (values.help) {
  print('usage: npm run demo -- [--planned | --terminate lb0|lb1 | --upgrade | --reboot lb0|lb1 | --rotate] [--failback] [--no-sync] [--fast] [--strategy eni|route] [--azs 2|3] [--groups N] [--keep] [--report PATH]');
  process.exit(0);
}

print('loxiha demo: checking root, Node.js 24, nft, conntrack, ip, curl, moto_server');
const missing = preflight();
if (missing.length) {
  process.stderr.write(`demo: missing ${missing.join('; ')}\n`);
  process.exit(2);
}

const demo = new Demo({
  mode: terminate !== undefined ? 'terminate' : reboot !== undefined ? 'reboot' : values.upgrade ? 'upgrade' : values.rotate ? 'rotate' : values.planned ? 'planned' : 'unplanned',
  ...(terminate !== undefined ? { terminate } : {}),
  ...(reboot !== undefined ? { reboot } : {}),
  failback: values.failback,
  sync: !values['no-sync'],
  fast: values.fast,
  strategy: values.strategy,
  azs,
  groups,
  reportPath: resolve(values.report),
  print,
});
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    print(`\n${sig}: removing every namespace and process the demo made`);
    void demo.stop().finally(() => process.exit(130));
  });
}

// Whatever goes wrong, nothing the run made is left behind.
for (const ev of ['uncaughtException', 'unhandledRejection'] as const) {
  process.on(ev, (e: unknown) => {
    process.stderr.write(`demo failed (${ev}): ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    if (stopping) return;
    stopping = true;
    void demo.stop().finally(() => process.exit(3));
  });
}

let code = 3;
try {
  const { result, reportPath, ok } = await demo.runScenario();
  print(`\nreport: ${reportPath}`);
  print(JSON.stringify(result));
  code = ok ? 0 : 1;
  if (!ok) print(result.sync ? 'NOT every established flow survived the failover' : 'without session sync, established flows were lost (run it without --no-sync to keep them)');
  if (values.keep) {
    print('\nstill running (--keep); to explore:');
    for (const l of demo.exploreHints()) print(l);
    await new Promise(() => {});
  }
} catch (e) {
  process.stderr.write(`demo failed: ${(e as Error).message}\n`);
} finally {
  if (!stopping) await demo.stop();
}
process.exit(code);
