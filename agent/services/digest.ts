/**
 * A short digest of a service table as kube-loxilb gave it (addresses, port, protocol, mode,
 * selection, endpoints and weights, sources): equal on two agents exactly when they serve the same
 * services. Carried on the session-sync stream so that a backup knows whether it holds the owner's
 * services. Endpoint health and counters (local, changing) are left out; order never matters.
 */
import { createHash } from 'node:crypto';
import type { Service } from './model.ts';

export function servicesDigest(services: readonly Service[]): string {
  const canonical = services
    .map((s) =>
      JSON.stringify([
        s.externalIP,
        s.privateIP ?? '',
        s.port,
        s.protocol,
        s.mode,
        s.sel,
        s.block,
        s.inactiveTimeOut,
        [...s.endpoints].map((e) => `${e.ip}:${e.port}:${e.weight}`).sort(),
        [...s.allowedSources].sort(),
        [...s.secondaryIPs].sort(),
      ]),
    )
    .sort();
  return createHash('sha256').update(canonical.join('\n')).digest('hex').slice(0, 16);
}
