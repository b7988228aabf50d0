/** The function's settings, from the environment the CDK app sets (validated: a bad deploy fails loudly at init). */
import * as z from 'zod';
import { DEFAULT_GROUP, DEFAULT_HOLD_DOWN_SECONDS, FAILBACK_POLICIES, FUNCTION_ENV, GROUP_NAME_PATTERN, ipv4Schema, SLOT_READY_TIMEOUT_SECONDS, VIP_STRATEGIES } from '../../lib/contract.ts';

/** A comma-separated list in one environment variable. */
const list = (item: z.ZodType<string, string>) =>
  z
    .string()
    .transform((v) => v.split(',').map((x) => x.trim()).filter(Boolean))
    .pipe(z.array(item).min(1));

/** One VIP group's part of the settings (LOXIHA_GROUPS, a JSON array); what a strategy needs is checked below. */
const groupSchema = z.strictObject({
  name: z.string().regex(GROUP_NAME_PATTERN, 'a group name: lowercase letters, digits and dashes, starting with a letter, 31 at most'),
  vip: ipv4Schema,
  eipAllocationId: z.string().regex(/^eipalloc-[0-9a-f]+$/),
  /** The slot (instance index) it returns to with failback, and is first placed on. */
  preferredSlot: z.number().int().min(0).max(15).optional(),
  cloudCidrBlock: z.string().regex(/^[\d.]+\/\d+$/).optional(),
  floatingRouteTableId: z.string().regex(/^rtb-[0-9a-f]+$/).optional(),
  /** route: the address on each slot's interface (by slot index) its EIP goes to on that slot. */
  ingressIps: z.array(ipv4Schema).min(1).optional(),
});
export type GroupSettings = z.infer<typeof groupSchema>;

const groupsJson = z
  .string()
  .transform((v, ctx) => {
    try {
      return JSON.parse(v) as unknown;
    } catch {
      ctx.addIssue({ code: 'custom', message: 'not JSON' });
      return z.NEVER;
    }
  })
  .pipe(z.array(groupSchema).min(1).max(64));

const schema = z.object({
  deploymentId: z.string().min(1),
  vpcId: z.string().regex(/^vpc-[0-9a-f]+$/),
  strategy: z.enum(VIP_STRATEGIES).default('eni'),
  vip: ipv4Schema,
  eipAllocationId: z.string().regex(/^eipalloc-[0-9a-f]+$/),
  /** eni: the block the floating subnet is re-created from, and the route table it is associated with. */
  cloudCidrBlock: z.string().regex(/^[\d.]+\/\d+$/).optional(),
  floatingRouteTableId: z.string().regex(/^rtb-[0-9a-f]+$/).optional(),
  /** route: the tables whose /32 route to the VIP follows the owner, and each instance's ingress IP (by instance index). */
  routeTableIds: list(z.string().regex(/^rtb-[0-9a-f]+$/)).optional(),
  ingressIps: list(ipv4Schema).optional(),
  leaseTable: z.string().min(1),
  topicArn: z.string().optional(),
  eventBusName: z.string().default('default'),
  failback: z.enum(FAILBACK_POLICIES).default('never'),
  holdDownSeconds: z.coerce.number().int().min(0).default(DEFAULT_HOLD_DOWN_SECONDS),
  /** How many LB slots (Auto Scaling groups of one) the deployment has: one per AZ. */
  slotCount: z.coerce.number().int().min(1).max(16).default(2),
  /** How long a slot's new instance has to become ready before a rollout fails (the deploy then rolls back). */
  readyTimeoutSeconds: z.coerce.number().int().min(60).max(3600).default(SLOT_READY_TIMEOUT_SECONDS),
  /** The VIP group these settings move: its lease, and the floating resources tagged with it. */
  group: z.string().regex(GROUP_NAME_PATTERN, 'a group name: lowercase letters, digits and dashes, starting with a letter, 31 at most').default(DEFAULT_GROUP),
  /** Several VIP groups (each its own VIP, EIP and strategy resources); unset: one group, from the settings above. */
  groups: groupsJson.optional(),
}).superRefine((s, ctx) => {
  if (s.groups) {
    if (new Set(s.groups.map((g) => g.name)).size !== s.groups.length) ctx.addIssue({ code: 'custom', path: ['groups'], message: 'group names must be distinct' });
    if (new Set(s.groups.map((g) => g.vip)).size !== s.groups.length) ctx.addIssue({ code: 'custom', path: ['groups'], message: 'group VIPs must be distinct' });
    if (new Set(s.groups.map((g) => g.eipAllocationId)).size !== s.groups.length) ctx.addIssue({ code: 'custom', path: ['groups'], message: 'group EIPs must be distinct' });
    const need = s.strategy === 'eni' ? (['cloudCidrBlock', 'floatingRouteTableId'] as const) : (['ingressIps'] as const);
    for (const [i, g] of s.groups.entries()) for (const k of need) if (g[k] === undefined) ctx.addIssue({ code: 'custom', path: ['groups', i, k], message: `required by the ${s.strategy} strategy` });
    if (s.strategy === 'route' && s.routeTableIds === undefined) ctx.addIssue({ code: 'custom', path: ['routeTableIds'], message: 'required by the route strategy' });
    return;
  }
  const need = s.strategy === 'eni' ? (['cloudCidrBlock', 'floatingRouteTableId'] as const) : (['routeTableIds', 'ingressIps'] as const);
  for (const k of need) if (s[k] === undefined) ctx.addIssue({ code: 'custom', path: [k], message: `required by the ${s.strategy} strategy` });
});

/** The groups these settings describe: LOXIHA_GROUPS, or the one group of the single-VIP settings. */
export function groupsOf(s: Settings): GroupSettings[] {
  if (s.groups) return s.groups;
  return [{ name: s.group, vip: s.vip, eipAllocationId: s.eipAllocationId, cloudCidrBlock: s.cloudCidrBlock, floatingRouteTableId: s.floatingRouteTableId, ingressIps: s.ingressIps }];
}

export type Settings = z.infer<typeof schema>;

export function settingsFromEnv(env: NodeJS.ProcessEnv): Settings {
  const raw = Object.fromEntries(Object.entries(FUNCTION_ENV).map(([k, name]) => [k, env[name] === '' ? undefined : env[name]]));
  const r = schema.safeParse(raw);
  if (!r.success) {
    // The variable's name, then where inside it (LOXIHA_GROUPS[1].floatingRouteTableId).
    const where = (path: PropertyKey[]) => `${FUNCTION_ENV[path[0] as keyof typeof FUNCTION_ENV] ?? String(path[0])}${path.slice(1).map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('')}`;
    throw new Error(`failover function misconfigured: ${r.error.issues.map((i) => `${where(i.path)}: ${i.message}`).join('; ')}`);
  }
  return r.data;
}
