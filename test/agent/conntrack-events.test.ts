/**
 * The agent owns the event stream: it parses what `conntrack -E` prints, restarts it when it exits,
 * and says events were lost when it restarts it or when the kernel overran (ENOBUFS), so that the
 * streams resync instead of missing changes. `conntrack` is replaced by a small shell script.
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

const NEW = '    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=100.64.1.100 dst=100.64.248.254 sport=40001 dport=80 [UNREPLIED] src=100.64.2.102 dst=100.64.248.254 sport=8080 dport=40001 mark=2147488308';
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
    const ev = new ConntrackEvents({ command: fakeConntrack(`echo '${NEW}'; exit 1`), onEvent: (kind, e) => events.push(`${kind} ${e.src}:${e.sport}`), onLoss: (why) => losses.push(why) });
    running.push(ev);
    ev.start();
    await until(() => events.length >= 2 && losses.length >= 1);
    expect(events[0]).toBe('NEW 100.64.1.100:40001');
    expect(losses[0]).toMatch(/restarted/);
  });

  it('reports a kernel overrun (ENOBUFS) as lost events, and keeps streaming', async () => {
    const events: string[] = [];
    const losses: string[] = [];
    const ev = new ConntrackEvents({ command: fakeConntrack(`echo 'WARNING: We have hit ENOBUFS! We are losing events.' >&2; echo '${NEW}'; exec sleep 30`), onEvent: (kind) => events.push(kind), onLoss: (why) => losses.push(why) });
    running.push(ev);
    ev.start();
    await until(() => events.length === 1 && losses.length === 1);
    expect(losses).toEqual(['the kernel dropped conntrack events (ENOBUFS)']);
  });

  it('ignores lines that are not events', async () => {
    const events: string[] = [];
    const ev = new ConntrackEvents({ command: fakeConntrack(`echo 'conntrack v1.4.7 (conntrack-tools): 0 flow events have been shown.'; echo 'garbage'; echo '${NEW}'; exec sleep 30`), onEvent: (kind) => events.push(kind), onLoss: () => undefined });
    running.push(ev);
    ev.start();
    await until(() => events.length === 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(events).toEqual(['NEW']);
  });
});
