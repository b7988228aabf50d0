import { SECRET_KIND, type SecretKind } from '../../lib/contract.ts';
import type { AgentConfig } from '../config.ts';
import { log } from '../log.ts';
import { SecretMirror } from '../secret-mirror.ts';

/** How often the secret files (API token, sync key) are looked at: a rotated value is picked up within this. */
export const SECRET_RELOAD_MS = 5000;

/** How long the agent's start waits for the first read of the secrets (it goes on with the files as they are after). */
const FIRST_SECRET_READ_MS = 10_000;

export type Mirrors = { apiToken?: SecretMirror; syncKey?: SecretMirror; stop: () => Promise<void> };

/**
 * The secrets' mirrors (./secret-mirror.ts), for the secrets the config names, each having read
 * once before the files are first used; none off AWS.
 */
export async function startSecretMirrors(config: AgentConfig): Promise<Mirrors> {
  const s = config.aws?.secrets;
  if (!config.aws || !s) return { stop: async () => {} };
  const { SecretsManagerClient } = await import('@aws-sdk/client-secrets-manager');
  // Bounded: an endpoint that does not answer must not hold the agent's start (the files keep what boot wrote).
  const client = new SecretsManagerClient({ region: config.aws.region, endpoint: config.aws.endpoint, maxAttempts: 3, requestHandler: { connectionTimeout: 3000, requestTimeout: 5000 } });
  const make = (kind: SecretKind, secretId: string | undefined, file: string | undefined) => {
    if (!secretId) return undefined;
    if (!file) throw new Error(`aws.secrets names the ${kind} secret but no file holds it (${kind === SECRET_KIND.apiToken ? 'api.tokenFile' : 'sync.secretFile'})`);
    return new SecretMirror({ client, kind, secretId, file, pollMs: s.pollMs, log });
  };
  const apiToken = make(SECRET_KIND.apiToken, s.apiToken, config.api.tokenFile);
  const syncKey = make(SECRET_KIND.syncKey, s.syncKey, config.sync.secretFile);
  await Promise.race([Promise.all([apiToken?.poll(), syncKey?.poll()]), new Promise((r) => setTimeout(r, FIRST_SECRET_READ_MS).unref())]);
  apiToken?.start();
  syncKey?.start();
  return {
    ...(apiToken ? { apiToken } : {}),
    ...(syncKey ? { syncKey } : {}),
    stop: async () => {
      await Promise.all([apiToken?.stop(), syncKey?.stop()]);
      client.destroy();
    },
  };
}

/** What each mirror reports in `SecretHeld`: the pending version once `taken` says so, else the current one. */
export function secretsHeld(m: Mirrors, taken: Record<'apiToken' | 'syncKey', (pendingValue: string) => boolean>): { kind: SecretKind; fingerprint: number }[] {
  const out: { kind: SecretKind; fingerprint: number }[] = [];
  const api = m.apiToken?.held(taken.apiToken);
  if (api !== undefined) out.push({ kind: SECRET_KIND.apiToken, fingerprint: api });
  const sync = m.syncKey?.held(taken.syncKey);
  if (sync !== undefined) out.push({ kind: SECRET_KIND.syncKey, fingerprint: sync });
  return out;
}

