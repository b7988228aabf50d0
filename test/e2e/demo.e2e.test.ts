/**
 * `npm run demo` is the project's end-to-end test: the CLI exactly as a user runs it (bin/demo.ts),
 * unplanned with the realistic AWS layer, planned with a failback, and without session sync
 * (which must lose flows, so this test can fail). The HTML report is opened in headless chromium:
 * no script errors, every phase of the run shown with its duration. Each run cleans up its own
 * namespaces (checked by the lab id it prints).
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import puppeteer from 'puppeteer-core';
import { afterAll, describe, expect, it } from 'vitest';
import { CHROMIUM_PATH, chromiumAvailable, motoAvailable, netnsAvailable } from '../harness/prerequisites.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'loxiha-demo-test-'));

interface DemoRun {
  code: number | null;
  out: string;
  json: Record<string, any>;
  labId: string;
}

/** Runs the demo CLI to its end (bounded: killed after 4 minutes). */
async function demo(args: string[]): Promise<DemoRun> {
  const child = spawn(process.execPath, [join(ROOT, 'bin/demo.ts'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const timer = setTimeout(() => child.kill('SIGINT'), 240_000);
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  clearTimeout(timer);
  const line = out.split('\n').filter((l) => l.startsWith('{"failoverSeconds"')).pop();
  if (!line) throw new Error(`the demo printed no result line (exit ${code}):\n${out.slice(-4000)}`);
  const labId = /namespaces lx([0-9a-f]+)-\*/.exec(out)?.[1] ?? '';
  return { code, out, json: JSON.parse(line), labId };
}

/** Progress lines after the failure, by phase. */
const phasesPrinted = (out: string) => new Set([...out.matchAll(/^\s+\+\d+\.\d+ s {2}(\w+)/gm)].map((m) => m[1]));
const leftNamespaces = (labId: string) => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith(`lx${labId}-`));

const ALL_PHASES = ['failure', 'detection', 'lease', 'ec2', 'eni', 'eip', 'role', 'traffic', 'sessions', 'done'];

describe.skipIf(!netnsAvailable || !motoAvailable)('npm run demo', () => {
  let unplannedReport: string | undefined;
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('unplanned, realistic AWS: lb0 dies, the fast path moves the VIP, every established flow survives; then lb0 comes back and a failback moves it home, every flow kept again', async () => {
    const report = join(dir, 'unplanned.html');
    const r = await demo(['--failback', '--report', report]);
    expect(r.code, r.out.slice(-3000)).toBe(0);
    expect(r.json).toMatchObject({ flowsKept: 13, flowsTotal: 13, mode: 'unplanned', sync: true, awsBehaviour: 'realistic' });
    expect(r.json.failbackSeconds).toBeGreaterThan(0);
    expect(r.out).toMatch(/lb0 is back \(instance started, agent restarted\)/);
    expect(r.out).toMatch(/loxi-eni \(eni-\w+\) appears on lb0/);
    expect(r.out).toMatch(/lb0's agent is MASTER again/);
    expect(r.json.firstTrigger).toMatch(/^fast path/);
    expect(r.json.detectSeconds).toBeLessThan(3);
    // The EIP moves only after the function ran its EC2 steps with AWS's latencies (seconds, not milliseconds).
    expect(r.json.failoverSeconds).toBeGreaterThan(r.json.detectSeconds + 3);
    expect(r.json.trafficResumedSeconds).toBeGreaterThanOrEqual(r.json.failoverSeconds);
    for (const p of ALL_PHASES) expect(phasesPrinted(r.out), p).toContain(p);
    expect(r.out).toMatch(/DetachNetworkInterface \(\d+ ms\)/);
    expect(r.out).toMatch(/loxi-eni \(eni-\w+\) appears on lb1/);
    expect(r.out).toContain(`report: ${report}`);
    expect(r.labId).not.toBe('');
    expect(leftNamespaces(r.labId)).toEqual([]);
    unplannedReport = report;
  }, 300_000);

  // Its own case, skipped (said once) without chromium outside CI and failed for it in CI: not a silent early return.
  it.skipIf(!chromiumAvailable)('the unplanned run’s HTML report renders every phase in a browser, fetching nothing', async () => {
    const report = unplannedReport;
    expect(report, 'the unplanned demo wrote its report').toBeDefined();
    const browser = await puppeteer.launch({ executablePath: CHROMIUM_PATH, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
      page.on('request', (q) => !q.url().startsWith('file:') && !q.url().startsWith('data:') && errors.push(`fetched ${q.url()}`));
      await page.goto(`file://${report!}`, { waitUntil: 'load' });
      await page.waitForSelector('body[data-rendered="yes"]', { timeout: 10_000 });
      const rows = await page.$$eval('#phases tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
      const bars = await page.$$eval('#chart rect[data-phase]', (rs) => rs.map((r) => r.getAttribute('data-phase')));
      const traffic = await page.$$eval('#chart rect[class^="bucket-"]', (rs) => rs.length);
      expect(errors).toEqual([]);
      expect(rows.map((r) => r[0])).toEqual(ALL_PHASES);
      for (const row of rows) {
        expect(row[1], row.join(' | ')).toMatch(/^-?\d+\.\d\d s$/);
        expect(row[2], row.join(' | ')).toMatch(/^\d+ ms$/);
      }
      expect(new Set(bars)).toEqual(new Set(ALL_PHASES));
      expect(traffic).toBeGreaterThan(50);
    } finally {
      await browser.close();
    }
  }, 300_000);

  it('strategy route, realistic AWS: one wave of calls (EIP and routes), nothing detached, every established flow kept', async () => {
    const r = await demo(['--strategy', 'route', '--report', join(dir, 'route.html')]);
    expect(r.code, r.out.slice(-3000)).toBe(0);
    expect(r.json).toMatchObject({ flowsKept: 13, flowsTotal: 13, strategy: 'route', awsBehaviour: 'realistic' });
    const after = r.out.slice(r.out.indexOf('failure '));
    expect(after).toMatch(/AssociateAddress \(\d+ ms\)/);
    expect(after.match(/ReplaceRoute \(\d+ ms\)/g)).toHaveLength(3);
    expect(after).not.toMatch(/DetachNetworkInterface|CreateNetworkInterface|DeleteSubnet/);
    expect(after).toMatch(/the VPC routes the VIP 100\.127\.0\.10 to lb1/);
    expect(after).toMatch(/EIP 100\.100\.100\.100 → 100\.64\.228\.11 on lb1's ingress IP/);
    expect(leftNamespaces(r.labId)).toEqual([]);
  }, 300_000);

  it('--azs 3 --groups 3: three LBs in three zones, a VIP group on each; lb0\'s zone lost — its group moves, the two others do not pause, every established flow of every group kept', async () => {
    const r = await demo(['--azs', '3', '--groups', '3', '--report', join(dir, 'groups.html')]);
    expect(r.code, r.out.slice(-3000)).toBe(0);
    expect(r.json).toMatchObject({ azs: 3, strategy: 'eni', awsBehaviour: 'realistic' });
    const groups = r.json.groups as { group: string; ownerBefore: number; ownerAfter: number; moved: boolean; flowsKept: number; flowsTotal: number; maxPauseMs: number }[];
    // Placed one per LB; only lb0's group moved, to a survivor.
    expect(groups.map((g) => [g.group, g.ownerBefore, g.moved])).toEqual([
      ['default', 0, true],
      ['g1', 1, false],
      ['g2', 2, false],
    ]);
    expect([1, 2]).toContain(groups[0]!.ownerAfter);
    expect(groups.slice(1).map((g) => g.ownerAfter)).toEqual([1, 2]);
    for (const g of groups) expect(g.flowsKept, g.group).toBe(g.flowsTotal);
    expect(groups.every((g) => g.flowsTotal === 8)).toBe(true);
    // The groups whose owner lived went on: no silence near a move's length.
    for (const g of groups.slice(1)) expect(g.maxPauseMs, g.group).toBeLessThan(1000);
    expect(r.json.vipMoves).toBe(1);
    const after = r.out.slice(r.out.indexOf('failure '));
    expect(after).toMatch(/loxi-eni of group default \(eni-[0-9a-f]+\) appears on lb[12]/);
    expect(after).not.toMatch(/loxi-eni of group g[12]/);
    expect(leftNamespaces(r.labId)).toEqual([]);
  }, 300_000);

  it('--azs 3 --groups 3 --strategy route --fast: each group\'s EIP and VIP route follow its owner; lb0\'s zone lost moves its group in one wave, the others go on, every flow kept', async () => {
    const r = await demo(['--azs', '3', '--groups', '3', '--strategy', 'route', '--fast', '--report', join(dir, 'groups-route.html')]);
    expect(r.code, r.out.slice(-3000)).toBe(0);
    const groups = r.json.groups as { group: string; moved: boolean; ownerAfter: number; flowsKept: number; flowsTotal: number; maxPauseMs: number }[];
    expect(groups.map((g) => [g.group, g.moved])).toEqual([
      ['default', true],
      ['g1', false],
      ['g2', false],
    ]);
    for (const g of groups) expect(g.flowsKept, g.group).toBe(g.flowsTotal);
    for (const g of groups.slice(1)) expect(g.maxPauseMs, g.group).toBeLessThan(1000);
    const after = r.out.slice(r.out.indexOf('failure '));
    // Only the moved group's EIP and VIP route changed: one wave, nothing of g1's or g2's.
    expect(after).toMatch(new RegExp(`internet gateway maps EIP 100\\.100\\.100\\.100 → 100\\.64\\.2[23]8\\.11 on lb${groups[0]!.ownerAfter}'s ingress IP`));
    expect(after).toMatch(/the VPC routes the VIP 100\.127\.0\.10 to lb[12]/);
    expect(after).not.toMatch(/EIP 100\.100\.100\.10[12] |the VIP 100\.127\.[12]\.10 /);
    expect(after).not.toMatch(/DetachNetworkInterface|CreateNetworkInterface/);
    expect(leftNamespaces(r.labId)).toEqual([]);
  }, 300_000);

  it('--terminate lb0: the owner’s group replaces it; the VIP moves off it first (planned, one move), every flow kept, the replacement rejoins as the backup', async () => {
    const r = await demo(['--terminate', 'lb0', '--fast', '--report', join(dir, 'terminate-lb0.html')]);
    expect(r.code, r.out.slice(-3000)).toBe(0);
    expect(r.json).toMatchObject({ scenario: 'terminate', slot: 0, flowsKept: 13, flowsTotal: 13, vipMoves: 1, slotsReplaced: 1 });
    expect(r.json.instances.after).not.toBe(r.json.instances.before);
    const after = r.out.slice(r.out.indexOf('failure '));
    // The order AWS and the function keep: the VIP on lb1 before the old instance goes; the replacement gets the slot's interface.
    const at = (re: RegExp) => after.search(re);
    expect(at(/internet gateway maps EIP 100\.100\.100\.100 → 100\.64\.248\.254 on lb1's loxi-eni/)).toBeGreaterThan(-1);
    expect(at(/internet gateway maps EIP .* on lb1's loxi-eni/)).toBeLessThan(at(/EC2 terminates i-/));
    expect(after).toMatch(/SNS \+ EventBridge: slot instance terminating/);
    expect(after).toMatch(/SNS \+ EventBridge: slot instance launched/);
    expect(after).toMatch(/function: completed \(slot 0's interface eni-\w+ attached to i-\w+, source\/dest check off\)/);
    expect(after).toMatch(/lb0 \(i-\w+\) is the backup again: ready, its sessions in sync with the owner/);
    expect(leftNamespaces(r.labId)).toEqual([]);
  }, 300_000);

  it('--upgrade: a deploy’s rollout replaces both slots under traffic, the backup’s first — the VIP moves once, every flow kept, no alarm fired, both slots on new instances', async () => {
    const r = await demo(['--upgrade', '--fast', '--report', join(dir, 'upgrade.html')]);
    expect(r.code, r.out.slice(-3000)).toBe(0);
    expect(r.json).toMatchObject({ scenario: 'upgrade', flowsKept: 13, flowsTotal: 13, vipMoves: 1, slotsReplaced: 2, alarmsFired: 0 });
    const { before, after } = r.json.instances as { before: string[]; after: string[] };
    for (const id of after) expect(before).not.toContain(id);
    const out = r.out.slice(r.out.indexOf('failure '));
    const at = (re: RegExp) => out.search(re);
    // The backup's slot (1) first; the owner's (0) only once slot 1's new instance is ready; the VIP onto it before slot 0's instance goes.
    expect(at(/rollout \(replace\): slot 1 does not hold the VIP/)).toBeGreaterThan(-1);
    // Slot 1's replacement is the self-healing of a backup (--terminate lb1 does the same by the group's health check): nothing moves meanwhile.
    const backupPart = out.slice(at(/rollout \(replace\): slot 1/), at(/rollout \(replace\): slot 0/));
    expect(backupPart).not.toMatch(/DetachNetworkInterface|AssociateAddress/);
    expect(backupPart).toMatch(/SNS \+ EventBridge: slot instance terminating.*\(slot 1, /);
    expect(backupPart).toMatch(/function: completed \(slot 1's interface eni-\w+ attached to i-\w+, source\/dest check off\)/);
    expect(at(/lb1 \(i-\w+\) is the backup again: ready, its sessions in sync/)).toBeLessThan(at(/rollout \(replace\): slot 0 holds the VIP/));
    expect(at(/internet gateway maps EIP .* on lb1's loxi-eni/)).toBeLessThan(at(/EC2 terminates i-\w+: lb0's/));
    // Done only once slot 0's new instance is in service and its agent beats ready (the demo's own "backup again" line also waits for sync, so it may come later).
    expect(at(/rollout \(done\)/)).toBeGreaterThan(at(/i-\w+ is in service in slot 0/));
    expect(leftNamespaces(r.labId)).toEqual([]);
  }, 300_000);

  it('--reboot lb0: the owner reboots (EC2 says running); the fast path moves the VIP once, a move back while it boots is refused, it comes back forwarding and ready as the backup', async () => {
    const r = await demo(['--reboot', 'lb0', '--fast', '--report', join(dir, 'reboot.html')]);
    expect(r.code, r.out.slice(-3000)).toBe(0);
    expect(r.json).toMatchObject({ scenario: 'reboot', slot: 0, flowsKept: 13, flowsTotal: 13, vipMoves: 1 });
    expect(r.json.firstTrigger).toMatch(/^fast path/);
    expect(r.json.moveWhileNotReady).toMatch(/^rejected: .*its peer lost it .* and it has not beaten since/);
    expect(r.out).toMatch(/lb0 \(i-\w+\) is ready as the backup \(net\.ipv4\.ip_forward = 1\), its sessions in sync with the owner/);
    expect(leftNamespaces(r.labId)).toEqual([]);
  }, 300_000);

  it('--rotate: both secrets rotated three times under traffic (at once, again at once, with lb1’s agent down) — no failed kube-loxilb call, no sync break, no fast-path trigger, no VIP move, every flow kept; the token from before refused', async () => {
    const r = await demo(['--rotate', '--fast', '--report', join(dir, 'rotate.html')]);
    expect(r.code, r.out.slice(-3000)).toBe(0);
    expect(r.json).toMatchObject({ scenario: 'rotate', flowsKept: 13, flowsTotal: 13, apiCallsFailed: 0, syncBreaks: 0, vipMoves: 0, fastPathTriggers: 0, rotationsDone: 6, rotationsStarted: 6, oldTokenRefused: true });
    // The new value became current only after both agents took it — and, while lb1 was down, only after it came back.
    const round3 = r.out.slice(r.out.indexOf('round 3, lb1 down'));
    expect(round3).toMatch(/waiting for [^\n]*lb1[^\n]* to take the pending value/);
    expect(round3.indexOf("lb1's agent is back")).toBeLessThan(round3.indexOf('finishSecret'));
    expect(r.out).toMatch(/kube-loxilb made \d+ calls \(0 failed\), refreshed its token [1-9]\d* times/);
    expect(leftNamespaces(r.labId)).toEqual([]);
  }, 300_000);

  it('without session sync, established flows are lost and the demo says so (exit 1)', async () => {
    const r = await demo(['--no-sync', '--fast', '--report', join(dir, 'no-sync.html')]);
    expect(r.code, r.out.slice(-3000)).toBe(1);
    expect(r.json.sync).toBe(false);
    expect(r.json.flowsTotal).toBe(13);
    expect(r.json.flowsKept).toBeLessThan(13);
    expect(r.out).toMatch(/established flows lost/);
    expect(r.out).toMatch(/without session sync, established flows were lost/);
    expect(leftNamespaces(r.labId)).toEqual([]);
  }, 300_000);
});
