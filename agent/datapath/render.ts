/**
 * What the kernel gets. Pure: services (+ endpoint health, + counter values to carry over)
 * → the complete nftables text for the agent's own table, applied as one transaction.
 *
 * Per-packet cost does not grow with the number of services: one verdict-map lookup
 * picks the service chain (new connections only: nat chains see the first packet), one
 * rule there picks the endpoint from a slot map; established packets see three set/map
 * lookups (mid-stream guard, allowed sources, counters). SNAT goes to the service's VIP
 * (full-NAT), so replies return to whichever instance holds the VIP, and conntrack
 * entries mean the same thing on both instances (session sync). Hash seeds are fixed so
 * both instances pick the same endpoint for the same flow.
 */
import { createHash } from 'node:crypto';
import { type Endpoint, endpointKey, MODE, SELECTION, type Service, serviceAddresses, serviceKey } from '../services/model.ts';
import { fnv1a, maglevSlots, MAGLEV_SLOTS, prioritySlots, weightedSlots } from './slots.ts';

/** ct mark high bits: 0x4c48xxxx full-NAT (xxxx = index of the VIP to SNAT to), 0x4c44xxxx plain DNAT. */
export const MARK = { fullnat: 0x4c480000, dnat: 0x4c440000, ours: 0x4c000000 } as const;

export interface CounterValue {
  packets: number;
  bytes: number;
}

export interface RenderInput {
  table: string;
  services: Service[];
  /** `${serviceKey}#${endpointKey}` of endpoints whose probe says down. */
  down: ReadonlySet<string>;
  hashSeed: number;
  /** Counter values read from the kernel just before, so a replace does not zero them. */
  counters?: ReadonlyMap<string, CounterValue>;
  /** Interfaces for the flowtable fast path, when the kernel has flowtables. */
  flowtableDevices?: string[];
}

export interface Rendered {
  text: string;
  /** Hash of the desired state (without counter values): equal hashes mean nothing to apply. */
  hash: string;
  /** Service key → its chain and counter name. */
  names: Map<string, string>;
  /** Endpoint counter names → `${ip}:${port}/${proto}`. */
  endpointCounters: Map<string, string>;
}

const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;

/** Stable per-service name: the same service keeps its chain and counter across applies and restarts. */
export function serviceName(s: Pick<Service, 'externalIP' | 'port' | 'protocol'>): string {
  return `svc_${fnv1a(serviceKey(s)).toString(16).padStart(8, '0')}`;
}

export function endpointCounterName(e: Pick<Endpoint, 'ip' | 'port'>, protocol: string): string {
  return `ep_${fnv1a(`${endpointKey(e)}/${protocol}`).toString(16).padStart(8, '0')}`;
}

export function liveEndpoints(s: Service, down: ReadonlySet<string>): Endpoint[] {
  const key = serviceKey(s);
  return s.endpoints.filter((e) => !down.has(`${key}#${endpointKey(e)}`));
}

function slotsFor(s: Service, live: Endpoint[]): Endpoint[] {
  switch (s.sel) {
    case SELECTION.hash:
    case SELECTION.persist:
      return maglevSlots(live);
    case SELECTION.priority:
      return prioritySlots(live);
    default:
      return weightedSlots(live);
  }
}

function selector(s: Service, slots: number, seed: number): string {
  switch (s.sel) {
    case SELECTION.hash:
      return `jhash ip saddr . th sport mod ${MAGLEV_SLOTS} seed ${hex(seed)}`;
    case SELECTION.persist:
      return `jhash ip saddr mod ${MAGLEV_SLOTS} seed ${hex(seed)}`;
    default:
      return `numgen inc mod ${slots}`;
  }
}

const elements = (items: string[]) => (items.length ? `\n\t\telements = { ${items.join(',\n\t\t\t')} }` : '');

export function render(input: RenderInput): Rendered {
  const services = [...input.services].sort((a, b) => serviceKey(a).localeCompare(serviceKey(b)));
  const vips = [...new Set(services.filter((s) => s.mode === MODE.fullnat).map((s) => s.privateIP ?? s.externalIP))].sort();
  const vipIndex = new Map(vips.map((v, i) => [v, i + 1]));
  const names = new Map<string, string>();
  const endpointCounters = new Map<string, string>();
  const seenNames = new Set<string>();

  const serviceMap: string[] = [];
  const svcCounterMap: string[] = [];
  const counterDecls: string[] = [];
  const chains: string[] = [];
  const restricted: string[] = [];
  const allowed: string[] = [];
  const allAddresses = new Set<string>();
  const endpointSet = new Set<string>();
  const epCounterMap = new Map<string, string>();

  const counter = (name: string) => {
    const v = input.counters?.get(name);
    return `\tcounter ${name} {${v ? ` packets ${v.packets} bytes ${v.bytes}` : ''} }`;
  };

  for (const s of services) {
    const name = serviceName(s);
    if (seenNames.has(name)) throw new Error(`service name collision for ${serviceKey(s)}`);
    seenNames.add(name);
    names.set(serviceKey(s), name);
    counterDecls.push(counter(name));
    const addrs = serviceAddresses(s);
    for (const a of addrs) {
      allAddresses.add(a);
      serviceMap.push(`${a} . ${s.protocol} . ${s.port} : jump ${name}`);
      svcCounterMap.push(`${a} . ${s.protocol} . ${s.port} : "${name}"`);
      if (s.allowedSources.length) {
        restricted.push(`${a} . ${s.protocol} . ${s.port}`);
        for (const p of s.allowedSources) allowed.push(`${a} . ${s.protocol} . ${s.port} . ${p}`);
      }
    }
    for (const e of s.endpoints) {
      endpointSet.add(`${e.ip} . ${s.protocol} . ${e.port}`);
      const cn = endpointCounterName(e, s.protocol);
      if (!epCounterMap.has(cn)) {
        epCounterMap.set(cn, `${e.ip} . ${s.protocol} . ${e.port} : "${cn}"`);
        endpointCounters.set(cn, `${endpointKey(e)}/${s.protocol}`);
      }
    }
    const live = liveEndpoints(s, input.down);
    const slots = slotsFor(s, live);
    const mark = s.mode === MODE.fullnat ? MARK.fullnat | vipIndex.get(s.privateIP ?? s.externalIP)! : MARK.dnat;
    const body = slots.length
      ? `meta l4proto ${s.protocol} ct mark set ${hex(mark)} dnat ip to ${selector(s, slots.length, input.hashSeed)} map { ${slots.map((e, i) => `${i} : ${e.ip} . ${e.port}`).join(', ')} }`
      : `counter drop comment "no live endpoint"`;
    chains.push(`\tchain ${name} {\n\t\tcomment "${s.name.replace(/"/g, '')} ${serviceKey(s)}"\n\t\t${body}\n\t}`);
  }
  for (const cn of [...epCounterMap.keys()].sort()) counterDecls.push(counter(cn));

  const desired = [
    `\tset vips {\n\t\ttype ipv4_addr${elements([...allAddresses].sort())}\n\t}`,
    `\tset endpoints {\n\t\ttype ipv4_addr . inet_proto . inet_service${elements([...endpointSet].sort())}\n\t}`,
    `\tset restricted {\n\t\ttype ipv4_addr . inet_proto . inet_service${elements(restricted.sort())}\n\t}`,
    `\tset allowed {\n\t\ttype ipv4_addr . inet_proto . inet_service . ipv4_addr\n\t\tflags interval${elements([...new Set(allowed)].sort())}\n\t}`,
    `\tmap svc_counters {\n\t\ttype ipv4_addr . inet_proto . inet_service : counter${elements(svcCounterMap)}\n\t}`,
    `\tmap ep_counters {\n\t\ttype ipv4_addr . inet_proto . inet_service : counter${elements([...epCounterMap.values()].sort())}\n\t}`,
    `\tmap services {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict${elements(serviceMap)}\n\t}`,
    `\tmap snat_to {\n\t\ttype mark : ipv4_addr${elements(vips.map((v) => `${hex(MARK.fullnat | vipIndex.get(v)!)} : ${v}`))}\n\t}`,
    ...(input.flowtableDevices?.length
      ? [`\tflowtable fastpath {\n\t\thook ingress priority filter\n\t\tdevices = { ${input.flowtableDevices.join(', ')} }\n\t}`]
      : []),
    `\tchain filter_pre {\n\t\ttype filter hook prerouting priority -140; policy accept;`,
    // A mid-stream packet from an endpoint to the VIP that conntrack does not know (a flow not
    // yet synced after a failover) is dropped, not answered with a reset by the local stack.
    `\t\tip daddr @vips ip saddr . meta l4proto . th sport @endpoints ct state new,invalid drop`,
    `\t\tip daddr . meta l4proto . th dport @restricted ip daddr . meta l4proto . th dport . ip saddr != @allowed counter drop`,
    `\t\tct direction original counter name ip daddr . meta l4proto . th dport map @svc_counters`,
    `\t}`,
    `\tchain nat_pre {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tip daddr . meta l4proto . th dport vmap @services\n\t}`,
    ...chains,
    `\tchain nat_post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tct mark and 0xffff0000 == ${hex(MARK.fullnat)} snat ip to ct mark map @snat_to\n\t}`,
    `\tchain filter_post {\n\t\ttype filter hook postrouting priority 200; policy accept;\n\t\tct direction original ct mark and 0xff000000 == ${hex(MARK.ours)} counter name ip daddr . meta l4proto . th dport map @ep_counters\n\t}`,
    ...(input.flowtableDevices?.length ? [`\tchain filter_fwd {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tct mark and 0xff000000 == ${hex(MARK.ours)} meta l4proto { tcp, udp } flow add @fastpath\n\t}`] : []),
  ].join('\n');
  const hash = createHash('sha256').update(desired).digest('hex').slice(0, 16);
  const table = `ip ${input.table}`;
  const text = [
    `table ${table} {}`,
    `delete table ${table}`,
    `table ${table} {`,
    `\tcomment "loxiha ${hash}"`,
    ...counterDecls,
    desired,
    `}`,
    '',
  ].join('\n');
  return { text, hash, names, endpointCounters };
}
