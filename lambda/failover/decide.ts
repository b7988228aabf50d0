/**
 * Pure: who should own the VIP. No I/O; every input is in the arguments.
 */
import type { InstanceView, Observed } from './snapshot.ts';

export interface Policy {
  failback: 'never' | 'preferred';
  /** Minimum time between two voluntary moves, and healthy time before a failback. */
  holdDownMs: number;
  /** A heartbeat older than this is stale. */
  staleMs: number;
}

export interface Hints {
  /** An instance reported failed by evidence outside the snapshot (master's alarm, peer's fast path). */
  suspect?: string;
  /** A manual target (planned maintenance). */
  to?: string;
  /** When the VIP last moved (from the lease record). */
  lastMoveAt?: number;
  /**
   * The suspect comes from an operator's explicit request: the hold-down (which exists against
   * flapping from automatic triggers) does not apply; health checks still do.
   */
  explicit?: boolean;
  /** An instance its peer reported unreachable when the VIP left it (lease): unhealthy until it beats after. */
  lost?: { instanceId: string; at: number };
  /**
   * Where the placement over VIP groups (./placement.ts) put this group: when the VIP must move or be
   * placed, it goes there if that instance is a healthy candidate (else to the best candidate, as
   * without groups). It never makes a VIP move that would otherwise stay — except as `steadyMove`.
   */
  placedTo?: string;
  /**
   * The placement moves this group while its owner is fine (a reconcile's bounded steady-state
   * moves): `rebalance` off a slot above the spread bound, `failback` to its preferred slot. A
   * planned move to `placedTo`, only outside the hold-down and to a healthy instance that beats.
   */
  steadyMove?: 'rebalance' | 'failback';
}

export interface Health {
  instanceId: string;
  index: number;
  healthy: boolean;
  why: string;
  /** When EC2 launched it (ms since epoch): how long a new instance has had to become ready. */
  launchedAt?: number;
  /** Its agent's latest report that its sessions are in sync with the peer's (set for a healthy instance). */
  sessionsInSync?: boolean;
  /** Its agent's latest report that it serves the owner's services (set for a healthy instance that reported it). */
  servicesMatch?: boolean;
}

export type Decision =
  | { outcome: 'keep'; owner: string; reason: string; health: Health[] }
  | { outcome: 'move'; owner: string; from: string | undefined; reason: string; planned: boolean; health: Health[] }
  | { outcome: 'no-healthy-instance'; reason: string; health: Health[] }
  | { outcome: 'rejected'; reason: string; health: Health[] };

export function healthOf(i: InstanceView, now: number, staleMs: number): Health {
  const base = { instanceId: i.id, index: i.index, ...(i.launchedAt !== undefined ? { launchedAt: i.launchedAt } : {}) };
  if (i.state !== 'running') return { ...base, healthy: false, why: `instance is ${i.state}` };
  if (i.draining) return { ...base, healthy: false, why: 'its Auto Scaling group is replacing it (terminating)' };
  if (i.statusOk === false) return { ...base, healthy: false, why: 'EC2 status check impaired' };
  if (i.lastHeartbeatAt === undefined) return { ...base, healthy: false, why: 'no agent heartbeat seen' };
  // Alive but not ready (its kernel does not forward as it must): never where the VIP goes, nor stays.
  if (i.ready === false) return { ...base, healthy: false, why: 'agent reports not ready (kernel prerequisites unmet)' };
  const age = now - i.lastHeartbeatAt;
  if (age > staleMs) return { ...base, healthy: false, why: `agent heartbeat stale (${Math.round(age / 1000)} s old)` };
  return { ...base, healthy: true, why: `heartbeat ${Math.max(0, Math.round(age / 1000))} s old`, ...(i.sessionsInSync !== undefined ? { sessionsInSync: i.sessionsInSync } : {}), ...(i.servicesMatch !== undefined ? { servicesMatch: i.servicesMatch } : {}) };
}

/**
 * An instance its peer lost (a reboot, a hang) still has a fresh heartbeat for up to the stale bound:
 * it is not healthy until a heartbeat newer than the report shows it back (heartbeats are read by
 * period: one in a period that starts after the report, so at most a period later than it came back).
 */
export function withLost(h: Health, i: InstanceView, lost: Hints['lost']): Health {
  if (!h.healthy || !lost || lost.instanceId !== i.id || (i.lastHeartbeatAt !== undefined && i.lastHeartbeatAt > lost.at)) return h;
  const { sessionsInSync: _inSync, servicesMatch: _match, ...rest } = h;
  return { ...rest, healthy: false, why: `its peer lost it ${new Date(lost.at).toISOString()} and it has not beaten since` };
}

/**
 * Candidates in order of preference: in sync with the peer first, then serving the owner's services,
 * then by index (instance 0 is preferred). One whose services differ is still a candidate: a survivor
 * missing a service beats a dead owner.
 */
function rankCandidates(candidates: InstanceView[]): InstanceView[] {
  return [...candidates].sort(
    (a, b) => Number(b.sessionsInSync === true) - Number(a.sessionsInSync === true) || Number(b.servicesMatch !== false) - Number(a.servicesMatch !== false) || a.index - b.index,
  );
}

/** What the result says of a chosen instance whose services differ from the owner's. */
const servicesCaveat = (i: InstanceView) =>
  i.servicesMatch === false ? `; ${i.id} was the only healthy choice and its services differ from the owner's (flows of the services it lacks are lost until kube-loxilb installs them there)` : '';

export function decide(snapshot: Observed, currentOwner: string | undefined, policy: Policy, hints: Hints = {}): Decision {
  const { now } = snapshot;
  const health = snapshot.instances.map((i) => withLost(healthOf(i, now, policy.staleMs), i, hints.lost));
  const healthyIds = new Set(health.filter((h) => h.healthy).map((h) => h.instanceId));
  const byId = new Map(snapshot.instances.map((i) => [i.id, i]));
  const sinceMove = hints.lastMoveAt === undefined ? Infinity : now - hints.lastMoveAt;

  if (hints.to !== undefined) {
    const target = byId.get(hints.to);
    if (!target) return { outcome: 'rejected', reason: `${hints.to} is not one of this deployment's LB instances`, health };
    if (!healthyIds.has(hints.to)) {
      return { outcome: 'rejected', reason: `${hints.to} is not healthy (${health.find((h) => h.instanceId === hints.to)!.why}); refusing to move the VIP to it`, health };
    }
    if (currentOwner === hints.to) return { outcome: 'keep', owner: hints.to, reason: 'the VIP is already on the requested instance', health };
    return { outcome: 'move', owner: hints.to, from: currentOwner, reason: `manual move requested${servicesCaveat(target)}`, planned: currentOwner !== undefined && healthyIds.has(currentOwner), health };
  }

  const ownerHealthy = currentOwner !== undefined && healthyIds.has(currentOwner);
  // A suspect that still beats is only believed outside the hold-down: two alarms in a row cannot flap the VIP.
  const suspectBelieved = hints.suspect !== undefined && hints.suspect === currentOwner && (!ownerHealthy || hints.explicit === true || sinceMove >= policy.holdDownMs);

  if (ownerHealthy && !suspectBelieved) {
    const placed = hints.steadyMove && hints.placedTo ? snapshot.instances.find((i) => i.id === hints.placedTo) : undefined;
    if (placed && placed.id !== currentOwner && healthyIds.has(placed.id) && sinceMove >= policy.holdDownMs && placed.lastHeartbeatAt !== undefined) {
      const reason = hints.steadyMove === 'failback' ? "failback to the group's preferred slot" : 'rebalance: its slot holds more groups than the spread bound';
      return { outcome: 'move', owner: placed.id, from: currentOwner, reason, planned: true, health };
    }
    const preferred = snapshot.instances.find((i) => i.index === 0);
    if (
      policy.failback === 'preferred' &&
      preferred &&
      preferred.id !== currentOwner &&
      healthyIds.has(preferred.id) &&
      sinceMove >= policy.holdDownMs &&
      preferred.lastHeartbeatAt !== undefined
    ) {
      return { outcome: 'move', owner: preferred.id, from: currentOwner, reason: 'failback to the preferred instance', planned: true, health };
    }
    const why = hints.suspect === currentOwner ? `owner reported failed but still healthy within the ${Math.round(policy.holdDownMs / 1000)} s hold-down` : 'owner is healthy';
    return { outcome: 'keep', owner: currentOwner!, reason: why, health };
  }

  const candidates = rankCandidates(snapshot.instances.filter((i) => healthyIds.has(i.id) && i.id !== (suspectBelieved ? hints.suspect : undefined)));
  const chosen = candidates.find((c) => c.id === hints.placedTo) ?? candidates[0];
  if (!chosen) {
    const why = health.map((h) => `${h.instanceId} (lb${h.index}): ${h.why}`).join('; ');
    return { outcome: 'no-healthy-instance', reason: `no healthy instance to own the VIP; changing nothing. ${why}`, health };
  }
  const reason =
    currentOwner === undefined
      ? 'placing the VIP: no instance holds it'
      : suspectBelieved && ownerHealthy
        ? hints.explicit
          ? `operator asked to move the VIP off ${currentOwner}`
          : `owner ${currentOwner} reported failed`
        : `owner ${currentOwner} is unhealthy (${health.find((h) => h.instanceId === currentOwner)?.why ?? 'not an LB instance of this deployment'})`;
  return { outcome: 'move', owner: chosen.id, from: currentOwner, reason: `${reason}${servicesCaveat(chosen)}`, planned: false, health };
}
