import { afterEach, describe, expect, it } from 'vitest';
import { fastPathDecision } from '../../agent/ha/fast-path.ts';
import { PeerLink, type PeerState } from '../../agent/ha/peer-link.ts';
import { livenessListener, silentPort } from '../harness/liveness.ts';
import { hostAnswers, tcpReach } from '../../agent/net/tcp-connects.ts';
import { encodeBeat, type PeerBeat, verifyBeat } from '../../agent/ha/peer-message.ts';
import { freePort } from '../../sim/moto.ts';
import { sleep, until } from '../../sim/flows.ts';

const key = Buffer.from('k'.repeat(48));
const now = 1_800_000_000_000;
const beat = (o: Partial<PeerBeat> = {}): PeerBeat => ({ v: 1, d: 'loxiha-sim', from: 1, id: 'i-0123456789abcdef0', role: 'MASTER', seq: 7, at: now, ...o });
const ctx = (o: Partial<Parameters<typeof verifyBeat>[1]> = {}) => ({ keys: [key], deploymentId: 'loxiha-sim', peers: new Set([1]), now, lastAt: new Map<number, number>(), ...o });

describe('peer heartbeat messages', () => {
  it('accepts a beat signed with the shared key', () => {
    expect(verifyBeat(encodeBeat(key, beat()), ctx())).toEqual({ ok: true, beat: beat() });
    // A rotation's overlap: a beat under the previous or the next key is accepted while both are held, not after.
    const next = Buffer.from('n'.repeat(48));
    expect(verifyBeat(encodeBeat(next, beat()), ctx({ keys: [key, next] }))).toEqual({ ok: true, beat: beat() });
    expect(verifyBeat(encodeBeat(key, beat()), ctx({ keys: [next, key] }))).toEqual({ ok: true, beat: beat() });
    expect(verifyBeat(encodeBeat(key, beat()), ctx({ keys: [next] }))).toEqual({ ok: false, reason: 'bad-mac' });
  });

  it('refuses, by reason: another key, a changed field, another deployment, an unknown peer, a stale or future beat, a replay, garbage', () => {
    const tampered = JSON.parse(encodeBeat(key, beat()).toString());
    tampered.role = 'BACKUP';
    const cases: [Buffer, Partial<Parameters<typeof verifyBeat>[1]>, string][] = [
      [encodeBeat(Buffer.from('x'.repeat(48)), beat()), {}, 'bad-mac'],
      [Buffer.from(JSON.stringify(tampered)), {}, 'bad-mac'],
      [encodeBeat(key, beat({ d: 'other' })), {}, 'wrong-deployment'],
      [encodeBeat(key, beat({ from: 2 })), {}, 'unknown-peer'],
      [encodeBeat(key, beat({ at: now - 11_000 })), {}, 'stale'],
      [encodeBeat(key, beat({ at: now + 11_000 })), {}, 'stale'],
      [encodeBeat(key, beat()), { lastAt: new Map([[1, now]]) }, 'replay'],
      [Buffer.from('not json'), {}, 'malformed'],
      [Buffer.from(JSON.stringify({ ...JSON.parse(encodeBeat(key, beat()).toString()), extra: 1 })), {}, 'malformed'],
      [Buffer.alloc(600, 0x20), {}, 'malformed'],
    ];
    for (const [datagram, c, reason] of cases) expect(verifyBeat(datagram, ctx(c)), reason).toEqual({ ok: false, reason });
  });
});

describe('fast path decision', () => {
  it('invokes when the backup loses the MASTER (move it) or the MASTER loses the backup (mark it), once the peer said its instance id', () => {
    expect(fastPathDecision({ role: 'MASTER', instanceId: 'i-0123456789abcdef0' }, 'BACKUP')).toEqual({
      invoke: true,
      request: { action: 'failover', from: 'i-0123456789abcdef0', reason: 'peer-heartbeat-lost' },
    });
    expect(fastPathDecision({ role: 'BACKUP', instanceId: 'i-0123456789abcdef0' }, 'MASTER')).toEqual({
      invoke: true,
      request: { action: 'failover', from: 'i-0123456789abcdef0', reason: 'peer-backup-lost' },
    });
    expect(fastPathDecision({ role: 'BACKUP', instanceId: 'i-0123456789abcdef0' }, 'BACKUP').invoke).toBe(false);
    expect(fastPathDecision({ role: 'MASTER', instanceId: 'i-0123456789abcdef0' }, 'MASTER').invoke).toBe(false);
    expect(fastPathDecision({ role: 'MASTER', instanceId: null }, 'BACKUP').invoke).toBe(false);
    expect(fastPathDecision({ role: undefined, instanceId: undefined }, 'BACKUP').invoke).toBe(false);
  });
});

describe('peer link over UDP', () => {
  const links: PeerLink[] = [];
  const afterCleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of afterCleanups.splice(0)) c();
    for (const l of links.splice(0)) l.stop();
  });

  async function pair(keyB = key) {
    const [pa, pb] = [await freePort(), await freePort()];
    const events: string[] = [];
    const lost: PeerState[] = [];
    const make = (index: number, port: number, peerPort: number, k: Buffer, role: PeerBeat['role']) =>
      new PeerLink({
        keys: () => [k],
        deploymentId: 'loxiha-sim',
        self: { index, ip: '127.0.0.1', port },
        peers: [{ index: 1 - index, ip: '127.0.0.1', port: peerPort }],
        intervalMs: 50,
        lossAfterMs: 300,
        me: () => ({ role, instanceId: `i-000000000000000${index}a` }),
        onLost: (p) => {
          events.push(`${index} lost ${p.index}`);
          lost.push(p);
        },
        onBack: (p) => events.push(`${index} back ${p.index}`),
        onRejected: (reason) => events.push(`${index} rejected ${reason}`),
      });
    const a = make(0, pa, pb, key, 'MASTER');
    const b = make(1, pb, pa, keyB, 'BACKUP');
    links.push(a, b);
    await a.start();
    await b.start();
    return { a, b, events, lost };
  }

  it('hears the peer, reports it lost once when it stops, and back when it returns', async () => {
    const { a, b, events, lost } = await pair();
    await until('b hears a', () => b.peers.get(0)?.role === 'MASTER');
    expect(b.peers.get(0)).toMatchObject({ role: 'MASTER', instanceId: 'i-0000000000000000a', lost: false });
    a.stop();
    await until('b loses a', () => events.includes('1 lost 0'));
    await sleep(400); // reported once: no second report while a stays silent
    expect(events.filter((e) => e === '1 lost 0')).toHaveLength(1);
    expect(lost[0]).toMatchObject({ role: 'MASTER', instanceId: 'i-0000000000000000a' });
    await a.start();
    await until('a is back for b', () => events.includes('1 back 0'));
    expect(b.peers.get(0)!.lost).toBe(false);
  });

  /** A pair at production timing (100 ms beats, 500 ms silence) with the TCP second check; `b` watches `a`. */
  async function productionPair() {
    const [pa, pb, ta] = [await freePort(), await freePort(), await freePort()];
    // Where b's check connects: a's port, or (once a's host is dead) a port that answers nothing.
    const dark = await freePort();
    const silent = await silentPort('127.0.0.1', dark);
    afterCleanups.push(() => silent.close());
    let target = ta;
    let listener = await livenessListener('127.0.0.1', ta);
    const lostAt: number[] = [];
    const aliveButSilent: number[] = [];
    const make = (index: number, port: number, peerPort: number, role: PeerBeat['role']) =>
      new PeerLink({
        keys: () => [key],
        deploymentId: 'loxiha-sim',
        self: { index, ip: '127.0.0.1', port },
        peers: [{ index: 1 - index, ip: '127.0.0.1', port: peerPort }],
        intervalMs: 100,
        lossAfterMs: 500,
        me: () => ({ role, instanceId: `i-000000000000000${index}a` }),
        onLost: () => lostAt.push(Date.now()),
        onBack: () => undefined,
        onRejected: () => undefined,
        confirmAlive: index === 1 ? async () => hostAnswers(await tcpReach('127.0.0.1', target, 300)) : undefined,
        onSilentButAlive: () => aliveButSilent.push(Date.now()),
      });
    const a = make(0, pa, pb, 'MASTER');
    const b = make(1, pb, pa, 'BACKUP');
    links.push(a, b);
    await a.start();
    await b.start();
    await until('each hears the other', () => a.peers.get(1)?.lastHeardAt !== undefined && b.peers.get(0)?.lastHeardAt !== undefined);
    return {
      a,
      b,
      lostAt,
      aliveButSilent,
      // The host dies: no beats, and its port answers nothing (no connection, no reset).
      killA: () => {
        a.stop();
        listener.close();
        target = dark;
      },
      // Only the agent goes (a restart): no beats, nothing listens, the host's kernel resets the connection.
      stopAgentOfA: () => (a.stop(), listener.close()),
      reviveListener: async () => (listener = await livenessListener('127.0.0.1', ta)),
      closeListener: () => listener.close(),
    };
  }

  it('loses a dead peer (no beats, its host answers nothing) in under a second and a half, not 3.5 s', async () => {
    const p = await productionPair();
    const t0 = Date.now();
    p.killA();
    await until('a is lost', () => p.lostAt.length > 0, 5000);
    await sleep(300);
    expect(p.lostAt).toHaveLength(1);
    // The bound is 1 s (bench:peer-detect measures it over 20 runs); the test allows for a loaded CI machine, and fails on the old 3.5 s.
    expect(p.lostAt[0]! - t0).toBeLessThan(1500);
  });

  it('does not lose a peer whose agent is down while its host resets the connection (an agent restart is not a failover), and hears it back', async () => {
    const p = await productionPair();
    p.stopAgentOfA();
    await until('the silence is noticed and checked', () => p.aliveButSilent.length > 0, 5000);
    await sleep(1500); // still not lost while the agent stays down
    expect(p.lostAt).toEqual([]);
    // The restarted agent beats again: heard, never having been lost.
    await p.reviveListener();
    await p.a.start();
    await until('a heard again', () => Date.now() - (p.b.peers.get(0)?.lastHeardAt ?? 0) < 200, 5000);
    expect(p.lostAt).toEqual([]);
  });

  it('does not lose a peer that is silent on the heartbeat channel while its kernel still answers (a stalled or busy peer)', async () => {
    const p = await productionPair();
    p.a.stop(); // beats stop, but the TCP listener stays: the peer's kernel is there
    await until('the silence is noticed and checked', () => p.aliveButSilent.length > 0, 5000);
    await sleep(1000); // and still not lost a second later
    expect(p.lostAt).toEqual([]);
    expect(p.aliveButSilent).toHaveLength(1);
    p.closeListener();
  });

  it('does not lose a peer because this process stalled: silence during its own stall does not count', async () => {
    const p = await productionPair();
    // This process's event loop blocked for 1.5 s (GC, CPU starvation); the peer kept beating meanwhile.
    const stallEnd = Date.now() + 1500;
    while (Date.now() < stallEnd) {
      /* busy */
    }
    await until('the stall is seen', () => p.b.stalls >= 1, 5000);
    await sleep(600); // beats resume; the stall's silence never counts as the peer's
    expect(p.lostAt).toEqual([]);
    expect(p.b.stalls).toBeGreaterThanOrEqual(1);
    p.closeListener();
  });

  it('never accepts a peer with another key: it is never heard, so never lost either', async () => {
    const { b, events } = await pair(Buffer.from('z'.repeat(48)));
    await until('several beats refused', () => (b.rejected.get('bad-mac') ?? 0) > 3);
    expect(b.peers.get(0)!.lastHeardAt).toBeUndefined();
    expect(b.rejected.get('bad-mac')).toBeGreaterThan(3);
    expect(events.some((e) => e.includes('lost'))).toBe(false);
  });
});

describe('the second check: what a TCP connect to the peer’s sync port says about its host', () => {
  it('connected, refused (a reset: the host is up, its agent is not) and no answer (a dead or dark host) are told apart', async () => {
    const [open, closed, dark] = [await freePort(), await freePort(), await freePort()];
    const listener = await livenessListener('127.0.0.1', open);
    const silent = await silentPort('127.0.0.1', dark);
    try {
      expect(await tcpReach('127.0.0.1', open, 300)).toBe('connected');
      expect(await tcpReach('127.0.0.1', closed, 300)).toBe('refused');
      const t0 = Date.now();
      expect(await tcpReach('127.0.0.1', dark, 300)).toBe('no-answer');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
      // The rule: a host that answers, either way, is alive.
      expect([hostAnswers('connected'), hostAnswers('refused'), hostAnswers('no-answer')]).toEqual([true, true, false]);
    } finally {
      listener.close();
      silent.close();
    }
  });
});
