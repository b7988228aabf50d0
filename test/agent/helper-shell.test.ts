import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HelperShell, removeStaleHelperDirs } from '../../agent/helper-shell.ts';

const dirs: string[] = [];
const scratch = () => {
  const d = mkdtempSync(join(tmpdir(), 'loxiha-helper-test-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('the helper shell', () => {
  it('runs the command on each input in order, with its exit code, output and errors', async () => {
    const h = new HelperShell({ name: 'test', command: 'cat "$f"; if grep -q fail "$f"; then echo "it failed" >&2; sh -c "exit 3"; fi', stdout: true, dir: scratch() });
    try {
      const all = await Promise.all(['one\n', 'two fail\n', 'three\n'].map((x) => h.run(x)));
      expect(all).toEqual([
        { code: 0, stdout: 'one\n', stderr: '' },
        { code: 3, stdout: 'two fail\n', stderr: 'it failed\n' },
        { code: 0, stdout: 'three\n', stderr: '' },
      ]);
    } finally {
      h.stop();
    }
  });

  it('runs every command from one shell (no fork of the agent per command)', async () => {
    const h = new HelperShell({ name: 'test', command: "sh -c 'echo $PPID'", stdout: true, dir: scratch() });
    try {
      const parents = new Set<string>();
      for (let i = 0; i < 5; i++) parents.add((await h.run('')).stdout.trim());
      expect(parents.size).toBe(1);
      expect([...parents][0]).not.toBe(String(process.pid));
    } finally {
      h.stop();
    }
  });

  it('kills a command that hangs, says so, and runs the next one in a new shell', async () => {
    const h = new HelperShell({ name: 'test', command: 'grep -q hang "$f" && sleep 30; echo done', stdout: true, timeoutMs: 300, dir: scratch() });
    try {
      await expect(h.run('hang')).rejects.toThrow(/did not finish within 300 ms/);
      expect(await h.run('go')).toEqual({ code: 0, stdout: 'done\n', stderr: '' });
    } finally {
      h.stop();
    }
  });

  it('fails what waits when its shell dies, and starts again', async () => {
    const h = new HelperShell({ name: 'test', command: 'grep -q die "$f" && kill -9 $$; echo alive', stdout: true, dir: scratch() });
    try {
      const r = await h.run('die');
      expect(r.code).toBe(-1);
      expect(r.stderr).toMatch(/helper shell stopped/);
      expect((await h.run('live')).stdout).toBe('alive\n');
    } finally {
      h.stop();
    }
  });

  it('keeps its files in a private directory, and removes it when stopped', async () => {
    const parent = scratch();
    const h = new HelperShell({ name: 'test', command: 'true', dir: parent });
    await h.run('x');
    const [own] = readdirSync(parent);
    expect(own).toMatch(new RegExp(`^loxiha-test-${process.pid}-`));
    h.stop();
    expect(readdirSync(parent)).toEqual([]);
    await expect(h.run('x')).rejects.toThrow(/stopped/);
  });

  it('removes what agents killed mid-command left behind, never a live process’s', () => {
    const parent = scratch();
    // A pid that cannot be alive (above the kernel's maximum), this process's own, its parent's, an older version's load file, and another file.
    for (const name of ['loxiha-sync-99999999-aB3', `loxiha-nft-${process.pid}-x1`, `loxiha-ip-${process.ppid}-y2`]) mkdirSync(join(parent, name));
    for (const name of ['loxiha-sync-99999998.conntrack', 'other.txt']) writeFileSync(join(parent, name), 'x');
    expect(removeStaleHelperDirs(parent)).toBe(2);
    expect(readdirSync(parent).sort()).toEqual([`loxiha-ip-${process.ppid}-y2`, `loxiha-nft-${process.pid}-x1`, 'other.txt']);
  });
});
