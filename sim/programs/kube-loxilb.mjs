// kube-loxilb's calls to one agent, as its pkg/api does them (reimplemented, not its code):
// node kube-loxilb.mjs BASE_URL TOKEN_FILE LIFETIME_SECONDS SERVICE_JSON_FILE MAX_SECONDS
// - a token per host, from the file at start, believed to live LIFETIME_SECONDS (its
//   EXPIRY_TIME_SECONDS_<host>); five minutes before that ends, the next call first refreshes it:
//   GET <base>/netlox/v1/oauth//token?token=<token>&refreshtoken=<token at start> (its provider is
//   empty unless LOXI_OAUTH_PROVIDER is set), taking access_token and expires_in; a failed refresh
//   leaves the call without a token, as kube-loxilb sends none then;
// - a health check every 2 s (a GET with the token), and the service re-applied every 6 s (a POST);
// - every call that does not answer 200 is a failed call.
// Prints {"kube-loxilb":"ready"}, one {"failed": …} line per failed call, and on "report" (stdin) or
// at MAX_SECONDS a summary line {"calls","failed","refreshes","refreshFailed"}; "quit" ends it;
// "pause"/"resume" stop and restart the calls (the agent is down: kube-loxilb's health check says so).
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const [base, tokenFile, lifetimeText, serviceFile, maxText] = process.argv.slice(2);
const lifetimeMs = Number(lifetimeText) * 1000;
const startToken = readFileSync(tokenFile, 'utf8').split('\n')[0].trim();
const service = readFileSync(serviceFile, 'utf8');
let token = { value: startToken, expiresAt: Date.now() + lifetimeMs };
const counts = { calls: 0, failed: 0, refreshes: 0, refreshFailed: 0 };
const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

async function accessToken() {
  if (Date.now() < token.expiresAt - 300_000) return token.value;
  counts.refreshes++;
  try {
    const r = await fetch(`${base}/netlox/v1/oauth//token?token=${token.value}&refreshtoken=${startToken}`, { signal: AbortSignal.timeout(10_000) });
    if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
    const body = await r.json();
    token = { value: body.access_token, expiresAt: Date.now() + body.expires_in * 1000 };
    return token.value;
  } catch (e) {
    counts.refreshFailed++;
    say({ refreshFailed: e.message });
    return '';
  }
}

async function call(method, path, body) {
  counts.calls++;
  const t = await accessToken();
  const headers = { 'content-type': 'application/json', ...(t ? { authorization: t } : {}) };
  try {
    const r = await fetch(`${base}/netlox/v1${path}`, { method, headers, body, signal: AbortSignal.timeout(5000) });
    await r.arrayBuffer();
    if (r.status !== 200) {
      counts.failed++;
      say({ failed: `${method} ${path}`, status: r.status, at: Date.now() });
    }
  } catch (e) {
    counts.failed++;
    say({ failed: `${method} ${path}`, error: e.message, at: Date.now() });
  }
}

let tick = 0;
let paused = false;
const timer = setInterval(() => {
  if (paused) return;
  tick++;
  void call('GET', '/config/loadbalancer/all');
  if (tick % 3 === 0) void call('POST', '/config/loadbalancer', service);
}, 2000);
const report = () => say(counts);
say({ 'kube-loxilb': 'ready' });
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'report') report();
  // Its health check finds the agent gone: no calls to it until it is back.
  if (line === 'pause') paused = true;
  if (line === 'resume') paused = false;
  if (line === 'quit') {
    clearInterval(timer);
    report();
    process.exit(0);
  }
});
setTimeout(() => {
  clearInterval(timer);
  report();
  process.exit(0);
}, Number(maxText) * 1000).unref();
