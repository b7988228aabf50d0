/**
 * What the peers' second check connects to, where only the peer link runs (tests,
 * bench:peer-detect): accepts and closes, reads nothing, says nothing. In the agent the
 * session-sync receiver plays this part on the sync port.
 */
import { createServer, type Server } from 'node:net';
import { listen } from '../../agent/net/listen.ts';

export async function livenessListener(ip: string, port: number): Promise<Server> {
  const server = createServer((c) => c.destroy());
  await listen(server, port, ip);
  server.unref();
  return server;
}
