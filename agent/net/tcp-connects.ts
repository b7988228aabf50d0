/** Whether a TCP connection to ip:port completes within `timeoutMs` (refused, unreachable or slow: false). Never throws. */
import { connect, type Socket } from 'node:net';

export function tcpConnects(ip: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let s: Socket;
    try {
      s = connect({ host: ip, port, timeout: timeoutMs });
    } catch {
      return resolve(false);
    }
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('timeout', () => done(false));
    s.once('error', () => done(false));
  });
}
