/**
 * Endpoint health: TCP connect, UDP exchange, HTTP(S) GET and ICMP ping probes with
 * kube-loxilb's settings (probetype, probeport, probereq, proberesp, probeRetries, probeTimeout).
 * An endpoint goes down after `retries` consecutive failures and comes back on a success.
 */
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tcpConnects } from './net/tcp-connects.ts';
import { type Endpoint, endpointKey, type Probe, type Service, serviceKey } from './services/model.ts';

export type ProbeFn = (ip: string, port: number, probe: Probe) => Promise<boolean>;

function udpProbe(ip: string, port: number, probe: Probe, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    let settled = false;
    const done = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.close();
      resolve(ok);
    };
    // Without an expected answer, silence counts as up and an ICMP port-unreachable (ECONNREFUSED) as down.
    const timer = setTimeout(() => done(!probe.resp), timeoutMs);
    s.on('error', () => done(false));
    s.on('message', (m) => done(!probe.resp || m.toString().includes(probe.resp)));
    // A connect that fails (no route, a broadcast address) still calls back, on a socket that is
    // not connected: send() would then read the callback as a port and throw out of the event loop.
    guard(done, () =>
      s.connect(port, ip, () => {
        if (settled) return;
        guard(done, () => {
          s.remoteAddress(); // throws ERR_SOCKET_DGRAM_NOT_CONNECTED when the connect failed
          s.send(probe.req || 'loxiha-probe', (e) => e && done(false));
        });
      }),
    );
  });
}

/** Runs `fn`; anything it throws is a failed probe, never an exception out of a socket callback. */
function guard(done: (ok: boolean) => void, fn: () => void): void {
  try {
    fn();
  } catch {
    done(false);
  }
}

function httpProbe(ip: string, port: number, probe: Probe, timeoutMs: number, tls: boolean): Promise<boolean> {
  return new Promise((resolve) => {
    const path = probe.req.startsWith('/') ? probe.req : `/${probe.req}`;
    const opts = { host: ip, port, path, method: 'GET', timeout: timeoutMs, headers: { 'user-agent': 'loxiha-probe' }, rejectUnauthorized: false };
    const req = (tls ? httpsRequest : httpRequest)(opts, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 65536) body += d;
      });
      res.on('end', () => resolve((res.statusCode ?? 500) < 400 && (!probe.resp || body.includes(probe.resp))));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(false));
    req.end();
  });
}

function pingProbe(ip: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const p = spawn('ping', ['-n', '-q', '-c', '1', '-W', String(Math.max(1, Math.ceil(timeoutMs / 1000))), ip], { stdio: 'ignore' });
    p.on('error', () => resolve(false));
    p.on('close', (code) => resolve(code === 0));
  });
}

/** Never throws and never rejects: whatever goes wrong in a probe marks its endpoint down, nothing more. */
export const defaultProbe: ProbeFn = async (ip, port, probe) => {
  try {
    return await runProbe(ip, port, probe);
  } catch {
    return false;
  }
};

const runProbe: ProbeFn = (ip, port, probe) => {
  const timeoutMs = probe.timeoutSeconds * 1000;
  const p = probe.port || port;
  switch (probe.type) {
    case 'tcp':
      return tcpConnects(ip, p, timeoutMs);
    case 'udp':
      return udpProbe(ip, p, probe, timeoutMs);
    case 'http':
      return httpProbe(ip, p, probe, timeoutMs, false);
    case 'https':
      return httpProbe(ip, p, probe, timeoutMs, true);
    case 'ping':
      return pingProbe(ip, timeoutMs);
    default:
      return Promise.resolve(true);
  }
};

interface Target {
  service: string;
  endpoint: Endpoint;
  probe: Probe;
  failures: number;
  up: boolean;
  lastChange: number;
  lastMs: number[];
  timer?: NodeJS.Timeout;
  running: boolean;
}

export interface EndpointState {
  service: string;
  endpoint: string;
  probeType: Probe['type'];
  up: boolean;
  failures: number;
  lastMs: number[];
}

/** Runs one probe loop per (service, endpoint) with monitoring on; reports up/down changes. */
export class Prober {
  private readonly targets = new Map<string, Target>();
  private readonly probe: ProbeFn;
  private readonly intervalMs: number;
  private readonly onChange: (down: ReadonlySet<string>) => void;

  constructor(opts: { intervalMs: number; onChange: (down: ReadonlySet<string>) => void; probe?: ProbeFn }) {
    this.intervalMs = opts.intervalMs;
    this.onChange = opts.onChange;
    this.probe = opts.probe ?? defaultProbe;
  }

  /** Keys `${serviceKey}#${endpointKey}` of endpoints that are down. */
  down(): Set<string> {
    return new Set([...this.targets].filter(([, t]) => !t.up).map(([k]) => k));
  }

  states(): EndpointState[] {
    return [...this.targets.values()].map((t) => ({ service: t.service, endpoint: endpointKey(t.endpoint), probeType: t.probe.type, up: t.up, failures: t.failures, lastMs: t.lastMs }));
  }

  /**
   * Makes the probe loops match the services: removed ones stop; new targets start up (they take
   * traffic at once) unless `lastDown` (verdicts saved before a restart) says they were down.
   */
  sync(services: Service[], lastDown: ReadonlySet<string> = new Set()): void {
    const wanted = new Map<string, { service: string; endpoint: Endpoint; probe: Probe }>();
    for (const s of services) {
      if (!s.monitor || s.probe.type === 'none') continue;
      for (const e of s.endpoints) wanted.set(`${serviceKey(s)}#${endpointKey(e)}`, { service: serviceKey(s), endpoint: e, probe: s.probe });
    }
    let changed = false;
    for (const [k, t] of this.targets) {
      const w = wanted.get(k);
      if (!w || JSON.stringify(w.probe) !== JSON.stringify(t.probe)) {
        clearTimeout(t.timer);
        this.targets.delete(k);
        if (!t.up) changed = true;
      }
    }
    for (const [k, w] of wanted) {
      if (this.targets.has(k)) continue;
      const wasDown = lastDown.has(k);
      const t: Target = { ...w, failures: wasDown ? w.probe.retries : 0, up: !wasDown, lastChange: Date.now(), lastMs: [], running: true };
      this.targets.set(k, t);
      this.schedule(k, t, Math.random() * Math.min(this.intervalMs, 1000));
    }
    if (changed) this.onChange(this.down());
  }

  stop(): void {
    for (const t of this.targets.values()) {
      t.running = false;
      clearTimeout(t.timer);
    }
    this.targets.clear();
  }

  private schedule(key: string, t: Target, delay: number): void {
    t.timer = setTimeout(async () => {
      if (!t.running || this.targets.get(key) !== t) return;
      const started = performance.now();
      // A probe function that throws, even synchronously, only marks the endpoint down.
      const ok = await Promise.resolve()
        .then(() => this.probe(t.endpoint.ip, t.endpoint.port, t.probe))
        .catch(() => false);
      if (!t.running || this.targets.get(key) !== t) return;
      t.lastMs = [...t.lastMs.slice(-9), Math.round(performance.now() - started)];
      const wasUp = t.up;
      if (ok) {
        t.failures = 0;
        t.up = true;
      } else {
        t.failures++;
        if (t.failures >= t.probe.retries) t.up = false;
      }
      if (wasUp !== t.up) {
        t.lastChange = Date.now();
        this.onChange(this.down());
      }
      this.schedule(key, t, this.intervalMs);
    }, delay);
    t.timer.unref();
  }
}
