/**
 * The kernel settings an LB instance needs to carry traffic, checked at every start and every
 * PREREQUISITE_CHECK_MS after, set when they are not (a reboot, a host configuration tool, an
 * operator), and reported: an instance whose kernel does not forward is alive but not ready, and
 * says why (`GET /config/cistate/all`, `loxiha get ha`). Per network namespace (net.* settings),
 * so the simulation's instances each have their own. The decision is pure (`unmetPrerequisites`);
 * reading and writing /proc/sys is the adapter's.
 */
import { readFile, writeFile } from 'node:fs/promises';

export interface KernelPrerequisite {
  /** The sysctl name. */
  key: string;
  want: string;
  why: string;
}

export const KERNEL_PREREQUISITES: readonly KernelPrerequisite[] = [
  { key: 'net.ipv4.ip_forward', want: '1', why: 'forwards the load-balanced flows' },
  { key: 'net.netfilter.nf_conntrack_tcp_loose', want: '1', why: 'picks up established TCP flows mid-stream after a failover' },
  // (rp_filter is set loose on the VIP's interface by the VIP path, ../ha/vip-path.ts.)
];

export const PREREQUISITE_CHECK_MS = 10_000;

export const sysctlPath = (key: string) => `/proc/sys/${key.replaceAll('.', '/')}`;

/** The settings that differ from what is wanted (a value that cannot be read counts as unmet), pure. */
export function unmetPrerequisites(values: ReadonlyMap<string, string | undefined>, wanted: readonly KernelPrerequisite[] = KERNEL_PREREQUISITES): { key: string; want: string; have: string | undefined; why: string }[] {
  return wanted.filter((p) => values.get(p.key)?.trim() !== p.want).map((p) => ({ key: p.key, want: p.want, have: values.get(p.key)?.trim(), why: p.why }));
}

export interface Readiness {
  ready: boolean;
  /** Why not ready: one line per unmet prerequisite. */
  notReady: string[];
  /** Settings this check had to set (they had drifted). */
  set: string[];
}

/** Reads the settings, sets what differs, reads again: ready when nothing differs after. */
export async function ensurePrerequisites(io: { read: (path: string) => Promise<string | undefined>; write: (path: string, value: string) => Promise<void> } = procSys, wanted: readonly KernelPrerequisite[] = KERNEL_PREREQUISITES): Promise<Readiness> {
  const readAll = async () => new Map(await Promise.all(wanted.map(async (p) => [p.key, await io.read(sysctlPath(p.key))] as const)));
  const before = unmetPrerequisites(await readAll(), wanted);
  const set: string[] = [];
  for (const u of before) {
    try {
      await io.write(sysctlPath(u.key), u.want);
      set.push(`${u.key}=${u.want} (was ${u.have ?? 'unreadable'})`);
    } catch {
      /* reported below as still unmet */
    }
  }
  const after = before.length ? unmetPrerequisites(await readAll(), wanted) : [];
  return { ready: after.length === 0, notReady: after.map((u) => `${u.key} is ${u.have ?? 'unreadable'}, needs ${u.want}: ${u.why}`), set };
}

const procSys = {
  read: (path: string) => readFile(path, 'utf8').catch(() => undefined),
  write: (path: string, value: string) => writeFile(path, value),
};
