/**
 * The agent's configuration file (/etc/loxiha/agent.json), written by the CDK app
 * from the deployment's values, and by the tests/demo for namespaces.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { PORTS } from '../lib/contract.ts';

const ipv4 = z.string().regex(/^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/, 'must be an IPv4 address');

export const agentConfigSchema = z
  .object({
    deploymentId: z.string().min(1),
    /** LoxiLB instance name reported by the API. */
    instanceName: z.string().min(1).default('llb-inst0'),
    instanceIndex: z.number().int().min(0),
    selfIp: ipv4,
    peers: z.array(z.object({ index: z.number().int().min(0), ip: ipv4 }).strict()),
    vip: ipv4,
    cloudCidrBlock: z.string(),
    /** HA role reported without an `aws` section (tests, the packet path alone), or until IMDS first answers. */
    initialRole: z.enum(['MASTER', 'BACKUP', 'NOT_DEFINED']).default('NOT_DEFINED'),
    api: z
      .object({
        listen: ipv4.default('0.0.0.0'),
        port: z.number().int().min(1).max(65535).default(PORTS.agentApi),
        /** File holding a bearer token; when set every request must carry it. */
        tokenFile: z.string().optional(),
      })
      .strict()
      .prefault({}),
    sync: z
      .object({
        port: z.number().int().min(1).max(65535).default(PORTS.peerSync),
        heartbeatPort: z.number().int().min(1).max(65535).default(PORTS.peerHeartbeat),
        /** File holding the peers' shared key (on AWS written at boot from Secrets Manager, root only). */
        secretFile: z.string().optional(),
        /** Peer heartbeat period, and how long without a beat before the peer counts as lost. */
        heartbeatIntervalMs: z.number().int().min(100).max(5000).default(1000),
        peerLossAfterMs: z.number().int().min(300).max(30_000).default(3500),
      })
      .strict()
      .prefault({}),
    aws: z
      .object({
        region: z.string(),
        failoverFunctionName: z.string(),
        metricNamespace: z.string(),
        /** Endpoint override for an AWS emulator (the local simulation); unset on AWS. */
        endpoint: z.url({ protocol: /^https?$/ }).optional(),
        /** Instance metadata endpoint (IMDSv2); overridden only by tests and the simulation. */
        imdsEndpoint: z.url({ protocol: /^https?$/ }).default('http://169.254.169.254'),
        /** How often the agent beats to CloudWatch (the alarms look at 10 s periods). */
        heartbeatIntervalMs: z.number().int().min(1000).max(10_000).default(5000),
      })
      .strict()
      .optional(),
    /** Where the services are persisted. */
    stateDir: z.string().default('/var/lib/loxiha'),
    /** nftables table the agent owns (inet family). */
    nftTable: z.string().regex(/^[a-z][a-z0-9_]{0,30}$/).default('loxiha'),
    /** Interfaces carrying load-balanced traffic (flowtable fast path where the kernel has it). */
    dataInterfaces: z.array(z.string().regex(/^[\w.-]{1,15}$/)).default([]),
    /** Seed of the flow hash: identical on every instance so the same flow picks the same endpoint. */
    hashSeed: z.number().int().min(0).max(0xffffffff).default(0x10a1ba),
  })
  .strict();

export type AgentConfig = z.infer<typeof agentConfigSchema>;
export type AgentConfigInput = z.input<typeof agentConfigSchema>;

export function parseAgentConfig(input: unknown): AgentConfig {
  const r = agentConfigSchema.safeParse(input);
  if (!r.success) {
    throw new Error(`invalid agent config:\n${r.error.issues.map((i) => `  - ${i.path.join('.') || '(root)'}: ${i.message}`).join('\n')}`);
  }
  return r.data;
}

export function loadAgentConfig(path: string): AgentConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`cannot read agent config ${path}: ${(e as Error).message}`);
  }
  return parseAgentConfig(raw);
}
