// Inside a namespace, forwards TCP ports on its loopback to Unix sockets served outside it (the
// AWS emulator, the IMDS stand-in): node ns-forward.mjs PORT=SOCKET [PORT=SOCKET ...]
import { connect, createServer } from 'node:net';

const pairs = process.argv.slice(2).map((a) => {
  const [port, path] = a.split('=');
  if (!/^\d+$/.test(port ?? '') || !path) {
    console.error(`bad argument ${a}: want PORT=SOCKET`);
    process.exit(2);
  }
  return { port: Number(port), path };
});
let up = 0;
for (const { port, path } of pairs) {
  createServer((inbound) => {
    const out = connect(path);
    inbound.pipe(out).pipe(inbound);
    const close = () => {
      inbound.destroy();
      out.destroy();
    };
    inbound.on('error', close);
    out.on('error', close);
  }).listen(port, '127.0.0.1', () => {
    if (++up === pairs.length) console.log('forwarding');
  });
}
