/**
 * Whether the VIP groups fit AWS's limits in the worst case the placement allows: every group on
 * the slots left after losing the availability zone with the most slots, no slot above the spread
 * bound (⌈groups / surviving slots⌉ + 1). Pure: the configuration runs it at synth and names each
 * limit it checks, with the numbers.
 */
import type { InstanceNetworkLimits } from './instance-limits.ts';

export interface GroupCapacityInput {
  strategy: 'eni' | 'route';
  groups: number;
  availabilityZones: number;
  slotsPerAz: number;
  instanceType: string;
  /** The instance type's limits (known, or configured); undefined: unknown. */
  instance: InstanceNetworkLimits | undefined;
  /** Interfaces every LB instance has before any group's: its primary and the slot's own. */
  baseInterfaces: number;
  routesPerTable: number;
  /** Routes a VIP route table holds besides the groups' /32s (local and default). */
  baseRoutes: number;
  eipsPerRegion: number;
  /** EIPs the stack allocates (groups without an existing EIP, the NAT gateway's). */
  eipsAllocated: number;
}

export interface CapacityProblem {
  path: string[];
  message: string;
}

/** Groups one slot may hold in the worst case: the spread bound over the slots that survive an AZ's loss. */
export function worstCaseGroupsPerSlot(groups: number, availabilityZones: number, slotsPerAz: number): number {
  const survivors = (availabilityZones - 1) * slotsPerAz;
  return Math.min(groups, Math.ceil(groups / survivors) + 1);
}

export function groupCapacityProblems(c: GroupCapacityInput): CapacityProblem[] {
  const out: CapacityProblem[] = [];
  const perSlot = worstCaseGroupsPerSlot(c.groups, c.availabilityZones, c.slotsPerAz);
  const worst = `${c.groups} group(s) over ${(c.availabilityZones - 1) * c.slotsPerAz} slot(s) after losing an availability zone: up to ${perSlot} per slot`;
  if (c.instance === undefined) {
    if (c.groups > 1) {
      out.push({
        path: ['limits', 'instance'],
        message: `the network limits of ${c.instanceType} are not known to loxiha: set them (aws ec2 describe-instance-types --instance-types ${c.instanceType} --query 'InstanceTypes[0].NetworkInfo.[MaximumNetworkInterfaces,Ipv4AddressesPerInterface]')`,
      });
    }
  } else if (c.strategy === 'eni') {
    const need = c.baseInterfaces + perSlot;
    if (need > c.instance.networkInterfaces) {
      out.push({ path: ['groups'], message: `network interfaces per instance: ${c.instanceType} attaches ${c.instance.networkInterfaces}, the eni strategy needs ${need} (${c.baseInterfaces} of the slot + one loxi-eni per group; ${worst}). Fewer groups, more slots, or a larger instance type` });
    }
  } else {
    const need = 1 + c.groups;
    if (need > c.instance.ipv4PerInterface) {
      out.push({ path: ['groups'], message: `private IPv4 addresses per interface: ${c.instanceType} allows ${c.instance.ipv4PerInterface}, the route strategy needs ${need} on each slot's interface (its address + one ingress IP per group). Fewer groups or a larger instance type` });
    }
  }
  if (c.strategy === 'route' && c.groups + c.baseRoutes > c.routesPerTable) {
    out.push({ path: ['groups'], message: `routes per route table: ${c.routesPerTable} (limits.routesPerTable), the route strategy needs ${c.groups + c.baseRoutes} in each VIP route table (one /32 per group + ${c.baseRoutes} of the table's own)` });
  }
  if (c.eipsAllocated > c.eipsPerRegion) {
    out.push({ path: ['groups'], message: `Elastic IPs per region: ${c.eipsPerRegion} (limits.eipsPerRegion), the stack allocates ${c.eipsAllocated} (one per group without existingEip, and the NAT gateway's). Raise the quota, or give groups an existingEip` });
  }
  return out;
}
