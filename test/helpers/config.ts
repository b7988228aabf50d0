import { ConfigError, resolveConfig } from '../../lib/config.ts';

/** The problems a configuration layer has over `profile` (none: it resolves). */
export function problemsOf(layer: Record<string, unknown>, profile = 'production'): string[] {
  try {
    resolveConfig(profile, layer);
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
}
