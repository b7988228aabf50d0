/** The function's settings, from the environment the CDK app sets (validated: a bad deploy fails loudly at init). */
import * as z from 'zod';
import { DEFAULT_HOLD_DOWN_SECONDS, FAILBACK_POLICIES, FUNCTION_ENV } from '../../lib/contract.ts';

const schema = z.object({
  deploymentId: z.string().min(1),
  vpcId: z.string().regex(/^vpc-[0-9a-f]+$/),
  cloudCidrBlock: z.string().regex(/^[\d.]+\/\d+$/),
  vip: z.string().regex(/^[\d.]+$/),
  eipAllocationId: z.string().regex(/^eipalloc-[0-9a-f]+$/),
  floatingRouteTableId: z.string().regex(/^rtb-[0-9a-f]+$/),
  leaseTable: z.string().min(1),
  topicArn: z.string().optional(),
  eventBusName: z.string().default('default'),
  failback: z.enum(FAILBACK_POLICIES).default('never'),
  holdDownSeconds: z.coerce.number().int().min(0).default(DEFAULT_HOLD_DOWN_SECONDS),
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
