/**
 * Bodies of the LoxiLB REST API operations the agent implements (field names as in
 * loxilb-swagger.yml). kube-loxilb's Go client matches names case-insensitively, so
 * keys are folded to the spec's spelling before validation; unknown keys are rejected.
 */
import { z } from 'zod';
import { HA_ROLE, ipv4Schema as ipv4 } from '../../lib/contract.ts';
import { ipToInt, parseCidr } from '../../lib/net/cidr.ts';
import { MODE, type Service, SELECTION } from '../services/model.ts';

const port = z.number().int().min(1).max(65535);

const serviceArguments = z
  .object({
    externalIP: ipv4,
    privateIP: ipv4.optional(),
    port,
    portMax: z.number().int().min(0).max(65535).optional(),
    protocol: z.enum(['tcp', 'udp', 'sctp', 'icmp']).default('tcp'),
    sel: z.number().int().min(0).max(6).default(0),
    bgp: z.boolean().default(false),
    monitor: z.boolean().default(false),
    probetype: z.enum(['tcp', 'udp', 'sctp', 'http', 'https', 'ping', 'none', '']).default('none'),
    probeport: z.number().int().min(0).max(65535).default(0),
    probereq: z.string().max(1024).default(''),
    proberesp: z.string().max(1024).default(''),
    managed: z.boolean().default(false),
    mode: z.number().int().min(0).max(5).default(0),
    security: z.number().int().min(0).max(2).default(0),
    block: z.number().int().min(0).max(0xffffffff).default(0),
    inactiveTimeOut: z.number().int().min(0).max(86400 * 7).default(0),
    probeTimeout: z.number().int().min(0).max(3600).default(0),
    probeRetries: z.number().int().min(0).max(100).default(0),
    name: z.string().max(253).regex(/^[\w.:/-]*$/, 'may hold letters, digits and . _ : / - only').default(''),
    snat: z.boolean().default(false),
    oper: z.number().int().min(0).max(2).default(0),
    host: z.string().max(253).default(''),
    proxyprotocolv2: z.boolean().default(false),
    egress: z.boolean().default(false),
  })
  .strict();

const endpoint = z
  .object({
    endpointIP: ipv4,
    targetPort: port,
    weight: z.number().int().min(0).max(65535),
    state: z.string().max(32).optional(),
    counter: z.string().max(64).optional(),
  })
  .strict();

/**
 * Why an address can never be an endpoint (undefined when it can): traffic to it would go nowhere
 * or back to this host. Checked on every endpoint an API call brings.
 */
export function unusableEndpoint(ip: string): string | undefined {
  const n = ipToInt(ip);
  if (n === undefined) return 'not an IPv4 address';
  const inNet = (net: string, prefix: number) => n >>> (32 - prefix) === ipToInt(net)! >>> (32 - prefix);
  if (n === 0xffffffff) return 'the broadcast address';
  if (inNet('0.0.0.0', 8)) return 'an address of "this network" (0.0.0.0/8)';
  if (inNet('127.0.0.0', 8)) return 'a loopback address';
  if (inNet('224.0.0.0', 4)) return 'a multicast address';
  if (inNet('240.0.0.0', 4)) return 'a reserved address (240.0.0.0/4)';
  return undefined;
}

export const loadbalanceEntrySchema = z
  .object({
    serviceArguments,
    // A service without endpoints comes as `"endpoints": null` from Go clients (a nil slice).
    endpoints: z.array(endpoint).max(1024).nullable(),
    // Older kube-loxilb builds send `"secondaryIPs": null` (a nil Go slice): the same as none.
    secondaryIPs: z.array(z.object({ secondaryIP: ipv4 }).strict()).max(16).nullish(),
    allowedSources: z
      .array(z.object({ prefix: z.string().refine((p) => parseCidr(p.includes('/') ? p : `${p}/32`) !== undefined, 'must be an IPv4 prefix (a.b.c.d/n)') }).strict())
      .max(1024)
      .nullish(),
  })
  .strict()
  .superRefine((e, ctx) => {
    const a = e.serviceArguments;
    const unsupported = (path: string[], message: string) => ctx.addIssue({ code: 'custom', path: ['serviceArguments', ...path], message });
    if (a.protocol !== 'tcp' && a.protocol !== 'udp') unsupported(['protocol'], `${a.protocol} is not supported by this datapath (tcp, udp)`);
    if (a.mode !== MODE.dnat && a.mode !== MODE.fullnat) unsupported(['mode'], `NAT mode ${a.mode} is not supported (0 dnat, 2 fullnat)`);
    if (a.sel > SELECTION.persist) unsupported(['sel'], `selection ${a.sel} is not supported (0 rr, 1 hash, 2 priority, 3 persist)`);
    if (a.portMax && a.portMax !== a.port) unsupported(['portMax'], 'port ranges are not supported');
    if (a.probetype === 'sctp') unsupported(['probetype'], 'sctp probes are not supported');
    const seen = new Set<string>();
    // The service's own addresses: an endpoint there would loop traffic back into the load balancer.
    const own = new Set([a.externalIP, a.privateIP].filter((x) => x && x !== '0.0.0.0'));
    (e.endpoints ?? []).forEach((ep, i) => {
      const k = `${ep.endpointIP}:${ep.targetPort}`;
      const why = unusableEndpoint(ep.endpointIP) ?? (own.has(ep.endpointIP) ? "the service's own address" : undefined);
      if (why) ctx.addIssue({ code: 'custom', path: ['endpoints', i, 'endpointIP'], message: `${ep.endpointIP} can never be an endpoint: it is ${why}` });
      if (seen.has(k)) ctx.addIssue({ code: 'custom', path: ['endpoints', i], message: `duplicate endpoint ${k}` });
      seen.add(k);
    });
    const badAddress = unusableEndpoint(a.externalIP);
    if (badAddress) unsupported(['externalIP'], `${a.externalIP} cannot be a service address: it is ${badAddress}`);
  });

export type LoadbalanceEntry = z.infer<typeof loadbalanceEntrySchema>;

export const ciStateSchema = z
  .object({
    instance: z.string().max(64).default('llb-inst0'),
    state: z.enum(Object.values(HA_ROLE) as [string, ...string[]]),
    vip: ipv4.default('0.0.0.0'),
  })
  .strict();

const CANONICAL = new Map(
  ['serviceArguments', 'endpoints', 'secondaryIPs', 'allowedSources', ...Object.keys(serviceArguments.shape), ...Object.keys(endpoint.shape), 'secondaryIP', 'prefix', 'instance', 'state', 'vip'].map((k) => [k.toLowerCase(), k]),
);

/** Folds keys to the spec's spelling (Go's JSON decoding is case-insensitive: `BGP`, `Monitor`). */
export function foldKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(foldKeys);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [CANONICAL.get(k.toLowerCase()) ?? k, foldKeys(x)]));
}

export function toService(e: LoadbalanceEntry): Service {
  const a = e.serviceArguments;
  return {
    name: a.name,
    externalIP: a.externalIP,
    privateIP: a.privateIP && a.privateIP !== '0.0.0.0' ? a.privateIP : undefined,
    port: a.port,
    protocol: a.protocol as 'tcp' | 'udp',
    sel: a.sel as Service['sel'],
    mode: a.mode as Service['mode'],
    monitor: a.monitor,
    probe: {
      type: (a.probetype === '' ? 'none' : a.probetype) as Service['probe']['type'],
      port: a.probeport,
      req: a.probereq,
      resp: a.proberesp,
      retries: a.probeRetries || 2,
      timeoutSeconds: a.probeTimeout || 3,
    },
    inactiveTimeOut: a.inactiveTimeOut,
    block: a.block,
    managed: a.managed,
    bgp: a.bgp,
    endpoints: (e.endpoints ?? []).map((x) => ({ ip: x.endpointIP, port: x.targetPort, weight: x.weight })),
    allowedSources: (e.allowedSources ?? []).map((x) => (x.prefix.includes('/') ? x.prefix : `${x.prefix}/32`)),
    secondaryIPs: (e.secondaryIPs ?? []).map((x) => x.secondaryIP),
  };
}

export function describeZodError(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ');
}
