/**
 * What the kernel gets. Pure: services (+ endpoint health, + counter values to carry over)
 * → the nftables state of the agent's own table, as a full transaction or as the diff
 * from what was applied before.
 *
 * The per-packet cost does not grow with the number of services, and neither does the
 * number of chains: services are grouped by how they pick an endpoint (round-robin over N
 * slots, flow hash, client hash) and protocol. A new connection costs one verdict-map lookup
 * (service → its group's chain), then one rule: mark the connection with the service's id
 * and DNAT through the group's slot map, keyed by (VIP, proto, port, selector) where the
 * selector is `numgen inc mod N` or a `jhash` with a fixed seed. Established packets cost one
 * `ct state` test and one counter rule. SNAT goes to the service's VIP (full-NAT), so replies
 * return to whichever instance holds the VIP and conntrack entries mean the same on both
 * instances (session sync); the fixed seed makes both pick the same endpoint for a flow.
 */
import { type AddressAliases, type Endpoint, endpointKey, MODE, SELECTION, type Service, serviceAddresses, serviceKey } from '../services/model.ts';
import { Ledger } from './ledger.ts';
import { cmp, fnv1a, MAGLEV_SLOTS, maglevSlots, prioritySlots, weightedSlots } from './slots.ts';

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
  /** Counter values read from the kernel just before (by element), so a replace does not zero them. */
  counters?: ReadonlyMap<string, CounterValue>;
  /** Interfaces for the flowtable fast path, when the kernel has flowtables. */
  flowtableDevices?: string[];
  /** The routing mark of a service's VIP group, when not the default group's. */
  routeMarkOf?: (s: Service) => number | undefined;
}

export interface Rendered {
  text: string;
  /** Hash of the desired state (without counter values): equal hashes mean nothing to apply. */
  hash: string;
}

const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;

/**
 * The bit every service's ct mark carries: session sync asks conntrack for this bit alone
 * (`--mark 0x80000000/0x80000000`), so the host's own connections are never streamed.
 */
export const SERVICE_MARK_BIT = 0x80000000;

/**
 * The packet mark the load-balanced flows' packets carry into routing: while this host holds the
 * VIP's interface, a policy rule on this bit sends them out through it (agent/ha/vip-path.ts).
 */
export const ROUTE_MARK_BIT = 0x40000000;

/**
 * The routing mark of the VIP group at position k ≥ 1 (the default group's is ROUTE_MARK_BIT): k in
 * bits 24–28, apart from the slot index the packet mark carries below (< 2^8) and from
 * ROUTE_MARK_BIT, so each group's rule matches its own flows alone (agent/ha/vip-path.ts).
 */
export const GROUP_ROUTE_MARK_MASK = 0x1f000000;
export function groupRouteMark(position: number): number {
  if (!Number.isInteger(position) || position < 1 || position > 31) throw new RangeError(`a group position is 1–31, got ${position}`);
  return (position << 24) >>> 0;
}

/**
 * Stable per-service id: the same on every instance and across restarts (it is the ct mark of
 * the service's connections, which session sync copies to the peer). Always has SERVICE_MARK_BIT.
 */
export function serviceMark(s: Pick<Service, 'externalIP' | 'port' | 'protocol'>): number {
  return ((fnv1a(serviceKey(s)) & 0x7fffffff) | SERVICE_MARK_BIT) >>> 0;
}

/**
 * The element holding an endpoint's counter in `ep_stats`: the service id and the endpoint's
 * address (endpoints of one service on the same address, different ports, share it).
 */
export function endpointElement(s: Pick<Service, 'externalIP' | 'port' | 'protocol'>, e: Pick<Endpoint, 'ip'>): string {
  return `${hex(serviceMark(s))} . ${e.ip}`;
}

export function liveEndpoints(s: Service, down: ReadonlySet<string>): Endpoint[] {
  const key = serviceKey(s);
  return s.endpoints.filter((e) => !down.has(`${key}#${endpointKey(e)}`));
}

/** A group of services that pick endpoints the same way: one chain, one slot map. */
export interface Group {
  /** nftables expression producing the slot index. */
  selector: string;
  protocol: string;
  /** Session affinity: a client keeps its slot for this many seconds of inactivity. */
  affinitySeconds?: number;
}

function groupOf(s: Service, slotCount: number, seed: number): { name: string; group: Group } {
  const p = s.protocol;
  switch (s.sel) {
    case SELECTION.hash:
      return { name: `hash_${p}`, group: { selector: `jhash ip saddr . ${p} sport mod ${MAGLEV_SLOTS} seed ${hex(seed)}`, protocol: p } };
    case SELECTION.persist:
      if (s.inactiveTimeOut > 0) {
        // Client affinity with a timeout (Kubernetes sessionAffinity: ClientIP): first pick round-robin, then remembered.
        return { name: `aff_${p}_${slotCount}_${s.inactiveTimeOut}`, group: { selector: `numgen inc mod ${slotCount}`, protocol: p, affinitySeconds: s.inactiveTimeOut } };
      }
      return { name: `persist_${p}`, group: { selector: `jhash ip saddr mod ${MAGLEV_SLOTS} seed ${hex(seed)}`, protocol: p } };
    default:
      return { name: `rr_${p}_${slotCount}`, group: { selector: `numgen inc mod ${slotCount}`, protocol: p } };
  }
}

function slotsFor(s: Service, live: Endpoint[]): Endpoint[] {
  switch (s.sel) {
    case SELECTION.hash:
      return maglevSlots(live);
    case SELECTION.persist:
      return s.inactiveTimeOut > 0 ? weightedSlots(live) : maglevSlots(live);
    case SELECTION.priority:
      return prioritySlots(live);
    default:
      return weightedSlots(live);
  }
}

/** An idle timeout policy (LoxiLB's `inactiveTimeOut`): a `ct timeout` object and the chain that attaches it. */
export interface IdleTimeout {
  protocol: 'tcp' | 'udp';
  seconds: number;
}

export type SetName = 'vips' | 'service_marks' | 'endpoints' | 'ep_stats' | 'restricted' | 'allowed';
export type MapName = 'marks' | 'services' | 'snat_to' | 'timeouts' | 'route_marks';

/** The desired table as data: what `diffText` compares and `fullText` prints. */
export interface Model {
  sets: Record<SetName, Set<string>>;
  /** Fixed maps (declared in every table). */
  maps: Record<MapName, Map<string, string>>;
  /** Selection groups in use: name → group, each with its chain and its slot map `slots_<name>`. */
  groups: Map<string, Group>;
  /** Slot map elements per group: key → endpoint. */
  slots: Map<string, Map<string, string>>;
  /** Idle timeout policies in use: name → policy, each a `ct timeout` object and a chain. */
  idle: Map<string, IdleTimeout>;
  flowtableDevices: string[];
  /** Several VIP groups: the route_marks map and the rule that reads it (absent with one group). */
  groupRouting: boolean;
  hash: string;
}

/** What one service puts into the table (given endpoint health): the unit the ledger adds and removes. */
export interface Contribution {
  sets: Record<SetName, string[]>;
  maps: Record<MapName, [string, string][]>;
  group?: { name: string; group: Group };
  slots: [string, string][];
  idle?: { name: string; idle: IdleTimeout };
}

const SET_TYPES: Record<keyof Model['sets'], string> = {
  vips: 'type ipv4_addr',
  service_marks: 'type mark',
  endpoints: 'type ipv4_addr . inet_proto . inet_service',
  ep_stats: 'type mark . ipv4_addr\n\t\tcounter',
  restricted: 'type ipv4_addr . inet_proto . inet_service',
  allowed: 'type ipv4_addr . inet_proto . inet_service . ipv4_addr\n\t\tflags interval',
};
/** Sets whose elements carry packet/byte counters (bumped by lookups). */
const COUNTED: ReadonlySet<string> = new Set(['ep_stats']);
const MAP_TYPES: Record<keyof Model['maps'], string> = {
  marks: 'type ipv4_addr . inet_proto . inet_service : mark',
  services: 'type ipv4_addr . inet_proto . inet_service : verdict',
  snat_to: 'type mark : ipv4_addr',
  // service → the chain that sets its idle timeout (nft 1.0 has no `ct timeout` object maps).
  timeouts: 'type ipv4_addr . inet_proto . inet_service : verdict',
  // service → the routing mark of its VIP group's path (groups other than the default one).
  route_marks: 'type mark : mark',
};

/**
 * Idle timeouts: conntrack takes a timeout policy on a connection it tracks but has not confirmed
 * yet, so new connections jump to their service's policy chain from the filter hook (after
 * conntrack, before confirmation). TCP: the established state's timeout (the other states keep
 * the kernel's); UDP: both states.
 */
const idleName = (t: IdleTimeout) => `idle_${t.protocol}_${t.seconds}`;
const idlePolicy = (t: IdleTimeout) =>
  t.protocol === 'tcp' ? `established : ${t.seconds}` : `unreplied : ${t.seconds}, replied : ${t.seconds}`;
const idleObject = (t: IdleTimeout) => `protocol ${t.protocol}; l3proto ip; policy = { ${idlePolicy(t)} };`;
const idleRule = (name: string) => `ct timeout set "${name}"`;

// The slot index goes through the packet mark: nft cannot list a map keyed by `typeof … jhash …`,
// and a plain integer does not match a typed key. Only first packets of connections to our VIPs get it.
const slotMapType = (_g: Group) => 'type ipv4_addr . inet_proto . inet_service . mark : ipv4_addr . inet_service';
const dnatTo = (name: string) => `dnat ip to ip daddr . meta l4proto . th dport . meta mark map @slots_${name}`;
const groupRules = (name: string, g: Group) => [
  ...(g.affinitySeconds
    ? [
        // A client seen within the timeout gets its remembered slot (and the timer restarts); a slot
        // that no longer exists (fewer endpoints now) misses, and the client is placed again below.
        `meta l4proto ${g.protocol} ct mark set ip daddr . meta l4proto . th dport map @marks meta mark set ip saddr . ct mark map @affinity update @affinity { ip saddr . ct mark timeout ${g.affinitySeconds}s : meta mark } ${dnatTo(name)}`,
        `meta l4proto ${g.protocol} meta mark set ${g.selector} update @affinity { ip saddr . ct mark timeout ${g.affinitySeconds}s : meta mark } ${dnatTo(name)}`,
      ]
    : [`meta l4proto ${g.protocol} ct mark set ip daddr . meta l4proto . th dport map @marks meta mark set ${g.selector} ${dnatTo(name)}`]),
  // Reached only if the slot lookup missed (it should not): drop and count, rather than let the
  // VIP's local stack answer the connection with a reset.
  `counter drop comment "slot miss"`,
];

// Client → slot per service, filled by the packet path (session affinity); entries expire on their own.
// When full, new clients are still balanced, just not remembered.
const AFFINITY_MAP = `\tmap affinity {\n\t\ttype ipv4_addr . mark : mark\n\t\tsize 262144\n\t\tflags dynamic,timeout\n\t}`;

function baseChains(flowtable: boolean, groupRouting = false): string[] {
  return [
    `\tchain filter_pre {\n\t\ttype filter hook prerouting priority -140; policy accept;`,
    // Packets of load-balanced flows (original direction) bump their endpoint's element counter,
    // found by the connection's service id and the endpoint conntrack recorded: one lookup per
    // packet, in the one chain every packet crosses. A service's counters are its endpoints' sum.
    `\t\tct direction original ct mark . ct reply ip saddr @ep_stats`,
    // Established packets leave here: the guards below cost only new connections.
    `\t\tct state established,related accept`,
    // Session sync hears of a new connection, of its handshake completing and of its end: not of
    // every TCP state change (6 events per connection down to 3). Set on the connection's first
    // packet, after conntrack has it (at raw priority, before conntrack, the rule does nothing).
    `\t\tip daddr @vips ct event set new,assured,destroy`,
    // A mid-stream packet from an endpoint to the VIP that conntrack does not know (a flow not
    // yet synced after a failover) is dropped, not answered with a reset by the local stack.
    `\t\tip daddr @vips ip saddr . meta l4proto . th sport @endpoints drop`,
    `\t\tip daddr . meta l4proto . th dport @restricted ip daddr . meta l4proto . th dport . ip saddr != @allowed counter drop`,
    // New connections of services with an idle timeout take its policy (a jump: the chain returns here).
    `\t\tip daddr . meta l4proto . th dport vmap @timeouts`,
    `\t}`,
    `\tchain nat_pre {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tip daddr . meta l4proto . th dport vmap @services\n\t}`,
    // After the service is chosen (dstnat), every packet of a load-balanced flow, either way, is
    // marked for policy routing out through the VIP's interface.
    // Several VIP groups: a service of another group than the default takes its group's mark (a miss
    // leaves the rule). One group: no such rule, no lookup per packet — the table of a deployment without groups.
    `\tchain route_mark {\n\t\ttype filter hook prerouting priority -90; policy accept;\n${groupRouting ? '\t\tmeta mark set ct mark map @route_marks accept\n' : ''}\t\tct mark & ${hex(SERVICE_MARK_BIT)} == ${hex(SERVICE_MARK_BIT)} meta mark set meta mark | ${hex(ROUTE_MARK_BIT)}\n\t}`,
    `\tchain nat_post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tsnat ip to ct mark map @snat_to\n\t}`,
    ...(flowtable ? [`\tchain filter_fwd {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tct mark @service_marks meta l4proto { tcp, udp } flow add @fastpath\n\t}`] : []),
  ];
}

/** What one service puts into the table, given which endpoints are down. Pure. */
export function contribution(s: Service, down: ReadonlySet<string>, seed: number, aliases?: AddressAliases, routeMarkOf?: (s: Service) => number | undefined): Contribution {
  const c: Contribution = { sets: { service_marks: [], endpoints: [], ep_stats: [], vips: [], restricted: [], allowed: [] }, maps: { marks: [], services: [], snat_to: [], timeouts: [], route_marks: [] }, slots: [] };
  const mark = hex(serviceMark(s));
  c.sets.service_marks.push(mark);
  const routeMark = routeMarkOf?.(s);
  if (routeMark !== undefined) c.maps.route_marks.push([mark, hex(routeMark)]);
  if (s.mode === MODE.fullnat) c.maps.snat_to.push([mark, s.privateIP ?? s.externalIP]);
  for (const e of s.endpoints) {
    c.sets.endpoints.push(`${e.ip} . ${s.protocol} . ${e.port}`);
    c.sets.ep_stats.push(endpointElement(s, e));
  }
  const slots = slotsFor(s, liveEndpoints(s, down));
  const { name: groupName, group } = groupOf(s, slots.length, seed);
  if (slots.length) c.group = { name: groupName, group };
  if (s.inactiveTimeOut > 0) {
    const idle: IdleTimeout = { protocol: s.protocol, seconds: s.inactiveTimeOut };
    c.idle = { name: idleName(idle), idle };
  }
  for (const a of serviceAddresses(s, aliases)) {
    const key = `${a} . ${s.protocol} . ${s.port}`;
    c.sets.vips.push(a);
    c.maps.marks.push([key, mark]);
    // No live endpoint: drop new connections rather than let the local stack answer for the VIP.
    c.maps.services.push([key, slots.length ? `jump ${groupName}` : 'drop']);
    if (c.idle) c.maps.timeouts.push([key, `jump ${c.idle.name}`]);
    if (s.allowedSources.length) {
      c.sets.restricted.push(key);
      for (const p of s.allowedSources) c.sets.allowed.push(`${key} . ${p}`);
    }
    slots.forEach((e, i) => c.slots.push([`${key} . ${i}`, `${e.ip} . ${e.port}`]));
  }
  return c;
}

/** The parts of the table that do not depend on services: they are part of every revision. */
export function baseText(flowtableDevices: string[], groupRouting = false): string {
  return [...baseChains(flowtableDevices.length > 0, groupRouting), AFFINITY_MAP, `flowtable ${flowtableDevices.join(',')}`].join('\n');
}

/** The whole desired table for a list of services (start-up, full replaces, tests). */
export function renderModel(input: Omit<RenderInput, 'counters'>): Model {
  const routing = input.routeMarkOf !== undefined;
  const ledger = new Ledger(baseText(input.flowtableDevices ?? [], routing), input.flowtableDevices ?? [], routing);
  for (const s of input.services) ledger.put(serviceKey(s), contribution(s, input.down, input.hashSeed, undefined, input.routeMarkOf));
  return ledger.model();
}

const elements = (items: Iterable<string>) => {
  const list = [...items];
  return list.length ? `\n\t\telements = { ${list.join(',\n\t\t\t')} }` : '';
};
const sorted = (xs: Iterable<string>) => [...xs].sort();
const pairs = (m: Map<string, string>) => sorted([...m].map(([k, v]) => `${k} : ${v}`));

/** The whole table, replacing what is there in one transaction (start-up, or when a diff cannot express the change). */
export function fullText(m: Model, tableName: string, counters?: ReadonlyMap<string, CounterValue>): string {
  const table = `ip ${tableName}`;
  const counted = (el: string) => {
    const v = counters?.get(el);
    return v ? `${el} counter packets ${v.packets} bytes ${v.bytes}` : el;
  };
  const groups = [...m.groups].sort(([a], [b]) => cmp(a, b));
  const idle = [...m.idle].sort(([a], [b]) => cmp(a, b));
  return [
    `table ${table} {}`,
    `delete table ${table}`,
    `table ${table} {`,
    `\tset revision {\n\t\ttype mark${elements([revisionElement(m.hash)])}\n\t}`,
    ...(Object.keys(SET_TYPES) as (keyof Model['sets'])[]).map((k) => `\tset ${k} {\n\t\t${SET_TYPES[k]}${elements(sorted(m.sets[k]).map((e) => (COUNTED.has(k) ? counted(e) : e)))}\n\t}`),
    ...(Object.keys(MAP_TYPES) as (keyof Model['maps'])[]).filter((k) => k !== 'route_marks' || m.groupRouting).map((k) => `\tmap ${k} {\n\t\t${MAP_TYPES[k]}${elements(pairs(m.maps[k]))}\n\t}`),
    AFFINITY_MAP,
    ...groups.map(([name, g]) => `\tmap slots_${name} {\n\t\t${slotMapType(g)}${elements(pairs(m.slots.get(name)!))}\n\t}`),
    ...(m.flowtableDevices.length ? [`\tflowtable fastpath {\n\t\thook ingress priority filter\n\t\tdevices = { ${m.flowtableDevices.join(', ')} }\n\t}`] : []),
    ...groups.map(([name, g]) => `\tchain ${name} {\n\t\t${groupRules(name, g).join('\n\t\t')}\n\t}`),
    ...idle.map(([name, i]) => `\tct timeout ${name} { ${idleObject(i)} }`),
    ...idle.map(([name]) => `\tchain ${name} {\n\t\t${idleRule(name)}\n\t}`),
    ...baseChains(m.flowtableDevices.length > 0, m.groupRouting),
    `}`,
    '',
  ].join('\n');
}

/** The revision element: the hash of the state the table holds. */
export const revisionElement = (hash: string) => `0x1 comment "loxiha ${hash}"`;
/** Written by the first of two transactions: the table is between two states. */
export const inFlightElement = (hash: string) => `0x1 comment "loxiha-in-flight ${hash}"`;
/** Reads either element back (from `nft list set … revision`, or a ruleset text). */
export function parseRevision(text: string): { hash: string; inFlight: boolean } | undefined {
  const m = /comment "loxiha(-in-flight)? ([0-9a-f]+)"/.exec(text);
  return m ? { hash: m[2]!, inFlight: !!m[1] } : undefined;
}

/** Sets and maps a packet consults first: a removal there stops new connections, so it goes in the first phase. */
const GATES: ReadonlySet<string> = new Set(['services', 'vips', 'restricted']);

interface Phases {
  one: string[];
  two: string[];
}

function elementDiff(t: string, name: string, prev: Map<string, string> | Set<string>, next: Map<string, string> | Set<string>, out: Phases, removalsFirst: boolean): void {
  const asMap = (x: Map<string, string> | Set<string>) => (x instanceof Map ? x : new Map([...x].map((k) => [k, ''])));
  const p = asMap(prev);
  const n = asMap(next);
  const changed = [...p].filter(([k, v]) => n.has(k) && n.get(k) !== v).map(([k]) => k);
  const removed = [...p.keys()].filter((k) => !n.has(k));
  const added = [...n].filter(([k, v]) => p.get(k) !== v).map(([k, v]) => (v === '' ? k : `${k} : ${v}`));
  // A changed value is a delete and an add of the same key in one transaction: any lookup sees old or new.
  if (changed.length) out.one.push(`delete element ${t} ${name} { ${changed.join(', ')} }`);
  if (added.length) out.one.push(`add element ${t} ${name} { ${added.join(', ')} }`);
  if (removed.length) (removalsFirst ? out.one : out.two).push(`delete element ${t} ${name} { ${removed.join(', ')} }`);
}

export interface Diff {
  /** Adds, repoints and gate removals: after it, no packet is sent anywhere the next state does not want. */
  phase1: string;
  /** Removes what phase 1 made unreachable; empty when nothing is left over. */
  phase2: string;
}

/**
 * Only what changed, in two transactions. nftables does not promise that one packet sees a
 * single ruleset generation across its lookups: a packet that read the service map just
 * before a commit may look up the slot map just after it. So phase 1 adds the new slot maps,
 * chains and elements and repoints services to them while keeping the old slots; phase 2,
 * committed after phase 1, removes what no packet can reach any more. Undefined when the
 * change needs a full replace (flowtable devices).
 */
export function diffText(prev: Model, next: Model, tableName: string): Diff | undefined {
  if (prev.flowtableDevices.join() !== next.flowtableDevices.join()) return undefined;
  const t = `ip ${tableName}`;
  const out: Phases = { one: [], two: [] };
  // Idle timeout objects and their chains first: the timeouts map's elements jump to them.
  for (const [name, i] of next.idle) {
    if (prev.idle.has(name)) continue;
    out.one.push(`add ct timeout ${t} ${name} { ${idleObject(i)} }`, `add chain ${t} ${name}`, `add rule ${t} ${name} ${idleRule(name)}`);
  }
  for (const [name, g] of next.groups) {
    if (prev.groups.has(name)) continue;
    out.one.push(`add map ${t} slots_${name} { ${slotMapType(g)}; }`, `add chain ${t} ${name}`, ...groupRules(name, g).map((r) => `add rule ${t} ${name} ${r}`));
  }
  const elementPhases: Phases = { one: [], two: [] };
  for (const k of Object.keys(next.sets) as (keyof Model['sets'])[]) elementDiff(t, k, prev.sets[k], next.sets[k], elementPhases, GATES.has(k));
  for (const k of Object.keys(next.maps) as (keyof Model['maps'])[]) elementDiff(t, k, prev.maps[k], next.maps[k], elementPhases, GATES.has(k));
  for (const name of new Set([...prev.slots.keys(), ...next.slots.keys()])) {
    if (!next.groups.has(name)) continue; // the whole map goes in phase 2
    elementDiff(t, `slots_${name}`, prev.slots.get(name) ?? new Map(), next.slots.get(name)!, elementPhases, false);
  }
  out.one.push(...elementPhases.one);
  out.two.push(...elementPhases.two);
  for (const name of prev.groups.keys()) if (!next.groups.has(name)) out.two.push(`delete chain ${t} ${name}`, `delete map ${t} slots_${name}`);
  for (const name of prev.idle.keys()) if (!next.idle.has(name)) out.two.push(`delete chain ${t} ${name}`, `delete ct timeout ${t} ${name}`);
  if (!out.one.length && !out.two.length) return { phase1: '', phase2: '' };
  const revision = (element: string) => [`flush set ${t} revision`, `add element ${t} revision { ${element} }`];
  // The revision names the final state: it is written with the last phase. While two phases are
  // on their way, the first marks the table in flight, so that an agent killed between them finds
  // a table that matches no saved state and replaces it instead of adopting it.
  if (out.one.length && out.two.length) {
    out.one.unshift(...revision(inFlightElement(next.hash)));
    out.two.push(...revision(revisionElement(next.hash)));
  } else (out.two.length ? out.two : out.one).push(...revision(revisionElement(next.hash)));
  return { phase1: out.one.length ? `${out.one.join('\n')}\n` : '', phase2: out.two.length ? `${out.two.join('\n')}\n` : '' };
}

/** Full replace text for a set of services (tests, benchmarks). */
export function render(input: RenderInput): Rendered {
  const m = renderModel(input);
  return { text: fullText(m, input.table, input.counters), hash: m.hash };
}
