/**
 * Addresses that follow from the configuration alone, so that every program
 * (CDK app, agent, tests, demo) derives them the same way without a lookup.
 */
import type { LoxihaConfig } from './config.ts';
import { AGENT_API_TOKEN_FILE, type AgentConfigInput, METRICS, SYNC_KEY_FILE } from './contract.ts';
import { intToIp, parseCidr } from './net/cidr.ts';

/** Host offset of each LB instance's primary private IP inside its LB subnet. */
export const LB_INSTANCE_HOST_OFFSET = 10;
/** Host offset of each LB instance's ingress IP for the default group (route strategy: the secondary address its EIP is associated with). */
export const LB_INGRESS_HOST_OFFSET = 11;
/** Host offset of the ingress IP of the group at position k ≥ 1 (route strategy): 20 + k. */
export const GROUP_INGRESS_HOST_OFFSET = 20;
/** The k-th slot of an availability zone takes its addresses this far above the first's. */
export const SLOT_HOST_STRIDE = 100;

/** The availability zone (its index) slot `slot` lives in: slot i in zone i mod n, so slots 0…n−1 are one per zone. */
export function slotZone(config: Pick<LoxihaConfig, 'lbSubnetCidrs'>, slot: number): number {
  return slot % config.lbSubnetCidrs.length;
}

function slotAddress(config: Pick<LoxihaConfig, 'lbSubnetCidrs'>, slot: number, offset: number): string {
  const zones = config.lbSubnetCidrs.length;
  const parsed = parseCidr(config.lbSubnetCidrs[slot % zones] ?? '');
  if (!parsed) throw new Error(`no LB subnet for slot ${slot}`);
  return intToIp(parsed.network + offset + SLOT_HOST_STRIDE * Math.floor(slot / zones));
}

/** The highest host offset the slots' addresses take in an LB subnet (the subnet must hold it). */
export function highestSlotHostOffset(slotsPerAz: number, groups: number): number {
  return SLOT_HOST_STRIDE * (slotsPerAz - 1) + (groups > 1 ? GROUP_INGRESS_HOST_OFFSET + groups - 1 : LB_INGRESS_HOST_OFFSET);
}

/** Primary private IP of LB slot `slot` (fixed, so peers and kube-loxilb can be wired at synth). */
export function lbInstanceIp(config: Pick<LoxihaConfig, 'lbSubnetCidrs'>, slot: number): string {
  return slotAddress(config, slot, LB_INSTANCE_HOST_OFFSET);
}

/** Ingress IP (route strategy) on slot `slot` of the group at position `group` of vipGroupsOf (0: the default group). */
export function lbIngressIp(config: Pick<LoxihaConfig, 'lbSubnetCidrs'>, slot: number, group = 0): string {
  return slotAddress(config, slot, group === 0 ? LB_INGRESS_HOST_OFFSET : GROUP_INGRESS_HOST_OFFSET + group);
}

type Slots = Pick<LoxihaConfig, 'lbSubnetCidrs'> & { slotsPerAz?: number };
const slotIndexes = (config: Slots) => Array.from({ length: config.lbSubnetCidrs.length * (config.slotsPerAz ?? 1) }, (_, i) => i);

/** Every slot's ingress IP of group position `group`, by slot index. */
export function lbIngressIps(config: Slots, group = 0): string[] {
  return slotIndexes(config).map((i) => lbIngressIp(config, i, group));
}

/** Every slot's primary private IP, by slot index. */
export function lbInstanceIps(config: Slots): string[] {
  return slotIndexes(config).map((i) => lbInstanceIp(config, i));
}

/**
 * The agent's configuration file for LB instance `index` (/etc/loxiha/agent.json on AWS): the CDK
 * app writes it into the user data, the local simulation into its hosts; `aws` names the
 * region and the failover function, and (simulation only) the emulator and IMDS endpoints.
 */
export function agentConfigFor(
  config: Pick<LoxihaConfig, 'deploymentId' | 'lbSubnetCidrs' | 'availabilityZones' | 'vip' | 'cloudCidrBlock' | 'strategy'> & { slotsPerAz?: number },
  index: number,
  aws: Omit<NonNullable<AgentConfigInput['aws']>, 'metricNamespace'>,
  /** Several VIP groups (vipGroupsOf order, the default first) with their EIPs' public addresses. */
  groups: ReadonlyArray<{ name: string; vip: string; publicIp: string }> = [],
): AgentConfigInput {
  const route = config.strategy === 'route';
  const peerIndexes = lbInstanceIps(config).map((_, j) => j).filter((j) => j !== index);
  return {
    ...(groups.length > 1
      ? {
          publicIp: groups[0]!.publicIp,
          groups: groups.slice(1).map((g, k) => ({
            name: g.name,
            vip: g.vip,
            publicIp: g.publicIp,
            ...(route ? { ingressIp: lbIngressIp(config, index, k + 1), peerIngressIps: Object.fromEntries(peerIndexes.map((j) => [String(j), lbIngressIp(config, j, k + 1)])) } : {}),
          })),
        }
      : {}),
    deploymentId: config.deploymentId,
    instanceIndex: index,
    selfIp: lbInstanceIp(config, index),
    peers: lbInstanceIps(config).flatMap((ip, j) => (j === index ? [] : [{ index: j, ip, ...(config.strategy === 'route' ? { ingressIp: lbIngressIp(config, j) } : {}) }])),
    vip: config.vip,
    cloudCidrBlock: config.cloudCidrBlock,
    strategy: config.strategy,
    ...(config.strategy === 'route' ? { ingressIp: lbIngressIp(config, index) } : {}),
    api: { tokenFile: AGENT_API_TOKEN_FILE },
    sync: { secretFile: SYNC_KEY_FILE },
    aws: { metricNamespace: METRICS.namespace, ...aws },
  };
}
