/**
 * The agent owns the event stream: it reads the kernel's messages the event reader passes through
 * (./ctnetlink-event.ts, tested here against messages built as the kernel lays them out), restarts it when it
 * exits, and says events were lost when it restarts it or when the kernel overran (ENOBUFS), so
 * that the streams resync instead of missing changes. The reader is replaced by a small shell
 * script here; the real one is tested against a kernel in conntrack-writer.test.ts.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConntrackEvents } from '../../agent/sync/conntrack-events.ts';
import { readCtEvent, readCtEvents } from '../../agent/sync/ctnetlink-event.ts';
import type { WireEntry } from '../../agent/sync/entry.ts';
import { WRITER_PORT_ID } from '../../agent/sync/inject.ts';

const dirs: string[] = [];
const running: ConntrackEvents[] = [];
afterEach(() => {
  for (const r of running.splice(0)) r.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** One attribute: length and type in host order (little-endian), the payload padded to 4 bytes. */
const attr = (type: number, payload: Buffer) => {
  const head = Buffer.alloc(4);
  head.writeUInt16LE(4 + payload.length, 0);
  head.writeUInt16LE(type, 2);
  return Buffer.concat([head, payload, Buffer.alloc((4 - (payload.length % 4)) % 4)]);
};
const nested = (type: number, ...parts: Buffer[]) => attr(type | 0x8000, Buffer.concat(parts));
const be32 = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
const be16 = (n: number) => Buffer.from([n >>> 8, n & 255]);
const ip = (s: string) => Buffer.from(s.split('.').map(Number));
const tuple = (type: number, src: string, dst: string, proto: number, sport: number, dport: number) =>
  nested(type, nested(1, attr(1, ip(src)), attr(2, ip(dst))), nested(2, attr(1, Buffer.from([proto])), attr(2, be16(sport)), attr(3, be16(dport))));

/**
 * A conntrack event as the kernel sends it (ctnetlink_conntrack_event: header, nfgenmsg, tuples,
 * id, status, timeout, protocol info, mark): `kind` 0 new/update, 2 destroy; `portId` the port of
 * the socket whose change caused it.
 */
function ctEvent(e: WireEntry, o: { portId?: number; family?: number; subsys?: number } = {}): Buffer {
  const proto = e[1] === 'tcp' ? 6 : 17;
  const status = (e[13] & 1 ? 2 : 0) | (e[13] & 2 ? 4 : 0) | 8;
  const states = ['NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE'];
  const body = Buffer.concat([
    Buffer.from([o.family ?? 2, 0, 0, 0]),
    tuple(1, e[2], e[3], proto, e[4], e[5]),
    tuple(2, e[6], e[7], proto, e[8], e[9]),
    attr(12, be32(12345)), // CTA_ID
    attr(3, be32(status)),
    ...(e[0] === 'x' ? [] : [attr(7, be32(e[12]))]),
    ...(proto === 6 ? [nested(4, nested(1, attr(1, Buffer.from([states.indexOf(e[11])])), attr(2, Buffer.from([7])), attr(3, Buffer.from([7]))))] : []),
    attr(8, be32(e[10])),
  ]);
  const head = Buffer.alloc(16);
  head.writeUInt32LE(16 + body.length, 0);
  head.writeUInt16LE(((o.subsys ?? 1) << 8) | (e[0] === 'x' ? 2 : 0), 4);
  head.writeUInt16LE(e[0] === 'n' ? 0x400 | 0x200 : 0, 6);
  head.writeUInt32LE(o.portId ?? 0, 12);
  return Buffer.concat([head, body]);
}

const MARK = 2147488308;
const TCP_NEW: WireEntry = ['n', 'tcp', '100.64.1.100', '100.64.248.254', 40001, 80, '100.64.2.102', '100.64.248.254', 8080, 40001, MARK, 'SYN_SENT', 120, 0];
const UDP_UPDATE: WireEntry = ['u', 'udp', '100.96.1.2', '100.64.248.254', 5353, 9, '100.64.2.101', '100.64.248.254', 9, 5353, MARK, '', 30, 3];
const MASK = 0x80000000;
const read = (b: Buffer) => {
  const out: WireEntry[] = [];
  const used = readCtEvents(b, MASK, WRITER_PORT_ID, (e) => out.push(e));
  return { out, used };
};

describe('reading conntrack event messages', () => {
  it('reads new, updated and ended flows of both protocols into the channel’s fields', () => {
    const ended: WireEntry = ['x', ...TCP_NEW.slice(1, 11), 'CLOSE', 1, 3] as WireEntry;
    const { out, used } = read(Buffer.concat([ctEvent(TCP_NEW), ctEvent(UDP_UPDATE), ctEvent(ended)]));
    expect(out).toEqual([TCP_NEW, UDP_UPDATE, ended]);
    expect(used).toBe(ctEvent(TCP_NEW).length + ctEvent(UDP_UPDATE).length + ctEvent(ended).length);
  });

  it('skips flows that are not load-balanced, other families and subsystems, and the agent’s own writer’s changes', () => {
    const plain = Object.assign([...TCP_NEW], { 10: 5 }) as WireEntry;
    const msgs = [ctEvent(plain), ctEvent(TCP_NEW, { family: 10 }), ctEvent(TCP_NEW, { subsys: 2 }), ctEvent(TCP_NEW, { portId: WRITER_PORT_ID })];
    for (const m of msgs) expect(readCtEvent(m, 0, m.length, MASK, WRITER_PORT_ID)).toBeUndefined();
    // Another writer's change (a port id that is not ours) is the kernel's own as far as sync goes.
    expect(read(ctEvent(TCP_NEW, { portId: 0x4c580099 })).out).toEqual([TCP_NEW]);
  });

  it('waits for the rest of a message cut between two reads, and refuses a stream that is not netlink', () => {
    const whole = Buffer.concat([ctEvent(TCP_NEW), ctEvent(UDP_UPDATE)]);
    const cut = ctEvent(TCP_NEW).length + 10;
    const first = read(whole.subarray(0, cut));
    expect(first).toEqual({ out: [TCP_NEW], used: ctEvent(TCP_NEW).length });
    expect(read(whole.subarray(first.used)).out).toEqual([UDP_UPDATE]);
    expect(() => read(Buffer.from('garbage, not a netlink message at all'))).toThrow(/not a netlink message/);
  });

  it('skips a message whose attributes overrun it (never reads past its end), and a flow without ports', () => {
    const m = ctEvent(TCP_NEW);
    m.writeUInt16LE(0xfff0, 20); // the first attribute claims more than the message holds
    expect(readCtEvent(m, 0, m.length, MASK, WRITER_PORT_ID)).toBeUndefined();
    // An ICMP flow, load-balanced mark and all: its tuples carry a protocol and no ports, so it is not one the channel carries.
    const portless = (type: number, src: string, dst: string) => nested(type, nested(1, attr(1, ip(src)), attr(2, ip(dst))), nested(2, attr(1, Buffer.from([1]))));
    const body = Buffer.concat([Buffer.from([2, 0, 0, 0]), portless(1, '100.64.1.100', '100.64.248.254'), portless(2, '100.64.2.102', '100.64.1.100'), attr(3, be32(8)), attr(8, be32(MARK))]);
    const head = Buffer.alloc(16);
    head.writeUInt32LE(16 + body.length, 0);
    head.writeUInt16LE(1 << 8, 4);
    const icmp = Buffer.concat([head, body]);
    expect(readCtEvent(icmp, 0, icmp.length, MASK, WRITER_PORT_ID)).toBeUndefined();
    // The same message with ports is read (the test above fails for the right reason).
    expect(readCtEvent(ctEvent(TCP_NEW), 0, ctEvent(TCP_NEW).length, MASK, WRITER_PORT_ID)).toEqual(TCP_NEW);
  });
});

function fakeConntrack(script: string): [string, string[]] {
  const dir = mkdtempSync(join(tmpdir(), 'loxiha-ct-'));
  dirs.push(dir);
  const file = join(dir, 'conntrack');
  writeFileSync(file, `#!/bin/sh\n${script}\n`);
  chmodSync(file, 0o755);
  return [file, []];
}

/** A shell line that writes these event messages to stdout, as the reader passes the kernel's on. */
function emits(...msgs: Buffer[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'loxiha-ct-'));
  dirs.push(dir);
  const file = join(dir, 'events.bin');
  writeFileSync(file, Buffer.concat(msgs));
  return `cat '${file}'`;
}
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
    const ev = new ConntrackEvents({ command: fakeConntrack(`echo 'ready 134217728' >&2; ${emits(ctEvent(TCP_NEW))}; exit 1`), onEntry: (e) => events.push(`${e[0]} ${e[2]}:${e[4]} ${e[11]} mark=${e[10]}`), onLoss: (why) => losses.push(why) });
    running.push(ev);
    ev.start();
    await until(() => events.length >= 2 && losses.length >= 1);
    expect(events[0]).toBe('n 100.64.1.100:40001 SYN_SENT mark=2147488308');
    expect(losses[0]).toMatch(/restarted/);
  });

  it('reports a kernel overrun (ENOBUFS) as lost events, and keeps streaming', async () => {
    const events: string[] = [];
    const losses: string[] = [];
    const ev = new ConntrackEvents({ command: fakeConntrack(`echo 'lost the kernel dropped conntrack events (ENOBUFS)' >&2; ${emits(ctEvent(TCP_NEW))}; exec sleep 30`), onEntry: (e) => events.push(e[0]), onLoss: (why) => losses.push(why) });
    running.push(ev);
    ev.start();
    await until(() => events.length === 1 && losses.length === 1);
    expect(losses).toEqual(['the kernel dropped conntrack events (ENOBUFS)']);
  });

  it('hands over only load-balanced flows, and restarts a reader whose output is not netlink (a lost stream)', async () => {
    const events: string[] = [];
    const losses: string[] = [];
    const plain = Object.assign([...TCP_NEW], { 10: 5 }) as WireEntry;
    const ev = new ConntrackEvents({ command: fakeConntrack(`echo 'ready 134217728' >&2; ${emits(ctEvent(plain), ctEvent(TCP_NEW))}; echo 'garbage garbage garbage'; exec sleep 30`), onEntry: (e) => events.push(e[0]), onLoss: (why) => losses.push(why) });
    running.push(ev);
    ev.start();
    await until(() => losses.length >= 1, 8000);
    expect(events[0]).toBe('n');
    expect(losses[0]).toMatch(/restarted \(it ended: not a netlink message/);
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
