/** Reads the agent's configuration file; its schema is part of the contract the CDK app writes it by (lib/contract.ts). */
import { readFileSync } from 'node:fs';
import { type AgentConfig, agentConfigSchema } from '../lib/contract.ts';

export type { AgentConfig, AgentConfigInput } from '../lib/contract.ts';

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
