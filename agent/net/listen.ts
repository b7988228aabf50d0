/** Starts a TCP server listening: resolves once it is, rejects with the bind error; later errors are ignored (the caller's sockets report their own). */
import type { Server } from 'node:net';

export async function listen(server: Server, port: number, ip: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, ip, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', () => undefined);
}
