/**
 * Addresses that follow from the configuration alone, so that every program
 * (CDK app, agent, tests, demo) derives them the same way without a lookup.
 */
import type { LoxihaConfig } from './config.ts';
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

export function lbInstanceIps(config: Pick<LoxihaConfig, 'lbSubnetCidrs'>): string[] {
  return config.lbSubnetCidrs.map((_, i) => lbInstanceIp(config, i));
}
