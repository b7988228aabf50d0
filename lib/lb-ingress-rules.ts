/**
 * What the LB security group (on the instances and on loxi-eni) admits, as data: the CDK app turns
 * each rule into an ingress rule, the local simulation enforces the same list on its "ENI" links,
 * so the two cannot drift.
 */
import type { LoxihaConfig } from './config.ts';
import { PORTS } from './contract.ts';

/** Where a rule admits packets from: client CIDRs, the LB security group itself, or the EKS nodes' security group. */
export type IngressSource = { cidr: string } | { group: 'self' } | { group: 'nodes' };

/** Kubernetes' default NodePort range: kube-loxilb's endpoints in full-NAT mode. */
export const NODE_PORTS = { from: 30000, to: 32767 } as const;

export interface IngressRule {
  source: IngressSource;
  protocol: 'tcp' | 'udp';
  /** Inclusive port range. */
  fromPort: number;
  toPort: number;
  description: string;
}

export function lbIngressRules(config: Pick<LoxihaConfig, 'clientCidrs' | 'servicePorts'>): IngressRule[] {
  const rules: IngressRule[] = [];
  for (const cidr of config.clientCidrs) {
    for (const sp of config.servicePorts) {
      rules.push({ source: { cidr }, protocol: sp.protocol, fromPort: sp.port, toPort: sp.port, description: `service ${sp.protocol}/${sp.port} from ${cidr}` });
    }
  }
  rules.push(
    { source: { group: 'self' }, protocol: 'tcp', fromPort: PORTS.peerSync, toPort: PORTS.peerSync, description: 'session sync from the peer LB instance' },
    { source: { group: 'self' }, protocol: 'udp', fromPort: PORTS.peerHeartbeat, toPort: PORTS.peerHeartbeat, description: 'heartbeat from the peer LB instance' },
    { source: { group: 'nodes' }, protocol: 'tcp', fromPort: PORTS.agentApi, toPort: PORTS.agentApi, description: 'agent API (kube-loxilb) from the EKS nodes' },
    // Security groups track connections per interface: the LB's packets to an endpoint may leave
    // through one interface while the reply arrives on loxi-eni, and after a failover the new
    // loxi-eni has seen none of the synced flows. Full-NAT sends to the endpoints from the VIP,
    // keeping the client's source port where it can, so the reply's destination port can be any.
    { source: { group: 'nodes' }, protocol: 'tcp', fromPort: 0, toPort: 65535, description: 'endpoint replies to the VIP (full-NAT, any client port) from the EKS nodes' },
    { source: { group: 'nodes' }, protocol: 'udp', fromPort: 0, toPort: 65535, description: 'endpoint replies to the VIP (full-NAT, any client port) from the EKS nodes' },
  );
  return rules;
}
