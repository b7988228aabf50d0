/** An instance is ready only while its kernel forwards as a load balancer must; drifted settings are set back and said. */
import { describe, expect, it } from 'vitest';
import { ensurePrerequisites, KERNEL_PREREQUISITES, sysctlPath, unmetPrerequisites } from '../../agent/host/prerequisites.ts';

const fakeProc = (initial: Record<string, string | undefined>, writable = true) => {
  const files = new Map(Object.entries(initial).map(([k, v]) => [sysctlPath(k), v]));
  const writes: string[] = [];
  return {
    writes,
    io: {
      read: async (p: string) => files.get(p),
      write: async (p: string, v: string) => {
        if (!writable) throw new Error('EACCES');
        writes.push(`${p}=${v}`);
        files.set(p, `${v}\n`);
      },
    },
  };
};
const good = { 'net.ipv4.ip_forward': '1\n', 'net.netfilter.nf_conntrack_tcp_loose': '1\n' };

describe('kernel prerequisites', () => {
  it('a kernel set as wanted is ready and nothing is written', async () => {
    const f = fakeProc(good);
    expect(await ensurePrerequisites(f.io)).toEqual({ ready: true, notReady: [], set: [] });
    expect(f.writes).toEqual([]);
  });

  it('a drifted setting (a reboot turned forwarding off) is set back, said, and the instance is ready', async () => {
    const f = fakeProc({ ...good, 'net.ipv4.ip_forward': '0\n' });
    const r = await ensurePrerequisites(f.io);
    expect(r).toEqual({ ready: true, notReady: [], set: ['net.ipv4.ip_forward=1 (was 0)'] });
    expect(f.writes).toEqual(['/proc/sys/net/ipv4/ip_forward=1']);
  });

  it('a setting that cannot be set, or read, leaves the instance not ready, with why', async () => {
    const f = fakeProc({ ...good, 'net.ipv4.ip_forward': '0\n', 'net.netfilter.nf_conntrack_tcp_loose': undefined }, false);
    const r = await ensurePrerequisites(f.io);
    expect(r.ready).toBe(false);
    expect(r.notReady).toEqual([
      'net.ipv4.ip_forward is 0, needs 1: forwards the load-balanced flows',
      'net.netfilter.nf_conntrack_tcp_loose is unreadable, needs 1: picks up established TCP flows mid-stream after a failover',
    ]);
    expect(r.set).toEqual([]);
  });

  it('the pure check compares trimmed values and names every wanted setting', () => {
    expect(unmetPrerequisites(new Map(Object.entries(good)))).toEqual([]);
    expect(unmetPrerequisites(new Map()).map((u) => u.key)).toEqual(KERNEL_PREREQUISITES.map((p) => p.key));
    expect(sysctlPath('net.ipv4.conf.all.rp_filter')).toBe('/proc/sys/net/ipv4/conf/all/rp_filter');
  });
});
