/** Bundles the agent into one ES module, as it ships to the LB instances (the CDK asset, the tests and the benchmarks use this). */
import { copyFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';
import { NODE_ESM_SPLIT } from './bundling/node-esm.ts';

/**
 * How Node runs the agent, on the instances (systemd) and in the tests: source maps for stack
 * traces; a 1 MB young generation and V8's optimize-for-size mode, which keep the agent's RSS near
 * 110 MB with 1,000 services × 8 endpoints instead of growing past 170 MB after a few changes
 * (measured: each API change then takes ≈ 300 ms instead of ≈ 200 ms; the agent is not on the
 * packet path).
 */
export const AGENT_NODE_FLAGS = ['--enable-source-maps', '--max-semi-space-size=1', '--optimize-for-size'];

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Bundles the agent (main.ts → outfile) and, beside it, the `loxiha` CLI (cli.mjs) and session
 * sync's ctnetlink helper (conntrack-netlink.py), split at
 * dynamic imports: the AWS SDK (heartbeats) is a chunk the agent loads only when its config has an
 * `aws` section, so an agent without one does not carry it (≈ 15 MB of RSS, measured).
 */
export function bundleAgent(outfile: string): string {
  const name = path.basename(outfile, '.mjs');
  buildSync({
    ...NODE_ESM_SPLIT,
    entryPoints: { [name]: path.join(ROOT, 'agent/main.ts'), cli: path.join(ROOT, 'agent/cli.ts') },
    outdir: path.dirname(outfile),
    minify: true,
  });
  // Session sync's ctnetlink helper (event reader and writer) runs beside the bundle (agent/sync/inject.ts finds it there).
  copyFileSync(path.join(ROOT, 'agent/sync/conntrack-netlink.py'), path.join(path.dirname(outfile), 'conntrack-netlink.py'));
  return outfile;
}
