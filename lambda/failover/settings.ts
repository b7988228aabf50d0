/** The function's settings, from the environment the CDK app sets (validated: a bad deploy fails loudly at init). */
import * as z from 'zod';
import { DEFAULT_GROUP, DEFAULT_HOLD_DOWN_SECONDS, FAILBACK_POLICIES, FUNCTION_ENV, GROUP_NAME_PATTERN, ipv4Schema, SLOT_READY_TIMEOUT_SECONDS, VIP_STRATEGIES } from '../../lib/contract.ts';

/** A comma-separated list in one environment variable. */
const list = (item: z.ZodType<string, string>) =>
  z
    .string()
    .transform((v) => v.split(',').map((x) => x.trim()).filter(Boolean))
    .pipe(z.array(item).min(1));

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
}).superRefine((s, ctx) => {
  const need = s.strategy === 'eni' ? (['cloudCidrBlock', 'floatingRouteTableId'] as const) : (['routeTableIds', 'ingressIps'] as const);
  for (const k of need) if (s[k] === undefined) ctx.addIssue({ code: 'custom', path: [k], message: `required by the ${s.strategy} strategy` });
});

export type Settings = z.infer<typeof schema>;

export function settingsFromEnv(env: NodeJS.ProcessEnv): Settings {
  const raw = Object.fromEntries(Object.entries(FUNCTION_ENV).map(([k, name]) => [k, env[name] === '' ? undefined : env[name]]));
  const r = schema.safeParse(raw);
  if (!r.success) {
    throw new Error(`failover function misconfigured: ${r.error.issues.map((i) => `${FUNCTION_ENV[i.path[0] as keyof typeof FUNCTION_ENV] ?? i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return r.data;
}
