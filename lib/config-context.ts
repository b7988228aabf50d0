import { readFileSync } from 'node:fs';
import { ConfigError, type LoxihaConfig, resolveConfig } from './config.ts';

const OVERRIDE_PREFIX = 'loxiha.';

/**
 * Builds the configuration from CDK context: `profile`, the `loxiha` object (cdk.json),
 * `configFile` (a JSON file) and `loxiha.<key>` overrides (JSON values, or plain strings).
 */
export function configFromContext(get: (key: string) => unknown, all: Record<string, unknown>): LoxihaConfig {
  const problems: string[] = [];
  const profile = get('profile') ?? 'production';
  const fromCdkJson = get('loxiha');
  if (fromCdkJson !== undefined && (typeof fromCdkJson !== 'object' || fromCdkJson === null || Array.isArray(fromCdkJson))) {
    problems.push('context "loxiha" must be an object');
  }
  let fromFile: Record<string, unknown> | undefined;
  const file = get('configFile');
  if (file !== undefined) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(String(file), 'utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) problems.push(`configFile ${String(file)}: must hold a JSON object`);
      else fromFile = parsed as Record<string, unknown>;
    } catch (e) {
      problems.push(`configFile ${String(file)}: ${(e as Error).message}`);
    }
  }
  const overrides: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(all)) {
    if (!key.startsWith(OVERRIDE_PREFIX)) continue;
    overrides[key.slice(OVERRIDE_PREFIX.length)] = typeof value === 'string' ? parseLoose(value) : value;
  }
  if (problems.length) throw new ConfigError(problems);
  return resolveConfig(String(profile), fromCdkJson as Record<string, unknown> | undefined, fromFile, overrides);
}

function parseLoose(value: string): unknown {
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}
