/**
 * What the peers' second check connects to, where only the peer link runs (tests,
 * bench:peer-detect): accepts and closes, reads nothing, says nothing. In the agent the
 * session-sync receiver plays this part on the sync port.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { listen } from '../../agent/net/listen.ts';

export async function livenessListener(ip: string, port: number): Promise<Server> {
  const server = createServer((c) => c.destroy());
  await listen(server, port, ip);
  server.unref();
  return server;
}

/**
 * A port whose host answers nothing, as a dead or dark host looks to a TCP connect (no connection,
 * no reset: the connect times out): a listener that never accepts, its one-slot queue filled, so
 * that the kernel drops every further SYN. Python, because Node accepts whatever arrives.
 */
export async function silentPort(ip: string, port: number): Promise<{ close: () => void }> {
  const child = spawn('python3', ['-c', SILENT_PORT_PY, ip, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the silent port helper exited ${code}`)));
  });
  child.unref();
  return { close: () => child.kill('SIGKILL') };
}

const SILENT_PORT_PY = `
import socket, sys, time
ip, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, port))
s.listen(0)
held = []
for _ in range(3):
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect((ip, port))
    except BlockingIOError:
        pass
    held.append(c)
time.sleep(0.3)
print('ready', flush=True)
sys.stdin.read()
`;
