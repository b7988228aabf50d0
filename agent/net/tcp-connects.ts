/**
 * TCP reachability of ip:port within `timeoutMs`, never throwing: `connected`; `refused` (a reset:
 * the host's kernel answered, nothing listens — an agent restarting); or `no-answer` (a timeout, or
 * the network says the host is unreachable: a dead or dark host).
 */
import { connect, type Socket } from 'node:net';

export type TcpReach = 'connected' | 'refused' | 'no-answer';

export function tcpReach(ip: string, port: number, timeoutMs: number): Promise<TcpReach> {
  return new Promise((resolve) => {
    let s: Socket;
    try {
      s = connect({ host: ip, port, timeout: timeoutMs });
    } catch {
      return resolve('no-answer');
    }
    const done = (r: TcpReach) => {
      s.destroy();
      resolve(r);
    };
    s.once('connect', () => done('connected'));
    s.once('timeout', () => done('no-answer'));
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' ? 'refused' : 'no-answer'));
  });
}

/** Whether a TCP connection to ip:port completes within `timeoutMs` (refused, unreachable or slow: false). */
export async function tcpConnects(ip: string, port: number, timeoutMs: number): Promise<boolean> {
  return (await tcpReach(ip, port, timeoutMs)) === 'connected';
}

/**
 * The peer check's rule: a host whose kernel answers on the sync port — a connection, or a reset
 * because its agent is restarting (an upgrade, a crash, systemd's restart) — is alive: its kernel
 * still forwards every flow from the rules the agent left in place, and moving the VIP would cost
 * the sessions for nothing. Only a host that answers nothing is lost. An agent that stays down is
 * the heartbeat alarm's to judge (the function sees its CloudWatch heartbeats stop).
 */
export const hostAnswers = (r: TcpReach) => r === 'connected' || r === 'refused';
