/**
 * The agent owns the event stream: it parses what the event reader prints, restarts it when it
 * exits, and says events were lost when it restarts it or when the kernel overran (ENOBUFS), so
 * that the streams resync instead of missing changes. The reader is replaced by a small shell
 * script here; the real one is tested against a kernel in conntrack-writer.test.ts.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConntrackEvents } from '../../agent/sync/conntrack-events.ts';

const dirs: string[] = [];
const running: ConntrackEvents[] = [];
afterEach(() => {
  for (const r of running.splice(0)) r.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function fakeConntrack(script: string): [string, string[]] {
  const dir = mkdtempSync(join(tmpdir(), 'loxiha-ct-'));
  dirs.push(dir);
  const file = join(dir, 'conntrack');
  writeFileSync(file, `#!/bin/sh\n${script}\n`);
  chmodSync(file, 0o755);
  return [file, []];
}

const NEW = 'n tcp 100.64.1.100 100.64.248.254 40001 80 100.64.2.102 100.64.248.254 8080 40001 2147488308 SYN_SENT 120 0';
const until = async (f: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('the conntrack event stream', () => {
  it('hands over parsed events, and restarts the tool when it exits, reporting the gap as lost events', async () => {
    const events: string[] = [];
    const losses: string[] = [];
    const ev = new ConntrackEvents({ command: fakeConntrack(`echo 'ready 134217728'; echo '${NEW}'; exit 1`), onEntry: (e) => events.push(`${e[0]} ${e[2]}:${e[4]} ${e[11]} mark=${e[10]}`), onLoss: (why) => losses.push(why) });
    running.push(ev);
    ev.start();
    await until(() => events.length >= 2 && losses.length >= 1);
    expect(events[0]).toBe('n 100.64.1.100:40001 SYN_SENT mark=2147488308');
    expect(losses[0]).toMatch(/restarted/);
  });

  it('reports a kernel overrun (ENOBUFS) as lost events, and keeps streaming', async () => {
    const events: string[] = [];
    const losses: string[] = [];
    const ev = new ConntrackEvents({ command: fakeConntrack(`echo 'lost the kernel dropped conntrack events (ENOBUFS)'; echo '${NEW}'; exec sleep 30`), onEntry: (e) => events.push(e[0]), onLoss: (why) => losses.push(why) });
    running.push(ev);
    ev.start();
    await until(() => events.length === 1 && losses.length === 1);
    expect(losses).toEqual(['the kernel dropped conntrack events (ENOBUFS)']);
  });

  it('ignores lines that are not events', async () => {
    const events: string[] = [];
    const ev = new ConntrackEvents({ command: fakeConntrack(`echo 'ready 134217728'; echo 'garbage'; echo 'n tcp 1 2 x'; echo '${NEW.replace('40001 80', 'port 80')}'; echo '${NEW}'; exec sleep 30`), onEntry: (e) => events.push(e[0]), onLoss: () => undefined });
    running.push(ev);
    ev.start();
    await until(() => events.length === 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(events).toEqual(['n']);
  });

  it('backs off when the reader cannot run, and says why', async () => {
    const losses: string[] = [];
    const at: number[] = [];
    const t0 = Date.now();
    const ev = new ConntrackEvents({ command: fakeConntrack('echo "python3: not found" >&2; exit 127'), onEntry: () => undefined, onLoss: (why) => (at.push(Date.now() - t0), losses.push(why)) });
    running.push(ev);
    ev.start();
    await until(() => at.length >= 3, 8000);
    // Each reader dies at once: the restarts wait 400, 800, 1600 ms … (doubling from 200 ms per quick death, up to 10 s), not every 200 ms.
    const gaps = [at[0]!, at[1]! - at[0]!, at[2]! - at[1]!];
    expect(gaps[0]).toBeGreaterThanOrEqual(390);
    expect(gaps[1]! / gaps[0]!).toBeGreaterThan(1.5);
    expect(gaps[2]! / gaps[1]!).toBeGreaterThan(1.5);
    expect(losses[0]).toMatch(/restarted \(it ended: python3: not found\)/);
  });

  it('names a reader that cannot be started at all', async () => {
    const losses: string[] = [];
    const ev = new ConntrackEvents({ command: ['/nonexistent/python3', []], onEntry: () => undefined, onLoss: (why) => losses.push(why) });
    running.push(ev);
    ev.start();
    await until(() => losses.length >= 1);
    expect(losses[0]).toMatch(/ENOENT/);
  });
});
