/**
 * How the agent runs once it syncs sessions: ahead of ordinary work on the host, as conntrackd does
 * (a real-time round-robin scheduler by default). A flow streamed late is lost if the owner dies
 * meanwhile, and the stream has four processes in line (event reader, owner's agent, receiver's
 * agent, writer): at ordinary priority on a busy two-core host each waited for a time slice (p99
 * 20–50 ms at 10,000 new flows/s; 7–9 ms real-time, BENCHMARKS.md). Thin adapter: `chrt` (util-linux,
 * on Amazon Linux 2023 by default) sets every thread of this process; the helpers started after it
 * inherit the policy.
 */
import { spawnSync } from 'node:child_process';
import { setPriority } from 'node:os';

/** The nice value when real-time scheduling is off or refused. */
export const SYNC_NICE = -10;

export type SyncScheduling = { kind: 'realtime'; priority: number } | { kind: 'nice'; nice: number; why: string } | { kind: 'ordinary'; why: string };

/** The `chrt` arguments that put every thread of `pid` under SCHED_RR at `priority` (pure). */
export const realtimeCommand = (pid: number, priority: number): [string, string[]] => ['chrt', ['--all-tasks', '--rr', '--pid', String(priority), String(pid)]];

/**
 * Raises this process: SCHED_RR at `realtimePriority` (1–99), or, when that is 0 or refused (no
 * CAP_SYS_NICE, no real-time budget in this cgroup, no chrt), nice SYNC_NICE; says which, and why.
 */
export function raiseForSync(realtimePriority: number, io: { run: (cmd: string, args: string[]) => { error?: Error; status: number | null; stderr?: string | Buffer | null }; nice: (n: number) => void } = { run: (cmd, args) => spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] }), nice: (n) => setPriority(n) }): SyncScheduling {
  let why = 'real-time scheduling off in the configuration (sync.realtimePriority 0)';
  if (realtimePriority > 0) {
    const [cmd, args] = realtimeCommand(process.pid, realtimePriority);
    const r = io.run(cmd, args);
    if (!r.error && r.status === 0) return { kind: 'realtime', priority: realtimePriority };
    why = `real-time scheduling refused: ${r.error?.message ?? (String(r.stderr ?? '').trim().split('\n').at(-1) || `chrt exit ${r.status}`)}`;
  }
  try {
    io.nice(SYNC_NICE);
    return { kind: 'nice', nice: SYNC_NICE, why };
  } catch (e) {
    return { kind: 'ordinary', why: `${why}; nice ${SYNC_NICE} refused too: ${(e as Error).message}` };
  }
}
