/**
 * npm run bench:demo (root) — the demo's figures over several runs: each round runs the demo CLI
 * (realistic AWS layer unless BENCH_FAST=1) unplanned with session sync, unplanned without it (the
 * baseline: what a failover keeps without sync), planned, unplanned with strategy route, and day
 * two: a slot's instance replaced (terminate-lb0/lb1), a deploy's rollout (upgrade), a reboot
 * (reboot-lb0/lb1). BENCH_SCENARIOS=a,b runs those only. Prints each run's JSON line tagged
 * with its scenario, then one line per scenario with the median and worst of every figure.
 * BENCH_RUNS rounds (default 3).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SCENARIOS: Record<string, string[]> = {
  unplanned: [],
  'unplanned-no-sync': ['--no-sync'],
  planned: ['--planned'],
  'unplanned-route': ['--strategy', 'route'],
  'terminate-lb0': ['--terminate', 'lb0'],
  'terminate-lb1': ['--terminate', 'lb1'],
  upgrade: ['--upgrade'],
  'reboot-lb0': ['--reboot', 'lb0'],
  'reboot-lb1': ['--reboot', 'lb1'],
};
const dir = mkdtempSync(join(tmpdir(), 'loxiha-bench-demo-'));
const results: Record<string, Record<string, number>[]> = {};

try {
  for (let round = 0; round < RUNS; round++) {
    for (const [name, args] of Object.entries(SCENARIOS).filter(([n]) => !process.env.BENCH_SCENARIOS || process.env.BENCH_SCENARIOS.split(',').includes(n))) {
      const r = spawnSync(process.execPath, [join(ROOT, 'bin/demo.ts'), ...args, ...(process.env.BENCH_FAST === '1' ? ['--fast'] : []), '--report', join(dir, `${name}.html`)], { encoding: 'utf8', timeout: 300_000 });
      const line = r.stdout.split('\n').filter((l) => l.startsWith('{"failoverSeconds"')).pop();
      if (!line) {
        console.error(`bench:demo: ${name} printed no result (exit ${r.status}): ${(r.stderr || r.stdout).slice(-1500)}`);
        process.exit(1);
      }
      const j = JSON.parse(line) as Record<string, number>;
      (results[name] ??= []).push(j);
      console.log(JSON.stringify({ ...j, scenario: name, round, exit: r.status }));
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  for (const [name, runs] of Object.entries(results)) {
    const out: Record<string, unknown> = { metric: 'demo', scenario: name, runs: runs.length };
    for (const k of ['failoverSeconds', 'detectSeconds', 'trafficResumedSeconds', 'maxPauseMs', 'requestsFailed', 'flowsKept', 'vipMoves', 'slotsReplaced', 'alarmsFired', 'seconds']) {
      const xs = runs.map((r) => r[k]).filter((v): v is number => typeof v === 'number');
      if (xs.length) out[k] = { median: median(xs), worst: k === 'flowsKept' ? Math.min(...xs) : Math.max(...xs) };
    }
    out.flowsTotal = runs[0]!.flowsTotal;
    console.log(JSON.stringify(out));
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
