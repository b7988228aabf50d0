/**
 * EC2's network limits of the instance types LB instances are usually run on, as AWS publishes them
 * (`aws ec2 describe-instance-types --query 'InstanceTypes[].NetworkInfo'`: MaximumNetworkInterfaces,
 * Ipv4AddressesPerInterface). The configuration checks its VIP groups against them at synth, offline;
 * a type not listed here needs `limits.instance` in the configuration (the same two numbers).
 */
export interface InstanceNetworkLimits {
  /** Network interfaces one instance can have attached. */
  networkInterfaces: number;
  /** Private IPv4 addresses one interface can hold (primary included). */
  ipv4PerInterface: number;
}

/** The Nitro general-purpose and compute sizes share these limits across their families. */
const NITRO_SIZES: Record<string, InstanceNetworkLimits> = {
  large: { networkInterfaces: 3, ipv4PerInterface: 10 },
  xlarge: { networkInterfaces: 4, ipv4PerInterface: 15 },
  '2xlarge': { networkInterfaces: 4, ipv4PerInterface: 15 },
  '4xlarge': { networkInterfaces: 8, ipv4PerInterface: 30 },
};
const NITRO_FAMILIES = ['c5', 'c5n', 'c6g', 'c6gn', 'c6i', 'c6in', 'c7g', 'c7gn', 'c7i', 'm5', 'm5n', 'm6g', 'm6i', 'm7g', 'm7i', 'r5', 'r6g', 'r6i', 'r7g', 'r7i'];
const BURSTABLE_SIZES: Record<string, InstanceNetworkLimits> = {
  nano: { networkInterfaces: 2, ipv4PerInterface: 2 },
  micro: { networkInterfaces: 2, ipv4PerInterface: 2 },
  small: { networkInterfaces: 3, ipv4PerInterface: 4 },
  medium: { networkInterfaces: 3, ipv4PerInterface: 6 },
  large: { networkInterfaces: 3, ipv4PerInterface: 12 },
  xlarge: { networkInterfaces: 4, ipv4PerInterface: 15 },
  '2xlarge': { networkInterfaces: 4, ipv4PerInterface: 15 },
};

/** The limits of `instanceType`, when this table knows them. */
export function knownInstanceLimits(instanceType: string): InstanceNetworkLimits | undefined {
  const [family, size] = instanceType.split('.');
  if (!family || !size) return undefined;
  if (NITRO_FAMILIES.includes(family)) return NITRO_SIZES[size];
  if (family === 't3' || family === 't3a' || family === 't4g') return BURSTABLE_SIZES[size];
  return undefined;
}
