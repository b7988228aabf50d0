/**
 * Once it syncs sessions the agent runs real-time (as conntrackd does by default), or says why not
 * and runs at nice -10; the kernel's side is exercised by every e2e test that starts agents as root.
 */
import { describe, expect, it } from 'vitest';
import { agentConfigSchema } from '../../lib/contract.ts';
import { raiseForSync, realtimeCommand, SYNC_NICE } from '../../agent/sync/scheduling.ts';

describe('the agent’s scheduling while it syncs sessions', () => {
  it('puts every thread of the agent under SCHED_RR at the configured priority', () => {
    const calls: [string, string[]][] = [];
    const niced: number[] = [];
    const r = raiseForSync(10, { run: (cmd, args) => (calls.push([cmd, args]), { status: 0 }), nice: (n) => niced.push(n) });
    expect(r).toEqual({ kind: 'realtime', priority: 10 });
    expect(calls).toEqual([realtimeCommand(process.pid, 10)]);
    expect(calls[0]![1]).toEqual(['--all-tasks', '--rr', '--pid', '10', String(process.pid)]);
    expect(niced).toEqual([]);
  });

  it('falls back to nice -10 and says why when real-time is refused, or off', () => {
    const niced: number[] = [];
    const refused = raiseForSync(10, { run: () => ({ status: 1, stderr: 'chrt: failed to set pid 7\'s policy: Operation not permitted\n' }), nice: (n) => niced.push(n) });
    expect(refused).toEqual({ kind: 'nice', nice: SYNC_NICE, why: "real-time scheduling refused: chrt: failed to set pid 7's policy: Operation not permitted" });
    const missing = raiseForSync(10, { run: () => ({ error: new Error('spawnSync chrt ENOENT'), status: null }), nice: (n) => niced.push(n) });
    expect(missing).toMatchObject({ kind: 'nice', why: 'real-time scheduling refused: spawnSync chrt ENOENT' });
    const off = raiseForSync(0, { run: () => { throw new Error('not called'); }, nice: (n) => niced.push(n) });
    expect(off).toMatchObject({ kind: 'nice', why: expect.stringMatching(/off in the configuration/) });
    expect(niced).toEqual([-10, -10, -10]);
    const neither = raiseForSync(10, { run: () => ({ status: 1, stderr: '' }), nice: () => { throw new Error('EACCES'); } });
    expect(neither).toMatchObject({ kind: 'ordinary', why: expect.stringMatching(/chrt exit 1; nice -10 refused too: EACCES/) });
  });

  it('is real-time at priority 10 unless configured; the priority is bounded', () => {
    const base = { deploymentId: 'd', instanceIndex: 0, selfIp: '100.64.2.11', peers: [], vip: '100.64.248.254', cloudCidrBlock: '100.64.248.0/24' };
    const parse = (sync: object) => agentConfigSchema.safeParse({ ...base, sync });
    const ok = parse({});
    expect(ok.success && ok.data.sync.realtimePriority).toBe(10);
    const off = parse({ realtimePriority: 0 });
    expect(off.success && off.data.sync.realtimePriority).toBe(0);
    expect(parse({ realtimePriority: 100 }).success).toBe(false);
    expect(parse({ realtimePriority: -1 }).success).toBe(false);
  });
});
