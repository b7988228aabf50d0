/**
 * The deployment's configuration: one zod schema, its defaults, and the checks
 * that span fields (VIP inside the block, no overlapping subnets, one subnet per AZ).
 * Pure: no aws-cdk-lib import, so the function, the agent and the demo can use it.
 */
import * as z from 'zod';
import { cidrContains, cidrsOverlap, ipToInt, parseCidr, reservedAddresses } from './net/cidr.ts';
import { DEFAULT_GROUP, DEFAULT_HOLD_DOWN_SECONDS, FAILBACK_POLICIES, GROUP_NAME_PATTERN, ipv4Schema as ipv4, VIP_STRATEGIES } from './contract.ts';
import { groupCapacityProblems } from './capacity/group-capacity.ts';
import { knownInstanceLimits } from './capacity/instance-limits.ts';
import { highestSlotHostOffset } from './topology.ts';

const cidr = z.string().refine((v) => parseCidr(v) !== undefined, 'must be an IPv4 CIDR block (a.b.c.d/n, host bits zero)');
const az = z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d[a-z]$/, 'must be an availability zone name like eu-west-1a');

/** Kubernetes minors in standard support whose kubectl layer (same minor) is bundled. */
export const SUPPORTED_KUBERNETES_VERSIONS = ['1.35'] as const;

/**
 * Node operating systems for the EKS managed node group. EKS published no Amazon Linux 2 node
 * images after Kubernetes 1.32, so it is not offered.
 */
export const NODE_OS = ['al2023', 'bottlerocket'] as const;
export type NodeOs = (typeof NODE_OS)[number];

/** Retention periods CloudWatch Logs accepts, in days. */
export const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

export const servicePortSchema = z
  .object({
    port: z.number().int().min(1).max(65535),
    protocol: z.enum(['tcp', 'udp']).default('tcp'),
  })
  .strict();

const existingEipSchema = z
  .object({
    allocationId: z.string().regex(/^eipalloc-[0-9a-f]{8,17}$/, 'must be an EIP allocation id'),
    publicIp: ipv4,
  })
  .strict();

/**
 * A VIP group besides the default one (the top-level `vip`, `existingEip` and `cloudCidrBlock`):
 * its own VIP and EIP, owned by one slot at a time, spread over the slots with the others.
 */
export const groupConfigSchema = z
  .object({
    name: z
      .string()
      .regex(GROUP_NAME_PATTERN, 'must be a group name: lowercase letters, digits and dashes, starting with a letter, 31 at most')
      .refine((n) => n !== DEFAULT_GROUP, `"${DEFAULT_GROUP}" is the group of the top-level vip`),
    vip: ipv4,
    existingEip: existingEipSchema.optional(),
    /** The slot it is first placed on and returns to with failback (default: spread by its position). */
    preferredSlot: z.number().int().min(0).max(15).optional(),
    /** `eni` only (required there): the block its floating subnet is created from, holding its VIP. */
    cloudCidrBlock: cidr.optional(),
  })
  .strict();

export const configSchema = z
  .object({
    /** Per-deployment id: tag value and name prefix. Lower case, short. */
    deploymentId: z.string().regex(/^[a-z][a-z0-9-]{1,18}[a-z0-9]$/, 'must be 3-20 chars of a-z, 0-9 and -, starting with a letter'),
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be an AWS region name like eu-west-1'),
    account: z.string().regex(/^\d{12}$/).optional(),
    availabilityZones: z.array(az).min(2, 'at least two availability zones are needed for multi-AZ HA').max(3, 'at most three availability zones'),
    /** LB slots (each an instance with its fixed address) per availability zone. */
    slotsPerAz: z.number().int().min(1).max(3).default(1),
    /** VIP groups besides the default one (README: Several VIP groups). */
    groups: z.array(groupConfigSchema).max(31).default([]),
    /**
     * The AWS limits the groups are checked against at synth. `instance`: the instance type's network
     * limits, needed when it is not one loxiha knows (lib/capacity/instance-limits.ts). The quotas are
     * AWS's defaults; raise them here after raising them in Service Quotas.
     */
    limits: z
      .object({
        instance: z.object({ networkInterfaces: z.number().int().min(1).max(100), ipv4PerInterface: z.number().int().min(1).max(100) }).strict().optional(),
        eipsPerRegion: z.number().int().min(1).max(10_000).default(5),
        routesPerTable: z.number().int().min(1).max(1000).default(50),
      })
      .strict()
      .prefault({}),
    vpc: z.union([
      z.object({ cidr }).strict(),
      z
        .object({
          vpcId: z.string().regex(/^vpc-[0-9a-f]{8,17}$/, 'must be a VPC id'),
          internetGatewayId: z.string().regex(/^igw-[0-9a-f]{8,17}$/, 'must be an internet gateway id'),
          /** Subnets the EKS cluster uses when it is created in an existing VPC. */
          clusterSubnetIds: z.array(z.string().regex(/^subnet-[0-9a-f]{8,17}$/)).min(2).optional(),
          /** Whether the cloud CIDR block is already a CIDR of the VPC (else the stack associates it). */
          cloudCidrBlockAssociated: z.boolean().default(false),
        })
        .strict(),
    ]),
    /** One LB subnet per AZ, same order as availabilityZones. */
    lbSubnetCidrs: z.array(cidr),
    /** Block the floating subnet is created from, in whichever AZ owns the VIP. */
    cloudCidrBlock: cidr,
    /**
     * The private VIP (kube-loxilb --privateCIDR). `eni`: inside cloudCidrBlock, on loxi-eni.
     * `route`: an overlay address outside the VPC's CIDRs, routed to the owner's interface.
     */
    vip: ipv4,
    /**
     * How the VIP moves on failover (README: choosing a strategy). `eni` (default): the floating
     * subnet and loxi-eni re-created in the survivor's AZ, as LoxiLB's how-to does. `route`: the EIP
     * re-associated with the survivor's ingress IP and the VIP's /32 routes re-pointed, in one wave.
     */
    strategy: z.enum(VIP_STRATEGIES).default('eni'),
    /**
     * `route` only: the route tables whose /32 route to the VIP follows the owner. Default (a VPC the
     * stack creates): the LB subnets' and the EKS nodes' subnets' tables. Required with an existing VPC.
     */
    routeTableIds: z.array(z.string().regex(/^rtb-[0-9a-f]{8,17}$/, 'must be a route table id')).min(1).optional(),
    /** Elastic IP: existing allocation id, or allocated by the stack when absent. */
    existingEip: existingEipSchema.optional(),
    instanceType: z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/, 'must be an EC2 instance type like c7g.large'),
    /**
     * The LB instances' image, pinned. Unset: the latest Amazon Linux 2023 for the instance type's
     * architecture, looked up at the first `cdk synth`/`deploy` and recorded in cdk.context.json, so
     * that a later release changes nothing until the operator asks (README: Day two, patching).
     */
    amiId: z.string().regex(/^ami-[0-9a-f]{8,17}$/, 'must be an AMI id (ami-…)').optional(),
    eks: z.union([
      z
        .object({
          version: z.string().refine((v) => (SUPPORTED_KUBERNETES_VERSIONS as readonly string[]).includes(v), `must be a Kubernetes version in standard support whose kubectl layer is bundled: ${SUPPORTED_KUBERNETES_VERSIONS.join(', ')}`),
          nodeInstanceType: z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/),
          nodeCount: z.number().int().min(1).max(100),
          /** The nodes' operating system (its x86_64 or arm64 image, from the instance type). */
          nodeOs: z.enum(NODE_OS).default('al2023'),
        })
        .strict(),
      z
        .object({
          existingClusterName: z.string().min(1),
          /** Role kubectl assumes to apply the kube-loxilb manifest to the existing cluster. */
          kubectlRoleArn: z.string().regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/),
          /** Security group of the cluster's nodes (allowed to reach the agent API). */
          nodeSecurityGroupId: z.string().regex(/^sg-[0-9a-f]{8,17}$/),
        })
        .strict(),
    ]),
    kubeLoxilbImage: z.string().min(1),
    servicePorts: z.array(servicePortSchema).min(1),
    /** Client prefixes allowed to reach the service ports. */
    clientCidrs: z.array(cidr).min(1),
    /**
     * never: the VIP stays where it is while its owner is healthy.
     * preferred: it returns to instance 0 once that is healthy for holdDownSeconds.
     */
    failback: z.enum(FAILBACK_POLICIES),
    /** Minimum time between two moves of the VIP, and healthy time before a failback. */
    holdDownSeconds: z.number().int().min(0).max(3600),
    alarms: z
      .object({
        /** High-resolution period of the heartbeat alarm: 10, 20 or 30 s, or a multiple of 60. */
        heartbeatPeriodSeconds: z.number().int().refine((p) => [10, 20, 30].includes(p) || (p >= 60 && p % 60 === 0), 'must be 10, 20, 30 or a multiple of 60'),
        evaluationPeriods: z.number().int().min(1).max(10),
        datapointsToAlarm: z.number().int().min(1).max(10),
      })
      .strict()
      .refine((a) => a.datapointsToAlarm <= a.evaluationPeriods, 'datapointsToAlarm must not exceed evaluationPeriods'),
    reconcileEveryMinutes: z.number().int().min(1).max(60),
    notificationEmail: z.email().optional(),
    /** How long the agents', the failover function's and the EKS control plane's logs are kept (a CloudWatch Logs retention); `cdk destroy` removes them. */
    logRetentionDays: z.number().int().refine((d) => LOG_RETENTION_DAYS.includes(d), `must be a CloudWatch Logs retention: ${LOG_RETENTION_DAYS.join(', ')} days`),
    /**
     * Days between rotations of the agents' API token and sync key (Secrets Manager's schedule;
     * `aws secretsmanager rotate-secret` rotates one at once). Every rotation is without a blip:
     * the new value becomes current only once every LB instance, and kube-loxilb, use it.
     */
    secretRotationDays: z.number().int().min(1).max(1000),
    /** IAM principals (users or roles) given cluster-admin access to EKS (access entries): whoever runs kubectl. */
    adminPrincipalArns: z.array(z.string().regex(/^arn:aws[a-z-]*:iam::\d{12}:(user|role)\/.+$/, 'must be an IAM user or role ARN')).max(20),
    /** What `cdk destroy` keeps: the EIP (so the public address survives a redeploy) and the VPC flow logs. */
    uninstall: z
      .object({
        retainEip: z.boolean(),
        retainFlowLogs: z.boolean(),
        flowLogRetentionDays: z.number().int().refine((d) => LOG_RETENTION_DAYS.includes(d), `must be a CloudWatch Logs retention: ${LOG_RETENTION_DAYS.join(', ')} days`),
      })
      .strict(),
  })
  .strict();

type Problem = { path: (string | number)[]; message: string };

/** route: the overlay VIP must not be an address the VPC routes locally (AWS refuses a /32 inside its CIDRs). */
function overlayVipProblems(vip: string, vpcCidr: string | undefined, lbSubnetCidrs: readonly string[]): string[] {
  const out: string[] = [];
  if (vpcCidr && parseCidr(vpcCidr) && cidrContains(vpcCidr, vip)) out.push(`${vip} is inside the VPC CIDR ${vpcCidr}: with strategy "route" the VIP is an overlay address outside the VPC's CIDRs`);
  for (const [i, c] of lbSubnetCidrs.entries()) if (parseCidr(c) && cidrContains(c, vip)) out.push(`${vip} is inside LB subnet ${i} (${c})`);
  return out;
}

/** eni: the floating subnet's block (`label`: how the message names it) and the VIP it must hold. */
function floatingBlockProblems(block: string, vip: string | undefined, label: string): { on: 'block' | 'vip'; message: string }[] {
  const out: { on: 'block' | 'vip'; message: string }[] = [];
  const prefix = parseCidr(block)!.prefix;
  if (prefix < 16 || prefix > 28) out.push({ on: 'block', message: 'must be between /16 and /28 (AWS subnet sizes)' });
  if (vip === undefined || ipToInt(vip) === undefined) return out;
  if (!cidrContains(block, vip)) out.push({ on: 'vip', message: `${vip} is not inside ${label} ${block}` });
  else if (reservedAddresses(block).includes(vip)) out.push({ on: 'vip', message: `${vip} is an address AWS reserves in ${block} (first four and last)` });
  return out;
}

/**
 * Checks that span fields. Run on the raw input even when single fields are invalid,
 * so that one run reports every problem; each check only looks at fields that parse.
 */
function crossFieldProblems(raw: unknown): Problem[] {
  const problems: Problem[] = [];
  const issue = (path: (string | number)[], message: string) => problems.push({ path, message });
  if (typeof raw !== 'object' || raw === null) return problems;
  const r = raw as Record<string, unknown>;
  const strings = (v: unknown): string[] | undefined => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : undefined);
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  const zones = strings(r.availabilityZones);
  const lbSubnetCidrs = strings(r.lbSubnetCidrs);
  const region = str(r.region);
  const cloudCidrBlock = str(r.cloudCidrBlock);
  const vip = str(r.vip);
  if (zones && lbSubnetCidrs && lbSubnetCidrs.length !== zones.length) {
    issue(['lbSubnetCidrs'], `needs one CIDR per availability zone (${zones.length}), got ${lbSubnetCidrs.length}`);
  }
  if (zones && new Set(zones).size !== zones.length) issue(['availabilityZones'], 'must not repeat a zone');
  if (zones && region) for (const zone of zones) if (!zone.startsWith(region)) issue(['availabilityZones'], `${zone} is not in region ${region}`);
  const routeStrategy = r.strategy === 'route';
  const vpcCidr = typeof r.vpc === 'object' && r.vpc !== null ? str((r.vpc as Record<string, unknown>).cidr) : undefined;
  const block = cloudCidrBlock && !routeStrategy ? parseCidr(cloudCidrBlock) : undefined;
  if (routeStrategy && vip && ipToInt(vip) !== undefined) for (const m of overlayVipProblems(vip, vpcCidr, lbSubnetCidrs ?? [])) issue(['vip'], m);
  if (routeStrategy && typeof r.vpc === 'object' && r.vpc !== null && 'vpcId' in r.vpc && r.routeTableIds === undefined) {
    issue(['routeTableIds'], 'strategy "route" in an existing VPC needs the route tables that must reach the VIP (the EKS nodes\' subnets\' and the LB subnets\')');
  }
  if (!routeStrategy && r.routeTableIds !== undefined) issue(['routeTableIds'], 'only used by strategy "route"');
  if (block && cloudCidrBlock) for (const p of floatingBlockProblems(cloudCidrBlock, vip, 'cloudCidrBlock')) issue([p.on === 'vip' ? 'vip' : 'cloudCidrBlock'], p.message);
  const all: Array<readonly [string, string]> = [
    ...(lbSubnetCidrs ?? []).map((v, i) => [`lbSubnetCidrs.${i}`, v] as const),
    ...(cloudCidrBlock && !routeStrategy ? [['cloudCidrBlock', cloudCidrBlock] as const] : []),
  ].filter(([, v]) => parseCidr(v) !== undefined);
  for (let i = 0; i < all.length; i++) {
    for (let j = i + 1; j < all.length; j++) {
      const [na, a] = all[i]!;
      const [nb, b] = all[j]!;
      if (cidrsOverlap(a, b)) issue([nb], `${b} overlaps ${na} ${a}`);
    }
  }
  if (vpcCidr && parseCidr(vpcCidr)) {
    for (const [name, v] of all) if (name !== 'cloudCidrBlock' && !cidrContains(vpcCidr, v)) issue([name], `${v} is not inside the VPC CIDR ${vpcCidr}`);
  }
  return problems;
}

export type LoxihaConfig = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

/** One VIP group as the stack provisions it: its name, VIP, EIP (existing or the stack's), first slot and (eni) block. */
export interface VipGroup {
  name: string;
  vip: string;
  existingEip?: { allocationId: string; publicIp: string };
  preferredSlot: number;
  /** eni: the block its floating subnet is created from. */
  cloudCidrBlock?: string;
}

/** How many LB slots the deployment has: slotsPerAz in each availability zone. */
export function slotCountOf(config: Pick<LoxihaConfig, 'availabilityZones' | 'slotsPerAz'>): number {
  return config.availabilityZones.length * config.slotsPerAz;
}

/**
 * Every VIP group, the default one first (the top-level vip, existingEip and cloudCidrBlock: what a
 * deployment made before groups existed has, so it upgrades in place). A group without a
 * preferred slot is first placed by its position, one per slot in turn.
 */
export function vipGroupsOf(config: Pick<LoxihaConfig, 'vip' | 'existingEip' | 'cloudCidrBlock' | 'strategy' | 'groups' | 'availabilityZones' | 'slotsPerAz'>): VipGroup[] {
  const slots = slotCountOf(config);
  const block = (b: string | undefined) => (config.strategy === 'eni' && b !== undefined ? { cloudCidrBlock: b } : {});
  return [
    { name: DEFAULT_GROUP, vip: config.vip, ...(config.existingEip ? { existingEip: config.existingEip } : {}), preferredSlot: 0, ...block(config.cloudCidrBlock) },
    ...config.groups.map((g, k) => ({
      name: g.name,
      vip: g.vip,
      ...(g.existingEip ? { existingEip: g.existingEip } : {}),
      preferredSlot: g.preferredSlot ?? (k + 1) % slots,
      ...block(g.cloudCidrBlock),
    })),
  ];
}

/** Checks of the groups on a parsed configuration: distinct names, VIPs and EIPs, each strategy's addresses, AWS's limits. */
function groupProblems(c: LoxihaConfig): Problem[] {
  const problems: Problem[] = [];
  const issue = (path: (string | number)[], message: string) => problems.push({ path, message });
  const slots = slotCountOf(c);
  const vpcCidr = 'cidr' in c.vpc ? c.vpc.cidr : undefined;
  const seen = { names: new Set<string>([DEFAULT_GROUP]), vips: new Map([[c.vip, 'vip']]), eips: new Map<string, string>(), blocks: [] as Array<[string, string]> };
  if (c.existingEip) seen.eips.set(c.existingEip.allocationId, 'existingEip');
  if (c.strategy === 'eni') seen.blocks.push(['cloudCidrBlock', c.cloudCidrBlock]);
  for (const [i, g] of c.groups.entries()) {
    const at = (k: string) => ['groups', i, k];
    if (seen.names.has(g.name)) issue(at('name'), `"${g.name}" is already a group's name`);
    seen.names.add(g.name);
    const sameVip = seen.vips.get(g.vip);
    if (sameVip) issue(at('vip'), `${g.vip} is already the VIP of ${sameVip}`);
    seen.vips.set(g.vip, `groups.${i}`);
    if (g.existingEip) {
      const sameEip = seen.eips.get(g.existingEip.allocationId);
      if (sameEip) issue(at('existingEip'), `${g.existingEip.allocationId} is already the EIP of ${sameEip}`);
      seen.eips.set(g.existingEip.allocationId, `groups.${i}`);
    }
    if (g.preferredSlot !== undefined && g.preferredSlot >= slots) issue(at('preferredSlot'), `there are ${slots} slots (0–${slots - 1})`);
    if (c.strategy === 'route') {
      if (g.cloudCidrBlock !== undefined) issue(at('cloudCidrBlock'), 'only used by strategy "eni"');
      for (const m of overlayVipProblems(g.vip, vpcCidr, c.lbSubnetCidrs)) issue(at('vip'), m);
      continue;
    }
    const b = g.cloudCidrBlock;
    if (b === undefined) {
      issue(at('cloudCidrBlock'), 'required by strategy "eni": the block the group\'s floating subnet is created from, holding its VIP');
      continue;
    }
    for (const p of floatingBlockProblems(b, g.vip, 'its cloudCidrBlock')) issue(at(p.on === 'vip' ? 'vip' : 'cloudCidrBlock'), p.message);
    for (const [name, other] of [...seen.blocks, ...c.lbSubnetCidrs.map((l, j) => [`lbSubnetCidrs.${j}`, l] as [string, string])]) {
      if (cidrsOverlap(b, other)) issue(at('cloudCidrBlock'), `${b} overlaps ${name} ${other}`);
    }
    seen.blocks.push([`groups.${i}.cloudCidrBlock`, b]);
  }
  if (c.strategy === 'eni' && vpcCidr) {
    // A block outside the VPC's CIDR is associated with the VPC: AWS allows 5 CIDR blocks per VPC by default.
    const outside = new Set(seen.blocks.map(([, b]) => b).filter((b) => !cidrContains(vpcCidr, b)));
    if (outside.size + 1 > 5) issue(['groups'], `CIDR blocks per VPC: 5, the groups' cloudCidrBlocks outside ${vpcCidr} need ${outside.size + 1}. Put them inside the VPC's CIDR`);
  }
  const groups = 1 + c.groups.length;
  // Slot k of a zone takes its addresses 100·k above the first's; route groups' ingress IPs sit at 20 + k.
  const highest = highestSlotHostOffset(c.slotsPerAz, c.strategy === 'route' ? groups : 1);
  for (const [j, l] of c.lbSubnetCidrs.entries()) {
    const size = 2 ** (32 - parseCidr(l)!.prefix);
    if (highest >= size - 1) issue(['lbSubnetCidrs', j], `${l} has ${size} addresses; ${c.slotsPerAz} slot(s) per zone${c.strategy === 'route' ? ` and ${groups} groups' ingress IPs` : ''} need host offsets up to ${highest} (a /24 holds 3 slots per zone and 31 groups)`);
  }
  const stackEips = (c.existingEip ? 0 : 1) + c.groups.filter((g) => !g.existingEip).length + ('cidr' in c.vpc ? 1 : 0);
  for (const p of groupCapacityProblems({
    strategy: c.strategy,
    groups,
    availabilityZones: c.availabilityZones.length,
    slotsPerAz: c.slotsPerAz,
    instanceType: c.instanceType,
    instance: c.limits.instance ?? knownInstanceLimits(c.instanceType),
    baseInterfaces: 2,
    routesPerTable: c.limits.routesPerTable,
    baseRoutes: 2,
    eipsPerRegion: c.limits.eipsPerRegion,
    eipsAllocated: stackEips,
  })) {
    issue(p.path, p.message);
  }
  return problems;
}

/** Production defaults: the how-to's addresses. */
export const DEFAULT_CONFIG: ConfigInput = {
  deploymentId: 'loxiha',
  region: 'ap-northeast-3',
  availabilityZones: ['ap-northeast-3a', 'ap-northeast-3b'],
  vpc: { cidr: '192.168.0.0/16' },
  lbSubnetCidrs: ['192.168.218.0/24', '192.168.228.0/24'],
  cloudCidrBlock: '192.168.248.0/24',
  vip: '192.168.248.254',
  instanceType: 'c7g.large',
  eks: { version: '1.35', nodeInstanceType: 't3.medium', nodeCount: 2, nodeOs: 'al2023' },
  kubeLoxilbImage: 'ghcr.io/loxilb-io/kube-loxilb:v0.9.8',
  servicePorts: [{ port: 80, protocol: 'tcp' }, { port: 443, protocol: 'tcp' }],
  clientCidrs: ['0.0.0.0/0'],
  failback: 'never',
  holdDownSeconds: DEFAULT_HOLD_DOWN_SECONDS,
  alarms: { heartbeatPeriodSeconds: 10, evaluationPeriods: 3, datapointsToAlarm: 2 },
  reconcileEveryMinutes: 5,
  adminPrincipalArns: [],
  uninstall: { retainEip: true, retainFlowLogs: true, flowLogRetentionDays: 731 },
  logRetentionDays: 30,
  secretRotationDays: 30,
};

/**
 * The simulation profile used by the tests and the demo: every address lies in
 * 100.64.0.0/10, so the production 192.168.x never appears on a test interface.
 */
export const SIM_PROFILE: Partial<ConfigInput> = {
  deploymentId: 'loxiha-sim',
  region: 'us-east-1',
  availabilityZones: ['us-east-1a', 'us-east-1b'],
  vpc: { cidr: '100.64.0.0/16' },
  lbSubnetCidrs: ['100.64.218.0/24', '100.64.228.0/24'],
  cloudCidrBlock: '100.64.248.0/24',
  vip: '100.64.248.254',
  clientCidrs: ['100.64.0.0/10'],
  // The simulation launches no image: a fixed id keeps `cdk synth -c profile=sim` offline (no lookup).
  amiId: 'ami-0123456789abcdef0',
  // The demo serves a TCP and a UDP service on port 80.
  servicePorts: [
    { port: 80, protocol: 'tcp' },
    { port: 80, protocol: 'udp' },
  ],
};

export const PROFILES: Record<string, Partial<ConfigInput>> = { production: {}, sim: SIM_PROFILE };

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`Invalid loxiha configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Shallow merge per top-level key: a layer replaces whole values (objects included). */
export function mergeLayers(...layers: Array<Record<string, unknown> | undefined>): Record<string, unknown> {
  return Object.assign({}, ...layers.filter(Boolean));
}

/** Validates a merged configuration; throws one ConfigError listing every problem. */
export function parseConfig(input: unknown): LoxihaConfig {
  const result = configSchema.safeParse(input);
  const problems = [...(result.success ? [] : result.error.issues), ...crossFieldProblems(input)];
  // The groups' checks need the whole configuration parsed; they run once the fields they read are valid.
  if (result.success && problems.length === 0) problems.push(...groupProblems(result.data));
  if (result.success && problems.length === 0) return result.data;
  throw new ConfigError(problems.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`));
}

/** Resolves a named profile over the defaults, then the user's layers. */
export function resolveConfig(profile: string, ...layers: Array<Record<string, unknown> | undefined>): LoxihaConfig {
  const base = PROFILES[profile];
  if (!base) throw new ConfigError([`profile: unknown profile "${profile}" (known: ${Object.keys(PROFILES).join(', ')})`]);
  return parseConfig(mergeLayers(DEFAULT_CONFIG as Record<string, unknown>, base as Record<string, unknown>, ...layers));
}
