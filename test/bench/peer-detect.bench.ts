/**
 * npm run bench:peer-detect — how long after a peer agent dies the backup declares it lost (and
 * so invokes the fast path), at the production timing: beats every 100 ms, suspected after 500 ms
 * of silence, confirmed by a TCP connection to the peer (refused: dead). Two links over loopback,
 * 20 deaths; side by side with the previous rule (1 s beats, lost after 3.5 s, no second check).
 * Prints one JSON line per rule.
 */
import { PeerLink } from '../../agent/ha/peer-link.ts';
import { livenessListener, silentPort } from '../harness/liveness.ts';
import { hostAnswers, tcpReach } from '../../agent/net/tcp-connects.ts';
import { freePort } from '../../sim/moto.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 20);
const key = Buffer.from('k'.repeat(48));

async function once(intervalMs: number, lossAfterMs: number, confirm: boolean): Promise<number> {
  const [pa, pb, ta] = [await freePort(), await freePort(), await freePort()];
  // Where the check connects: the live host's port, then (at its death) one that answers nothing.
  const dark = await freePort();
  const silent = confirm ? await silentPort('127.0.0.1', dark) : undefined;
  let target = ta;
  const listener = await livenessListener('127.0.0.1', ta);
  let lostAt = 0;
  const make = (index: number, port: number, peerPort: number) =>
    new PeerLink({
      keys: () => [key],
      deploymentId: 'bench',
      self: { index, ip: '127.0.0.1', port },
      peers: [{ index: 1 - index, ip: '127.0.0.1', port: peerPort }],
      intervalMs,
      lossAfterMs,
      me: () => ({ role: index === 0 ? 'MASTER' : 'BACKUP', instanceId: null }),
      onLost: () => (lostAt = Date.now()),
      onBack: () => undefined,
      onRejected: () => undefined,
      confirmAlive: confirm && index === 1 ? async () => hostAnswers(await tcpReach('127.0.0.1', target, 300)) : undefined,
    });
  const a = make(0, pa, pb);
  const b = make(1, pb, pa);
  await a.start();
  await b.start();
  // A random moment within a beat interval, after both have heard each other.
  await new Promise((r) => setTimeout(r, 4 * intervalMs + Math.random() * intervalMs));
  const died = Date.now();
  a.stop();
  listener.close();
  // The host is gone: its port answers nothing from now on (a reset would say its kernel is alive).
  target = dark;
  const deadline = died + lossAfterMs + 5000;
  while (!lostAt && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  b.stop();
  silent?.close();
  if (!lostAt) throw new Error('the peer was never declared lost');
  return lostAt - died;
}

const stat = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s.at(-1)!, runs: s.length };
};
for (const [path, interval, loss, confirm] of [
  ['loxiha: 100 ms beats, 500 ms silence + TCP check', 100, 500, true],
  ['previous: 1 s beats, lost after 3.5 s', 1000, 3500, false],
] as const) {
  const times: number[] = [];
  for (let i = 0; i < (confirm ? RUNS : Math.min(RUNS, 5)); i++) times.push(await once(interval, loss, confirm));
  console.log(JSON.stringify({ metric: 'peer-detect-ms', path, ...stat(times), ...(confirm ? { targetMax: 1000 } : {}) }));
}
