/**
 * The agent's service model: what kube-loxilb asked for, normalised. A service is
 * (VIP/external IP, port, protocol) → weighted endpoints, with a selection algorithm,
 * a NAT mode, allowed source prefixes and an endpoint probe.
 */

export type Protocol = 'tcp' | 'udp';

/** LoxiLB's `sel`: 0 round-robin (weighted), 1 flow hash (consistent), 2 priority, 3 client persistence. */
export const SELECTION = { roundRobin: 0, hash: 1, priority: 2, persist: 3 } as const;
export type Selection = (typeof SELECTION)[keyof typeof SELECTION];

/** LoxiLB's `mode`: 0 plain DNAT, 2 full-NAT (source NAT to the VIP). */
export const MODE = { dnat: 0, fullnat: 2 } as const;
export type Mode = (typeof MODE)[keyof typeof MODE];

export interface Endpoint {
  ip: string;
  port: number;
  weight: number;
}

export interface Probe {
  type: 'tcp' | 'udp' | 'http' | 'https' | 'ping' | 'none';
  /** 0: the endpoint's own port. */
  port: number;
  req: string;
  resp: string;
  retries: number;
  timeoutSeconds: number;
}

export interface Service {
  name: string;
  externalIP: string;
  privateIP: string | undefined;
  port: number;
  protocol: Protocol;
  sel: Selection;
  mode: Mode;
  monitor: boolean;
  probe: Probe;
  inactiveTimeOut: number;
  block: number;
  managed: boolean;
  bgp: boolean;
  endpoints: Endpoint[];
  allowedSources: string[];
  secondaryIPs: string[];
}

export function serviceKey(s: Pick<Service, 'externalIP' | 'port' | 'protocol'>): string {
  return `${s.externalIP}|${s.port}|${s.protocol}`;
}

export function endpointKey(e: Pick<Endpoint, 'ip' | 'port'>): string {
  return `${e.ip}:${e.port}`;
}

/** Addresses a service answers on: its private VIP (where AWS delivers) and its external IP. */
/**
 * Other addresses that stand for an address (route strategy: this instance's ingress IP stands for
 * the VIP, clients' packets arriving there through the EIP's association).
 */
export type AddressAliases = ReadonlyMap<string, readonly string[]>;

export function serviceAddresses(s: Service, aliases: AddressAliases = new Map()): string[] {
  const own = [s.privateIP, s.externalIP].filter((a): a is string => !!a && a !== '0.0.0.0');
  return [...new Set([...own, ...own.flatMap((a) => aliases.get(a) ?? [])])];
}
