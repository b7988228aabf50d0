/**
 * Session sync's conntrack writer (agent/sync/conntrack-netlink.py) against a real kernel, in a
 * namespace of its own: what it creates is what the owner's kernel holds (both translated tuples,
 * the mark, the TCP state), updates and deletes find their entry by tuple at any table size, and a
 * batch it cannot read changes nothing.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type WireEntry, injectLine } from '../../agent/sync/entry.ts';
import { conntrackWriter, Injector } from '../../agent/sync/inject.ts';

const NS = `lxw${process.pid}`;
const MARK = 0x80000005;
const ct = (...args: string[]) => execFileSync('ip', ['netns', 'exec', NS, 'conntrack', ...args], { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] });
const count = () => Number(ct('-C').trim());
const flow = (i: number, op: WireEntry[0] = 'n', proto: 'tcp' | 'udp' = 'udp', state = ''): WireEntry => [op, proto, `100.96.${(i >> 8) & 255}.${i & 255}`, '100.64.248.254', 1024 + (i % 60000), 80, `100.64.2.${101 + (i % 3)}`, '100.64.248.254', 8080, 1024 + (i % 60000), MARK, state, 120, 0];

let writer: ReturnType<typeof conntrackWriter>;
beforeAll(() => {
  execFileSync('ip', ['netns', 'add', NS]);
  // NAT hooks registered in the namespace, as the agent's ruleset does: the kernel binds NAT on created entries.
  execFileSync('ip', ['netns', 'exec', NS, 'nft', '-f', '-'], { input: 'table ip t {\n chain a {\n type nat hook prerouting priority dstnat;\n }\n chain b {\n type nat hook postrouting priority srcnat;\n }\n}\n' });
  writer = conntrackWriter({ netns: NS });
});
afterAll(() => {
  writer?.stop();
  execFileSync('ip', ['netns', 'del', NS]);
});

const load = (entries: WireEntry[]) => writer(entries.map(injectLine).join('\n'));

describe('the conntrack writer', () => {
  it('creates a flow with both NAT tuples, its mark and TCP state; updates it; deletes it', async () => {
    const tcp = flow(1, 'n', 'tcp', 'SYN_SENT');
    expect(await load([tcp, flow(2)])).toBe(0);
    const listed = ct('-L', '-m', String(MARK));
    expect(listed).toMatch(new RegExp(`tcp +6 \\d+ SYN_SENT src=100.96.0.1 dst=100.64.248.254 sport=1025 dport=80 \\[UNREPLIED\\] src=100.64.2.102 dst=100.64.248.254 sport=8080 dport=1025 mark=${MARK}`));
    expect(listed).toMatch(/udp +17 \d+ src=100.96.0.2 dst=100.64.248.254 sport=1026 dport=80 \[UNREPLIED\] src=100.64.2.103 dst=100.64.248.254 sport=8080 dport=1026/);
    // The copy waits an hour at least for the owner's end.
    expect(Number(/tcp +6 (\d+)/.exec(listed)![1])).toBeGreaterThan(3500);
    const established: WireEntry = Object.assign([...flow(1, 'u', 'tcp', 'ESTABLISHED')], { 13: 3 }) as WireEntry;
    expect(await load([established])).toBe(0);
    expect(ct('-L', '-p', 'tcp', '-m', String(MARK))).toMatch(/ESTABLISHED src=100.96.0.1 .* \[ASSURED\]/);
    expect(await load([flow(1, 'x', 'tcp', 'ESTABLISHED'), flow(2, 'x'), flow(3, 'x')])).toBe(0);
    expect(count()).toBe(0);
  });

  it('creates an update whose flow is missing, and updates a "new" flow that exists after all', async () => {
    expect(await load([flow(10, 'u', 'tcp', 'ESTABLISHED')])).toBe(0);
    expect(await load([Object.assign([...flow(10, 'n', 'tcp', 'FIN_WAIT')], { 13: 3 }) as WireEntry])).toBe(0);
    expect(ct('-L', '-p', 'tcp')).toMatch(/FIN_WAIT src=100.96.0.10 /);
    await load([flow(10, 'x', 'tcp', 'FIN_WAIT')]);
    expect(count()).toBe(0);
  });

  it('mixes thousands of creates, updates and deletes in one batch at any table size (conntrack -R stopped at the first few dozen -U)', async () => {
    const n = 5000;
    const injector = new Injector(writer);
    await injector.add(Array.from({ length: n }, (_, i) => injectLine(flow(1000 + i, 'n', 'tcp', 'SYN_SENT'))));
    expect(count()).toBe(n);
    // Every other flow becomes established, the rest end, and as many new ones arrive: one batch.
    const mixed = Array.from({ length: n }, (_, i) => (i % 2 ? flow(1000 + i, 'x', 'tcp', 'SYN_SENT') : (Object.assign([...flow(1000 + i, 'u', 'tcp', 'ESTABLISHED')], { 13: 3 }) as WireEntry)));
    const fresh = Array.from({ length: n }, (_, i) => flow(20_000 + i, 'n'));
    await injector.add([...mixed, ...fresh].map(injectLine));
    expect(injector.refused).toBe(0);
    expect(count()).toBe(n / 2 + n);
    expect(ct('-L', '-p', 'tcp').match(/ESTABLISHED/g)).toHaveLength(n / 2);
    execFileSync('ip', ['netns', 'exec', NS, 'conntrack', '-F'], { stdio: 'ignore' });
  });

  it('applies nothing of a batch it cannot read, says why, and takes the next one', async () => {
    await expect(writer([injectLine(flow(7)), 'n udp 100.96.0.8 not-an-address'].join('\n'))).rejects.toThrow(/refused the batch: error/);
    expect(count()).toBe(0);
    expect(await load([flow(7)])).toBe(0);
    expect(count()).toBe(1);
    await load([flow(7, 'x')]);
  });

  it('counts what the kernel refuses (a delete of nothing is not a refusal)', async () => {
    expect(await load([flow(40, 'x')])).toBe(0);
    // A reply tuple another entry already holds: the kernel cannot bind this one's NAT.
    const clash = Object.assign([...flow(41)], { 2: '100.96.9.9' }) as WireEntry;
    expect(await load([flow(41)])).toBe(0);
    expect(await load([clash])).toBe(1);
    await load([flow(41, 'x')]);
  });
});
