/**
 * The part of LoxiLB's REST API (basePath /netlox/v1) that kube-loxilb uses. Non-GET
 * successes answer 200 {"result":"Success"}; invalid bodies 400 with a message and no change.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { ConntrackEntry } from '../conntrack.ts';
import type { Datapath } from '../datapath/controller.ts';
import type { EndpointState } from '../probes.ts';
import { endpointKey, type Service, serviceAddresses, serviceKey } from '../services/model.ts';
import { type Oper, RejectedChange, type ServiceRegistry } from '../services/registry.ts';
import { ciStateSchema, describeZodError, foldKeys, loadbalanceEntrySchema, toService } from './schemas.ts';

export const BASE = '/netlox/v1';
const MAX_BODY = 1 << 20;

export interface ApiDeps {
  /** The services: changes are applied to the kernel and persisted before the call answers. */
  registry: ServiceRegistry;
  /** Counters come from the kernel. */
  datapath: Pick<Datapath, 'counters'>;
  endpointStates: () => EndpointState[];
  conntrack: () => Promise<ConntrackEntry[]>;
  /** The HA role; with session sync running, its state too (extra fields LoxiLB's clients ignore). */
  role: () => { instance: string; state: string; vip: string; sync: number } & Partial<Record<'syncMode' | 'syncState', string> & Record<'syncLagSeconds' | 'syncEntries' | 'syncResyncs', number> & { syncRejected: Record<string, number>; syncKernelRefused: Record<string, number> }>;
  onRolePush: (push: { instance: string; state: string; vip: string }) => void;
  /** Several VIP groups: a row per group after the agent's own (its role for that group, its VIP, in sync for it). */
  groupRoles?: () => Array<{ instance: string; state: string; vip: string; sync: number; syncMode: string; syncState: string }>;
  /** The service as this agent serves it (several VIP groups: on its group's VIP); unset: as asked. */
  served?: (s: Service) => Service;
  /** The API token; or, to follow a rotation, the tokens accepted now (any of them; empty: none required). */
  token?: string | (() => readonly string[]);
  /** Told which accepted token opened each call: a rotation waits until the callers use the new one. */
  onAuthorized?: (token: string) => void;
  /**
   * kube-loxilb's token refresh (`GET /oauth/{provider}/token?token=…&refreshtoken=…`, no header):
   * answered with the newest token (a rotation's pending one once held) when either parameter is a
   * token this agent accepts; unset, the path is not served.
   */
  refresh?: { newest: () => string | undefined; lifetimeSeconds: number };
  log: (msg: string, extra?: Record<string, unknown>) => void;
}

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `body larger than ${MAX_BODY} bytes`);
    chunks.push(c as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'body is not valid JSON');
  }
}

/** The LoxiLB LoadbalanceEntry view of a service, with live endpoint state and counters. */
export function toEntry(s: Service, dp: Pick<ServiceRegistry, 'isDown'>, counters?: { service: { packets: number; bytes: number }; endpoints: Map<string, { packets: number; bytes: number }> }) {
  return {
    serviceArguments: {
      externalIP: s.externalIP,
      privateIP: s.privateIP ?? '',
      port: s.port,
      protocol: s.protocol,
      sel: s.sel,
      mode: s.mode,
      bgp: s.bgp,
      monitor: s.monitor,
      probetype: s.probe.type,
      probeport: s.probe.port,
      probereq: s.probe.req,
      proberesp: s.probe.resp,
      probeRetries: s.probe.retries,
      probeTimeout: s.probe.timeoutSeconds,
      inactiveTimeOut: s.inactiveTimeOut,
      block: s.block,
      managed: s.managed,
      name: s.name,
    },
    endpoints: s.endpoints.map((e) => {
      const c = counters?.endpoints.get(endpointKey(e));
      return { endpointIP: e.ip, targetPort: e.port, weight: e.weight, state: dp.isDown(s, e) ? 'inactive' : 'active', counter: c ? `${c.packets}:${c.bytes}` : '0:0' };
    }),
    secondaryIPs: s.secondaryIPs.map((secondaryIP) => ({ secondaryIP })),
    allowedSources: s.allowedSources.map((prefix) => ({ prefix })),
    counter: counters ? `${counters.service.packets}:${counters.service.bytes}` : '0:0',
  };
}

export function createApi(d: ApiDeps): Server {
  const accepted = (): readonly string[] => (typeof d.token === 'function' ? d.token() : d.token ? [d.token] : []);
  /** The accepted token `text` is, compared in constant time; undefined when none. */
  const match = (text: string): string | undefined => {
    const given = Buffer.from(text);
    // During a rotation's overlap the previous, the current and the pending token all open the API.
    return accepted().find((t) => {
      const want = Buffer.from(t);
      return given.length === want.length && timingSafeEqual(given, want);
    });
  };
  const authorized = (req: IncomingMessage): boolean => {
    if (accepted().length === 0) return true;
    // kube-loxilb sends the token bare (`Authorization: <token>`, from its ACCESS_TOKEN_<host> variable); others send `Bearer <token>`.
    const h = (req.headers.authorization ?? '').trim();
    const token = match(/^bearer /i.test(h) ? h.slice(7).trim() : h);
    if (token !== undefined) d.onAuthorized?.(token);
    return token !== undefined;
  };

  /** Runs a registry change; a change that can never apply is the caller's error (400), not ours. */
  const change = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof RejectedChange) throw new HttpError(400, e.message);
      throw e;
    }
  };

  const routes = async (req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): Promise<void> => {
    const method = req.method ?? 'GET';
    if (path === '' || path === '/') {
      if (method !== 'GET') throw new HttpError(405, 'method not allowed');
      return send(res, 200, { status: 'ok' });
    }
    // kube-loxilb asks `oauth//token` when LOXI_OAUTH_PROVIDER is unset (its provider is then empty), `oauth/google/token` otherwise.
    if (d.refresh && /^\/oauth\/[\w-]{0,32}\/token$/.test(path)) {
      if (method !== 'GET') throw new HttpError(405, 'method not allowed');
      const given = [query.get('token') ?? '', query.get('refreshtoken') ?? ''].filter(Boolean);
      const newest = d.refresh.newest();
      if (accepted().length === 0 || newest === undefined) throw new HttpError(404, 'no API token configured: nothing to refresh');
      if (!given.some((g) => match(g) !== undefined)) {
        d.log('token refresh refused: neither token given is accepted');
        return send(res, 401, { message: 'token and refreshtoken are not accepted here' });
      }
      // kube-loxilb reads access_token/expires_in; LoxiLB's swagger names them token/expiresin.
      const lifetime = d.refresh.lifetimeSeconds;
      return send(res, 200, { access_token: newest, token_type: 'Bearer', expires_in: lifetime, token: newest, expiresin: lifetime });
    }
    if (!authorized(req)) throw new HttpError(401, 'missing or wrong API token');

    if (path === '/config/loadbalancer' && method === 'POST') {
      const parsed = loadbalanceEntrySchema.safeParse(foldKeys(await readJson(req)));
      if (!parsed.success) throw new HttpError(400, describeZodError(parsed.error));
      const service = d.served ? d.served(toService(parsed.data)) : toService(parsed.data);
      await change(() => d.registry.set(service, parsed.data.serviceArguments.oper as Oper));
      d.log('load balancer set', { service: serviceKey(service), endpoints: service.endpoints.length });
      return send(res, 200, { result: 'Success' });
    }

    if (path === '/config/loadbalancer/all' && method === 'GET') {
      const counters = await d.datapath.counters();
      return send(res, 200, { lbAttr: d.registry.list().map((s) => toEntry(s, d.registry, counters.get(serviceKey(s)))) });
    }
    if (path === '/config/loadbalancer/all' && method === 'DELETE') {
      await change(() => d.registry.deleteAll());
      return send(res, 200, { result: 'Success' });
    }

    // LoxiLB's two delete paths: without `portmax`, and with it (kube-loxilb builds the latter for a
    // Service port given as a range). A range is refused at creation, so `portmax` must be 0 or the
    // port itself: the same delete; anything else is a range this agent never held (400, nothing changes).
    const byTuple = /^\/config\/loadbalancer\/externalipaddress\/([\d.]+)\/port\/(\d+)(?:\/portmax\/(\d+))?\/protocol\/(tcp|udp|sctp|icmp)$/.exec(path);
    if (byTuple && method === 'DELETE') {
      const port = Number(byTuple[2]);
      const portMax = byTuple[3] === undefined ? 0 : Number(byTuple[3]);
      if (portMax !== 0 && portMax !== port) throw new HttpError(400, `port ranges are not supported: portmax must be 0 or the port (${port}), got ${byTuple[3]}`);
      const key = serviceKey({ externalIP: byTuple[1]!, port, protocol: byTuple[4] as 'tcp' });
      // LoxiLB answers a delete of an absent rule 200 {"result":"no-rule error"}; kube-loxilb reads that
      // as a failure and, when every instance says so, requeues the delete forever. Its client treats
      // any other status as done, so the same words with 404 end its retries (docs/loxilb.md).
      if ((await change(() => d.registry.delete(key))) === 0) {
        return send(res, 404, { code: 404, result: 'no-rule error', message: `no load balancer ${byTuple[1]}:${port}/${byTuple[4]}` });
      }
      return send(res, 200, { result: 'Success' });
    }

    const byName = /^\/config\/loadbalancer\/name\/([\w.:/-]{1,253})$/.exec(path);
    if (byName && method === 'DELETE') {
      const name = decodeURIComponent(byName[1]!);
      // As LoxiLB: deleting by a name nothing carries is a success that changes nothing.
      await change(() => d.registry.deleteByName(name));
      return send(res, 200, { result: 'Success' });
    }

    if (path === '/config/cistate/all' && method === 'GET') return send(res, 200, { Attr: [d.role(), ...(d.groupRoles?.() ?? [])] });
    if (path === '/config/cistate' && method === 'POST') {
      const parsed = ciStateSchema.safeParse(foldKeys(await readJson(req)));
      if (!parsed.success) throw new HttpError(400, describeZodError(parsed.error));
      d.onRolePush(parsed.data);
      return send(res, 200, { result: 'Success' });
    }

    if (path === '/config/endpoint/all' && method === 'GET') {
      return send(res, 200, {
        Attr: d.endpointStates().map((e) => ({
          hostName: e.endpoint.split(':')[0],
          name: `${e.service}#${e.endpoint}`,
          probeType: e.probeType,
          inactiveReTries: e.failures,
          currState: e.up ? 'green' : 'red',
          minDelay: e.lastMs.length ? `${Math.min(...e.lastMs)}ms` : '',
          avgDelay: e.lastMs.length ? `${Math.round(e.lastMs.reduce((a, b) => a + b, 0) / e.lastMs.length)}ms` : '',
          maxDelay: e.lastMs.length ? `${Math.max(...e.lastMs)}ms` : '',
        })),
      });
    }

    if (path === '/config/conntrack/all' && method === 'GET') {
      const services = d.registry.list();
      const ours = new Map<string, Service>();
      for (const s of services) for (const a of serviceAddresses(s)) ours.set(`${a}|${s.port}|${s.protocol}`, s);
      const entries = (await d.conntrack()).filter((c) => ours.has(`${c.dst}|${c.dport}|${c.protocol}`));
      return send(res, 200, {
        ctAttr: entries.map((c) => ({
          sourceIP: c.src,
          destinationIP: c.dst,
          sourcePort: c.sport,
          destinationPort: c.dport,
          protocol: c.protocol,
          conntrackState: c.state.toLowerCase(),
          conntrackAct: `fdnat-${c.replySrc},${c.replySport}:${c.replyDst},${c.replyDport}`,
          packets: c.packets ?? 0,
          bytes: c.bytes ?? 0,
          servName: ours.get(`${c.dst}|${c.dport}|${c.protocol}`)!.name,
        })),
      });
    }
    throw new HttpError(404, `no route ${method} ${BASE}${path}`);
  };

  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://agent');
    if (!url.pathname.startsWith(BASE)) return send(res, 404, { code: 404, message: 'not found' });
    routes(req, res, url.pathname.slice(BASE.length).replace(/\/$/, ''), url.searchParams).catch((e: unknown) => {
      const status = e instanceof HttpError ? e.status : 500;
      if (status >= 500) d.log('request failed', { path: url.pathname, error: (e as Error).message });
      if (!res.headersSent) send(res, status, { code: status, message: (e as Error).message, result: 'Failed' });
    });
  });
}
