// API load from inside an LB namespace (bench:datapath): kube-loxilb-shaped calls to the agent on
// 127.0.0.1:11111, bounded in count and time. Prints one JSON line.
//   api-load.mjs TOKEN single N            N sequential POST + DELETE of one more service: POST latencies
//   api-load.mjs TOKEN bulk N CLIENTS       N creates (services 20000+i) from CLIENTS concurrent clients
//   api-load.mjs TOKEN churn MS CLIENTS N   CLIENTS clients re-POST existing services 20000..20000+N-1 with changed endpoints for MS
//   api-load.mjs TOKEN churn-new MS CLIENTS  CLIENTS clients create a service never seen before and delete it, for MS
import { request } from 'node:http';

const [token, mode, a, b, c] = process.argv.slice(2);
const agent = new (await import('node:http')).Agent({ keepAlive: true, maxSockets: 64 });

function call(method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = request({ host: '127.0.0.1', port: 11111, method, path: `/netlox/v1${path}`, agent, headers: { authorization: token, 'content-type': 'application/json', ...(data ? { 'content-length': Buffer.byteLength(data) } : {}) } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => (res.statusCode === 200 || res.statusCode === 404 ? resolve(res.statusCode) : reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`))));
    });
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

const entry = (i, shift = 0) => ({
  serviceArguments: { externalIP: '100.100.100.100', privateIP: '100.64.248.254', port: 20000 + i, protocol: 'tcp', sel: 0, mode: 2, name: `load_${i}` },
  endpoints: Array.from({ length: 8 }, (_, k) => ({ endpointIP: `100.64.2.${((i * 8 + k + shift) % 250) + 1}`, targetPort: 30000 + (i % 2000), weight: 1 })),
});
const timed = async (fn) => {
  const t = performance.now();
  await fn();
  return performance.now() - t;
};
const pct = (xs, p) => {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

if (mode === 'single') {
  const times = [];
  for (let i = 0; i < Number(a); i++) {
    times.push(await timed(() => call('POST', '/config/loadbalancer', entry(9000))));
    await call('DELETE', '/config/loadbalancer/externalipaddress/100.100.100.100/port/29000/protocol/tcp');
  }
  console.log(JSON.stringify({ times }));
} else if (mode === 'bulk') {
  const n = Number(a);
  let next = 0;
  const t = performance.now();
  await Promise.all(Array.from({ length: Number(b) }, async () => {
    while (next < n) await call('POST', '/config/loadbalancer', entry(next++));
  }));
  console.log(JSON.stringify({ seconds: (performance.now() - t) / 1000 }));
} else if (mode === 'churn') {
  const until = performance.now() + Number(a);
  const n = Number(c);
  const times = [];
  let shift = 0;
  await Promise.all(Array.from({ length: Number(b) }, async () => {
    // Bounded in time and in count (20,000 calls at most).
    while (performance.now() < until && times.length < 40_000) {
      const i = Math.floor(Math.random() * n);
      times.push(await timed(() => call('POST', '/config/loadbalancer', entry(i, ++shift))));
    }
  }));
  console.log(JSON.stringify({ calls: times.length, p50: pct(times, 50), p99: pct(times, 99), max: Math.max(...times) }));
} else if (mode === 'churn-new') {
  // Every service new (ports 40000 + k, k counting up, wrapping at 20,000): keys the agent has never held.
  const until = performance.now() + Number(a);
  const times = [];
  let k = 0;
  await Promise.all(Array.from({ length: Number(b) }, async () => {
    while (performance.now() < until && times.length < 40_000) {
      const i = 20000 + (k++ % 20000);
      times.push(await timed(() => call('POST', '/config/loadbalancer', entry(i))));
      times.push(await timed(() => call('DELETE', `/config/loadbalancer/externalipaddress/100.100.100.100/port/${20000 + i}/protocol/tcp`)));
    }
  }));
  console.log(JSON.stringify({ calls: times.length, p50: pct(times, 50), p99: pct(times, 99), max: Math.max(...times) }));
}
agent.destroy();
