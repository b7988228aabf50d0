/**
 * When each service was last changed, and which were deleted when: what lets two agents that
 * disagree on services agree again without losing what kube-loxilb did. kube-loxilb sends every
 * change to every agent and never retries one that failed, so one agent may have missed a create,
 * an update or a delete. The rule, per service (by its key: address, port, protocol):
 *
 * - the later change wins, whichever agent saw it: a create or an update one agent missed is taken
 *   from the other; a delete one agent missed is applied — and a service deleted on one agent is
 *   never brought back by the other's older copy (its deletion is remembered, a tombstone, for
 *   TOMBSTONE_TTL_MS; a peer that held a deleted service longer than that brings it back);
 * - equal content is no difference, whatever the stamps; a service with no stamp (kept from before
 *   stamps existed) is older than any stamped change; a delete and a change stamped alike: the
 *   delete wins.
 *
 * The stamps are the agents' wall clocks (kept in step by NTP on AWS): kube-loxilb's two calls for one
 * change reach the agents within milliseconds of each other, and its next change comes seconds later.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { servicesDigest } from './digest.ts';
import type { Service } from './model.ts';
import { serviceKey } from './model.ts';

/** How long a deletion is remembered. */
export const TOMBSTONE_TTL_MS = 24 * 3600_000;
/** At most this many deletions are remembered (the oldest go first). */
export const TOMBSTONE_MAX = 20_000;

/** What one agent holds, as its peer is told it: each service with when it was last changed, and the deletions remembered. */
export interface LedgerView {
  live: { service: Service; at: number }[];
  gone: { key: string; at: number }[];
}

/** What an agent does to take its peer's later changes (pure: mergePlan). */
export interface MergePlan {
  set: { service: Service; at: number }[];
  del: { key: string; at: number }[];
  /** Deletions to remember (the peer's, for services this agent never had). */
  forget: { key: string; at: number }[];
}

const same = (a: Service, b: Service) => servicesDigest([a]) === servicesDigest([b]);

/** The changes that bring `mine` up to `theirs` by the rule above. */
export function mergePlan(mine: LedgerView, theirs: LedgerView): MergePlan {
  const live = new Map(mine.live.map((l) => [serviceKey(l.service), l]));
  const gone = new Map(mine.gone.map((g) => [g.key, g.at]));
  const plan: MergePlan = { set: [], del: [], forget: [] };
  for (const t of theirs.live) {
    const key = serviceKey(t.service);
    const m = live.get(key);
    if (m) {
      if (t.at > m.at && !same(m.service, t.service)) plan.set.push(t);
      continue;
    }
    const deletedAt = gone.get(key);
    if (deletedAt === undefined || t.at > deletedAt) plan.set.push(t);
  }
  for (const g of theirs.gone) {
    const m = live.get(g.key);
    if (m) {
      // A delete and a change stamped alike: the delete wins, on both sides.
      if (g.at >= m.at) plan.del.push(g);
    } else if ((gone.get(g.key) ?? -1) < g.at) plan.forget.push(g);
  }
  return plan;
}

const fileSchema = z.object({ v: z.literal(1), stamps: z.record(z.string(), z.number()), gone: z.record(z.string(), z.number()) });

export class ServiceLedger {
  private readonly file: string | undefined;
  private readonly now: () => number;
  private readonly stamps = new Map<string, number>();
  private readonly gone = new Map<string, number>();
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;

  /** `stateDir`: where the stamps are kept across restarts (written at most once a second); none: in memory only. */
  constructor(stateDir?: string, now: () => number = Date.now) {
    this.file = stateDir ? join(stateDir, 'services.stamps.json') : undefined;
    this.now = now;
    if (!this.file) return;
    try {
      const saved = fileSchema.parse(JSON.parse(readFileSync(this.file, 'utf8')));
      for (const [k, at] of Object.entries(saved.stamps)) this.stamps.set(k, at);
      for (const [k, at] of Object.entries(saved.gone)) this.gone.set(k, at);
    } catch {
      // none yet, or unreadable: every service counts as older than any stamped change
    }
  }

  /** Records changes: a service set (`Service`) or deleted (undefined), at `at` (now unless the peer's stamp). */
  record(changes: ReadonlyMap<string, Service | undefined>, at: (key: string) => number = () => this.now()): void {
    let deleted = false;
    for (const [key, s] of changes) {
      const t = at(key);
      if (s) {
        this.stamps.set(key, t);
        this.gone.delete(key);
      } else {
        this.stamps.delete(key);
        this.gone.set(key, t);
        deleted = true;
      }
    }
    this.touch();
    // A deletion is written at once: lost in a crash, a peer that missed it would bring the service back.
    if (deleted) this.flushQuietly();
  }

  /** Remembers the peer's deletions of services this agent never had (so they propagate, and stay deleted). */
  remember(gone: { key: string; at: number }[]): void {
    for (const g of gone) if ((this.gone.get(g.key) ?? -1) < g.at) this.gone.set(g.key, g.at);
    this.touch();
  }

  view(services: readonly Service[]): LedgerView {
    this.trim();
    return {
      live: services.map((service) => ({ service, at: this.stamps.get(serviceKey(service)) ?? 0 })),
      gone: [...this.gone].map(([key, at]) => ({ key, at })),
    };
  }

  /** Writes what is pending now (on stop). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.trim();
    if (!this.file || !this.dirty) return;
    this.dirty = false;
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify({ v: 1, stamps: Object.fromEntries(this.stamps), gone: Object.fromEntries(this.gone) }));
    renameSync(tmp, this.file);
  }

  private touch(): void {
    this.dirty = true;
    if (!this.file || this.timer) return;
    this.timer = setTimeout(() => this.flushQuietly(), 1000);
    this.timer.unref();
  }

  /** Writes now; a failure leaves it pending (the next change or stop tries again). */
  private flushQuietly(): void {
    try {
      this.flush();
    } catch {
      this.dirty = true;
    }
  }

  private trim(): void {
    const oldest = this.now() - TOMBSTONE_TTL_MS;
    for (const [k, at] of this.gone) if (at < oldest) this.gone.delete(k);
    if (this.gone.size <= TOMBSTONE_MAX) return;
    const byAge = [...this.gone].sort((a, b) => a[1] - b[1]);
    for (const [k] of byAge.slice(0, this.gone.size - TOMBSTONE_MAX)) this.gone.delete(k);
  }
}
