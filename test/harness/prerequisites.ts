/**
 * What the tests need from the machine, and what happens without it: outside CI a test file that
 * cannot run says why, once, and skips; in CI (CI=true) a missing prerequisite is a failure with
 * one clear line (test/prerequisites.test.ts), so a green CI never means "skipped".
 */
import { execFileSync, spawnSync } from 'node:child_process';

export interface Prerequisite {
  name: string;
  available: boolean;
  /** What to do about it. */
  fix: string;
}

function works(cmd: string, args: string[]): boolean {
  try {
    return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
  } catch {
    return false;
  }
}

function netns(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    execFileSync('nft', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export const moto = (): Prerequisite => ({ name: 'moto_server (the AWS emulator)', available: works('moto_server', ['--help']), fix: 'run bash scripts/setup (it installs moto into .venv)' });
export const cfnLint = (): Prerequisite => ({ name: 'cfn-lint', available: works('cfn-lint', ['--version']), fix: 'run bash scripts/setup (it installs cfn-lint into .venv)' });
export const rootNetns = (): Prerequisite => ({ name: 'root with network namespaces and nftables', available: netns(), fix: 'run the tests as root (sudo) after bash scripts/setup' });

/** Debian's chromium, driven headless (puppeteer-core) to check the demo's HTML report. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const chromium = (): Prerequisite => ({ name: 'chromium (headless, for the HTML report check)', available: works(CHROMIUM_PATH, ['--version']), fix: 'apt-get install chromium (bash scripts/setup does)' });

/** The machine as the tests find it. */
export function prerequisites(): Prerequisite[] {
  return [moto(), cfnLint(), rootNetns(), chromium()];
}

/** One line per missing prerequisite: errors in CI, reasons to skip elsewhere. */
export function missingLines(found: Prerequisite[], ci: boolean): string[] {
  return found.filter((p) => !p.available).map((p) => `${ci ? 'CI requires' : 'SKIPPED tests that need'} ${p.name}: ${p.fix}`);
}

const reported = new Set<string>();
/** Outside CI: says once per process why tests that need `name` skip. Returns whether it is available. */
export function need(p: Prerequisite): boolean {
  // Only a test run skips (and says so); the benchmarks say what is missing when they need it.
  if (!p.available && process.env.VITEST && process.env.CI !== 'true' && !reported.has(p.name)) {
    reported.add(p.name);
    console.warn(missingLines([p], false)[0]);
  }
  return p.available;
}

/** Whether the tests may make namespaces here (root, iproute2, nftables); said once when not. */
export const netnsAvailable = need(rootNetns());
/** Whether moto_server runs here (outside CI a missing one is said once; in CI it fails test/prerequisites.test.ts). */
export const motoAvailable = need(moto());
/** Whether the demo's report can be checked in a browser here. */
export const chromiumAvailable = need(chromium());
