/** The demo's CLI before it starts anything: what is missing, in one line, and bad options. */
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const demo = (args: string[], env: NodeJS.ProcessEnv = process.env) => spawnSync(process.execPath, [join(ROOT, 'bin/demo.ts'), ...args], { encoding: 'utf8', env, timeout: 30_000 });

describe('npm run demo: checks first', () => {
  it('names everything missing in one line and exits 2, changing nothing', () => {
    // Only node on PATH: no nft, conntrack, ip, curl or moto_server.
    const r = demo([], { PATH: dirname(process.execPath) });
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    for (const what of ['nft (apt-get install nftables)', 'conntrack (apt-get install conntrack)', 'ip (apt-get install iproute2)', 'curl', 'moto_server']) expect(lines[0]).toContain(what);
    expect(r.stdout).not.toMatch(/setup|failure/);
  });

  it('refuses an unknown option or strategy with usage, exit 2', () => {
    const bad = demo(['--strategyy', 'route']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/usage: npm run demo/);
    const strategy = demo(['--strategy', 'bgp']);
    expect(strategy.status).toBe(2);
    expect(strategy.stderr).toMatch(/--strategy must be eni or route/);
  });
});
