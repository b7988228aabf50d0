#!/usr/bin/env node
/**
 * `loxiha get ha|lb|ep|ct [-o json] [--api URL] [--token-file FILE]`: the agent's state as
 * loxicmd prints it (| INSTANCE | HASTATE | …), or as JSON for scripts. Without --token-file it
 * sends the instance's API token when /etc/loxiha/api-token exists (as on AWS).
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { AGENT_API_TOKEN_FILE } from '../lib/contract.ts';
import { BASE } from './api/server.ts';

type Row = Record<string, string | number>;

/** A loxicmd-style table: | A | B | with a dashed rule under the header. */
export function table(headers: string[], rows: (string | number)[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i] ?? '').length)));
  const line = (cells: (string | number)[]) => `| ${cells.map((c, i) => String(c).padEnd(widths[i]!)).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** Rejections by reason; the kernel's refusals with their errno names, e.g. `kernel-refused=3(ENOENT=2,EBUSY=1)`. */
function rejectedCell(rejected: Record<string, number> | undefined, byErrno: Record<string, number> | undefined): string {
  return Object.entries(rejected ?? {})
    .map(([k, v]) => {
      const errnos = k === 'kernel-refused' ? Object.entries(byErrno ?? {}).map(([e, n]) => `${e}=${n}`).join(',') : '';
      return `${k}=${v}${errnos ? `(${errnos})` : ''}`;
    })
    .join(' ');
}

const VIEWS: Record<string, { path: string; headers: string[]; rows: (body: any) => (string | number)[][]; json: (body: any) => unknown }> = {
  ha: {
    path: '/config/cistate/all',
    headers: ['INSTANCE', 'HASTATE', 'READY', 'SYNC', 'STATE', 'LAG(s)', 'ENTRIES', 'RESYNCS', 'REJECTED'],
    rows: (b) =>
      b.Attr.map((a: any) => [a.instance, a.state, a.ready === undefined ? '' : a.ready ? 'yes' : `no: ${(a.notReady ?? []).join('; ')}`, a.syncMode ?? '', a.syncState ?? '', a.syncLagSeconds ?? '', a.syncEntries ?? '', a.syncResyncs ?? '', rejectedCell(a.syncRejected, a.syncKernelRefused)]),
    json: (b) => b.Attr,
  },
  lb: {
    path: '/config/loadbalancer/all',
    headers: ['EXT IP', 'PRIVATE IP', 'PORT', 'PROTO', 'NAME', 'MARK', 'SEL', 'MODE', 'ENDPOINT', 'EPORT', 'WEIGHT', 'STATE', 'COUNTERS'],
    rows: (b) =>
      b.lbAttr.flatMap((e: any) =>
        (e.endpoints.length ? e.endpoints : [{}]).map((ep: any, i: number) =>
          i === 0
            ? [e.serviceArguments.externalIP, e.serviceArguments.privateIP, e.serviceArguments.port, e.serviceArguments.protocol, e.serviceArguments.name, e.serviceArguments.block, ['rr', 'hash', 'priority', 'persist'][e.serviceArguments.sel] ?? e.serviceArguments.sel, e.serviceArguments.mode === 2 ? 'fullnat' : 'default', ep.endpointIP ?? '', ep.targetPort ?? '', ep.weight ?? '', ep.state ?? '', ep.counter ?? '']
            : ['', '', '', '', '', '', '', '', ep.endpointIP, ep.targetPort, ep.weight, ep.state, ep.counter],
        ),
      ),
    json: (b) => b.lbAttr,
  },
  ep: {
    path: '/config/endpoint/all',
    headers: ['HOST', 'NAME', 'PTYPE', 'RETRIES', 'STATE', 'AVG DELAY'],
    rows: (b) => b.Attr.map((a: Row) => [a.hostName!, a.name!, a.probeType!, a.inactiveReTries!, a.currState!, a.avgDelay!]),
    json: (b) => b.Attr,
  },
  ct: {
    path: '/config/conntrack/all',
    headers: ['SERVICE NAME', 'DESTIP', 'SRCIP', 'DPORT', 'SPORT', 'PROTO', 'STATE', 'ACT', 'PACKETS', 'BYTES'],
    rows: (b) => b.ctAttr.map((c: Row) => [c.servName!, c.destinationIP!, c.sourceIP!, c.destinationPort!, c.sourcePort!, c.protocol!, c.conntrackState!, c.conntrackAct!, c.packets!, c.bytes!]),
    json: (b) => b.ctAttr,
  },
};

export const USAGE = `usage: loxiha get ${Object.keys(VIEWS).join('|')} [-o table|json] [--api URL] [--token-file FILE]
       loxiha wait-ready [--timeout SECONDS] [--api URL] [--token-file FILE]

  get ha    the HA role (MASTER when this instance holds the VIP)
  get lb    load balancers with their endpoints, state and counters
  get ep    endpoint probes
  get ct    connections of the load-balanced services (conntrack)
  wait-ready  exits 0 once the agent reports ready (its kernel prerequisites hold and, as a
              backup, it serves the owner's services), 1 with the reasons when it does not
              within --timeout (default 300 s)

  -o json            JSON instead of a table
  --api URL          the agent's API (default http://127.0.0.1:11111)
  --token-file FILE  the API token (default ${AGENT_API_TOKEN_FILE} when it exists)
  -h, --help         this text`;

/** Runs the CLI; `out` gets what goes to stdout, `err` one line per error. Returns the exit code. */
export async function cli(argv: string[], out: (s: string) => void = (s) => process.stdout.write(`${s}\n`), err: (s: string) => void = (s) => process.stderr.write(`${s}\n`)): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { output: { type: 'string', short: 'o', default: 'table' }, api: { type: 'string', default: 'http://127.0.0.1:11111' }, 'token-file': { type: 'string' }, timeout: { type: 'string', default: '300' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (e) {
    err(`error: ${(e as Error).message}`);
    out(USAGE);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help || positionals[0] === 'help') {
    out(USAGE);
    return 0;
  }
  const [verb, what] = positionals;
  const view = verb === 'wait-ready' ? VIEWS.ha : what ? VIEWS[what] : undefined;
  const timeoutS = Number(values.timeout);
  if ((verb !== 'get' && verb !== 'wait-ready') || !view || !['table', 'json'].includes(values.output!) || !(timeoutS > 0)) {
    out(USAGE);
    return 2;
  }
  const headers: Record<string, string> = {};
  const tokenFile = values['token-file'] ?? (existsSync(AGENT_API_TOKEN_FILE) ? AGENT_API_TOKEN_FILE : undefined);
  if (tokenFile) {
    try {
      headers.authorization = `Bearer ${readFileSync(tokenFile, 'utf8').trim()}`;
    } catch (e) {
      err(`error: cannot read the API token from ${tokenFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      return 1;
    }
  }
  const url = `${values.api}${BASE}${view.path}`;
  if (verb === 'wait-ready') return waitReady(url, headers, timeoutS * 1000, out, err);
  const got = await getJson(url, headers);
  if ('error' in got) {
    err(`error: ${got.error}`);
    return 1;
  }
  out(values.output === 'json' ? JSON.stringify(view.json(got.body), null, 2) : table(view.headers, view.rows(got.body)));
  return 0;
}

/** GET `url` as JSON; an error says what went wrong in one line. */
async function getJson(url: string, headers: Record<string, string>): Promise<{ body: any } | { error: string }> {
  let r: Response;
  try {
    r = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    return { error: `cannot reach the agent at ${url}: ${cause?.code ?? cause?.message ?? (e as Error).message}` };
  }
  let body: unknown;
  try {
    body = await r.json();
  } catch {
    return { error: `${url} answered ${r.status} with something that is not JSON` };
  }
  if (!r.ok) return { error: `${url} answered ${r.status}: ${(body as { message?: string }).message ?? ''}` };
  return { body };
}

/** How often wait-ready asks the agent. */
const WAIT_READY_EVERY_MS = 1000;

/**
 * Waits until the agent reports ready (every HA entry `ready: true`), as a new instance does before
 * it tells CloudFormation it is in service; says why not when it gives up.
 */
async function waitReady(url: string, headers: Record<string, string>, timeoutMs: number, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const until = Date.now() + timeoutMs;
  let why = 'no answer yet';
  for (;;) {
    const got = await getJson(url, headers);
    if ('error' in got) why = got.error;
    else {
      // cistate says ready as LoxiLB-style 1/0.
      const entries = (got.body?.Attr ?? []) as { ready?: number | boolean; notReady?: string[] }[];
      if (entries.length > 0 && entries.every((a) => a.ready === 1 || a.ready === true)) {
        out('ready');
        return 0;
      }
      why = entries.length === 0 ? 'the agent reports no HA state yet' : `not ready: ${entries.flatMap((a) => (a.ready === undefined ? ['readiness not reported yet'] : (a.notReady ?? []))).join('; ') || 'no reason given'}`;
    }
    if (Date.now() + WAIT_READY_EVERY_MS > until) {
      err(`error: the agent did not report ready within ${Math.round(timeoutMs / 1000)} s (${why})`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, WAIT_READY_EVERY_MS));
  }
}

if (import.meta.main) cli(process.argv.slice(2)).then((code) => process.exit(code), (e: Error) => {
  process.stderr.write(`error: ${e.message}\n`);
  process.exit(1);
});
