/**
 * Addresses that follow from the configuration alone, so that every program
 * (CDK app, agent, tests, demo) derives them the same way without a lookup.
 */
import type { LoxihaConfig } from './config.ts';
import { AGENT_API_TOKEN_FILE, type AgentConfigInput, METRICS, SYNC_KEY_FILE } from './contract.ts';
import { intToIp, parseCidr } from './net/cidr.ts';

/** Host offset of each LB instance's primary private IP inside its LB subnet. */
export const LB_INSTANCE_HOST_OFFSET = 10;

/** Primary private IP of LB instance `index` (fixed, so peers and kube-loxilb can be wired at synth). */
export function lbInstanceIp(config: Pick<LoxihaConfig, 'lbSubnetCidrs'>, index: number): string {
  const cidr = config.lbSubnetCidrs[index];
  const parsed = cidr === undefined ? undefined : parseCidr(cidr);
  if (!parsed) throw new Error(`no LB subnet for instance ${index}`);
  return intToIp(parsed.network + LB_INSTANCE_HOST_OFFSET);
}

/** Host offset of each LB instance's ingress IP (route strategy: the secondary address the EIP is associated with). */
export const LB_INGRESS_HOST_OFFSET = 11;

/** Ingress IP of LB instance `index`, in its LB subnet, for the `route` strategy. */
export function lbIngressIp(config: Pick<LoxihaConfig, 'lbSubnetCidrs'>, index: number): string {
  const parsed = config.lbSubnetCidrs[index] === undefined ? undefined : parseCidr(config.lbSubnetCidrs[index]!);
  if (!parsed) throw new Error(`no LB subnet for instance ${index}`);
  return intToIp(parsed.network + LB_INGRESS_HOST_OFFSET);
}

/** Every LB instance's ingress IP, by instance index. */
export function lbIngressIps(config: Pick<LoxihaConfig, 'lbSubnetCidrs'>): string[] {
  return config.lbSubnetCidrs.map((_, i) => lbIngressIp(config, i));
}

export function lbInstanceIps(config: Pick<LoxihaConfig, 'lbSubnetCidrs'>): string[] {
  return config.lbSubnetCidrs.map((_, i) => lbInstanceIp(config, i));
}

/**
 * The agent's configuration file for LB instance `index` (/etc/loxiha/agent.json on AWS): the CDK
 * app writes it into the user data, the local simulation into its hosts; `aws` names the
 * region and the failover function, and (simulation only) the emulator and IMDS endpoints.
 */
export function agentConfigFor(
  config: Pick<LoxihaConfig, 'deploymentId' | 'lbSubnetCidrs' | 'availabilityZones' | 'vip' | 'cloudCidrBlock' | 'strategy'>,
  index: number,
  aws: Omit<NonNullable<AgentConfigInput['aws']>, 'metricNamespace'>,
): AgentConfigInput {
  return {
    deploymentId: config.deploymentId,
    instanceIndex: index,
    selfIp: lbInstanceIp(config, index),
    peers: config.availabilityZones.flatMap((_, j) => (j === index ? [] : [{ index: j, ip: lbInstanceIp(config, j), ...(config.strategy === 'route' ? { ingressIp: lbIngressIp(config, j) } : {}) }])),
    vip: config.vip,
    cloudCidrBlock: config.cloudCidrBlock,
    strategy: config.strategy,
    ...(config.strategy === 'route' ? { ingressIp: lbIngressIp(config, index) } : {}),
    api: { tokenFile: AGENT_API_TOKEN_FILE },
    sync: { secretFile: SYNC_KEY_FILE },
    aws: { metricNamespace: METRICS.namespace, ...aws },
  };
}
