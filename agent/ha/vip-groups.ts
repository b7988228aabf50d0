/**
 * The VIP groups as one agent sees them: the default group (the config's top-level vip, publicIp
 * and ingressIp) first, then the configured ones, each at its position (its routing table and
 * mark follow from it: ./vip-path.ts `pathSlotOf`). Pure: which group a service belongs to, the
 * address it is served on, and the route strategy's address aliases and synced-flow rewrites.
 */
import { DEFAULT_GROUP } from '../../lib/contract.ts';
import type { AgentConfig } from '../config.ts';
import type { AddressAliases, Service } from '../services/model.ts';

export interface AgentVipGroup {
  name: string;
  /** 0: the default group. */
  position: number;
  vip: string;
  /** Its EIP: kube-loxilb's services of this group name it as their external IP. */
  publicIp: string | undefined;
  /** route: this instance's ingress IP for the group. */
  ingressIp: string | undefined;
  /** route: each peer's ingress IP for the group → ours (a synced flow's destination rewritten on the way in). */
  peerIngressIps: ReadonlyMap<string, string>;
}

export function agentVipGroups(config: Pick<AgentConfig, 'vip' | 'publicIp' | 'ingressIp' | 'groups' | 'peers' | 'strategy'>): AgentVipGroup[] {
  const rewrites = (ours: string | undefined, theirs: Array<string | undefined>) =>
    new Map(config.strategy === 'route' && ours ? theirs.filter((t): t is string => t !== undefined).map((t) => [t, ours]) : []);
  return [
    { name: DEFAULT_GROUP, position: 0, vip: config.vip, publicIp: config.publicIp, ingressIp: config.ingressIp, peerIngressIps: rewrites(config.ingressIp, config.peers.map((p) => p.ingressIp)) },
    ...config.groups.map((g, k) => ({
      name: g.name,
      position: k + 1,
      vip: g.vip,
      publicIp: g.publicIp,
      ingressIp: g.ingressIp,
      peerIngressIps: rewrites(g.ingressIp, Object.values(g.peerIngressIps ?? {})),
    })),
  ];
}

/**
 * The group a service belongs to: the one whose EIP it names (kube-loxilb's pools), else the one
 * whose VIP it names, else the default group.
 */
export function groupOfService(s: Pick<Service, 'externalIP' | 'privateIP'>, groups: readonly AgentVipGroup[]): AgentVipGroup {
  return groups.find((g) => g.publicIp !== undefined && g.publicIp === s.externalIP) ?? groups.find((g) => g.vip === s.privateIP || g.vip === s.externalIP) ?? groups[0]!;
}

/**
 * The service as this agent serves it: on its group's VIP. kube-loxilb sends one privateIP (its
 * --privateCIDR, the default group's VIP) with every pool's services; a service of another group
 * is served on that group's VIP instead, so that its packets, SNAT and path are the group's.
 */
export function servedOnGroupVip(s: Service, groups: readonly AgentVipGroup[]): Service {
  const g = groupOfService(s, groups);
  if (g.position === 0 || s.privateIP === g.vip || s.externalIP === g.vip) return s;
  return { ...s, privateIP: g.vip };
}

/** route: each group's VIP also answers at this instance's ingress IP for it (clients' packets arrive there through the EIP). */
export function groupAliases(groups: readonly AgentVipGroup[], strategy: AgentConfig['strategy']): AddressAliases {
  return new Map(strategy === 'route' ? groups.filter((g) => g.ingressIp).map((g) => [g.vip, [g.ingressIp!]]) : []);
}

/** route: every group's peer ingress IPs → ours (undefined when there are none). */
export function groupDestinationRewrites(groups: readonly AgentVipGroup[]): ReadonlyMap<string, string> | undefined {
  const all = new Map(groups.flatMap((g) => [...g.peerIngressIps]));
  return all.size ? all : undefined;
}
