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

const VIEWS: Record<string, { path: string; headers: string[]; rows: (body: any) => (string | number)[][]; json: (body: any) => unknown }> = {
  ha: {
    path: '/config/cistate/all',
    headers: ['INSTANCE', 'HASTATE'],
    rows: (b) => b.Attr.map((a: Row) => [a.instance!, a.state!]),
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

export async function cli(argv: string[], out: (s: string) => void = (s) => process.stdout.write(`${s}\n`)): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { output: { type: 'string', short: 'o', default: 'table' }, api: { type: 'string', default: 'http://127.0.0.1:11111' }, 'token-file': { type: 'string' } },
  });
  const [verb, what] = positionals;
  const view = what ? VIEWS[what] : undefined;
  if (verb !== 'get' || !view || !['table', 'json'].includes(values.output!)) {
    out(`usage: loxiha get ${Object.keys(VIEWS).join('|')} [-o json] [--api URL] [--token-file FILE]`);
    return 2;
  }
  const headers: Record<string, string> = {};
  const tokenFile = values['token-file'] ?? (existsSync(AGENT_API_TOKEN_FILE) ? AGENT_API_TOKEN_FILE : undefined);
  if (tokenFile) headers.authorization = `Bearer ${readFileSync(tokenFile, 'utf8').trim()}`;
  const r = await fetch(`${values.api}${BASE}${view.path}`, { headers });
  const body = await r.json();
  if (!r.ok) {
    out(`error: ${r.status} ${(body as { message?: string }).message ?? ''}`);
    return 1;
  }
  out(values.output === 'json' ? JSON.stringify(view.json(body), null, 2) : table(view.headers, view.rows(body)));
  return 0;
}

if (import.meta.main) cli(process.argv.slice(2)).then((code) => process.exit(code), (e: Error) => {
  console.error(`error: ${e.message}`);
  process.exit(1);
});
