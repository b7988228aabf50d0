/**
 * The services kube-loxilb asked for: what the API changes, in the order it was asked. Changes
 * that arrive while the kernel is busy are coalesced into one kernel change; each caller learns
 * its own outcome. The state file is written after the kernel has the change, in the same order.
 */
import { ConflictError, type Datapath, type Stage } from '../datapath/controller.ts';
import { endpointKey, type Service, serviceKey } from './model.ts';
import type { SavedState } from './store.ts';

/** LoxiLB's `oper` on `POST /config/loadbalancer`: replace the service, or add / remove the endpoints given. */
export const OPER = { set: 0, attach: 1, detach: 2 } as const;
export type Oper = (typeof OPER)[keyof typeof OPER];

/** A change that can never apply (it would take another service's address or id): a 400, nothing changed. */
export class RejectedChange extends Error {}

type Changes = Map<string, Service | undefined>;
/** How long a batch under load waits for the callers of the last one (see gather()). */
const GATHER_MS = 3;
interface Pending {
  /** From the services as staged so far, the changes this request makes. */
  changes: (current: ReadonlyMap<string, Service>) => Changes;
  /** What it changed, once staged. */
  applied?: Changes;
  /** When each change was made, for changes taken from the peer (its stamps); unset: now. */
  stamps?: ReadonlyMap<string, number>;
  down?: ReadonlySet<string>;
  resolve: (n: number) => void;
  reject: (e: Error) => void;
}

export class ServiceRegistry {
  private readonly datapath: Datapath;
  private readonly store: { save(state: SavedState): Promise<void> };
  private pending: Pending[] = [];
  private draining = false;
  private last = { size: 0, waiting: 0, at: 0 };
  /** Told after each batch reached the kernel (the prober follows the services). */
  onChanged: (services: Service[]) => void = () => undefined;
  /** Told, per request that changed something, what it set or deleted — with the peer's stamps for a merge (./ledger.ts). */
  onApplied: (changes: ReadonlyMap<string, Service | undefined>, stamps: ReadonlyMap<string, number> | undefined) => void = () => undefined;
  onError: (msg: string, extra: Record<string, unknown>) => void = () => undefined;

  constructor(datapath: Datapath, store: { save(state: SavedState): Promise<void> }) {
    this.datapath = datapath;
    this.store = store;
  }

  list(): Service[] {
    return this.datapath.list();
  }

  isDown(s: Service, e: { ip: string; port: number }): boolean {
    return this.datapath.isDown(s, e);
  }

  /** Creates or replaces a service (oper 0), or attaches (1) / detaches (2) the endpoints it lists. */
  set(service: Service, oper: Oper): Promise<void> {
    const key = serviceKey(service);
    return this.enqueue((current) => {
      const existing = current.get(key);
      if (oper === OPER.attach && existing) {
        const eps = new Map(existing.endpoints.map((e) => [endpointKey(e), e]));
        for (const e of service.endpoints) eps.set(endpointKey(e), e);
        return new Map([[key, { ...existing, endpoints: [...eps.values()] }]]);
      }
      if (oper === OPER.detach && existing) {
        const drop = new Set(service.endpoints.map(endpointKey));
        return new Map([[key, { ...existing, endpoints: existing.endpoints.filter((e) => !drop.has(endpointKey(e))) }]]);
      }
      return new Map([[key, service]]);
    }).then(() => undefined);
  }

  /** Removes one service; resolves to how many were removed (0 or 1). */
  delete(key: string): Promise<number> {
    return this.enqueue((current) => new Map(current.has(key) ? [[key, undefined]] : []));
  }

  deleteByName(name: string): Promise<number> {
    return this.enqueue((current) => new Map([...current].filter(([, s]) => s.name === name).map(([k]) => [k, undefined])));
  }

  deleteAll(): Promise<number> {
    return this.enqueue((current) => new Map([...current.keys()].map((k) => [k, undefined])));
  }

  /**
   * The peer's later changes (./ledger.ts mergePlan): services set and deleted as one request,
   * stamped with the peer's times. Resolves to how many services it changed.
   */
  merge(set: readonly { service: Service; at: number }[], del: readonly { key: string; at: number }[]): Promise<number> {
    const stamps = new Map<string, number>([...set.map((x) => [serviceKey(x.service), x.at] as const), ...del.map((d) => [d.key, d.at] as const)]);
    return this.enqueue(
      (current) =>
        new Map<string, Service | undefined>([
          ...set.map((x) => [serviceKey(x.service), x.service] as const),
          ...del.filter((d) => current.has(d.key)).map((d) => [d.key, undefined] as const),
        ]),
      undefined,
      stamps,
    );
  }

  /** New endpoint health from the probes (kept in the state file, so a restart starts from it). */
  setDown(down: ReadonlySet<string>): Promise<void> {
    return this.enqueue(() => new Map(), down).then(() => undefined);
  }

  private enqueue(changes: Pending['changes'], down?: ReadonlySet<string>, stamps?: ReadonlyMap<string, number>): Promise<number> {
    return new Promise((resolve, reject) => {
      this.pending.push({ changes, down, resolve, reject, ...(stamps ? { stamps } : {}) });
      if (!this.draining) void this.drain();
    });
  }

  /**
   * One batch at a time: into the kernel, then into the state file (never ahead of the kernel),
   * then every caller of the batch is answered. Requests that arrive meanwhile form the next
   * batch: the cost of an nft transaction is mostly fixed, so the more a batch holds the better.
   */
  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.pending.length) {
        await this.gather();
        const batch = this.pending.splice(0);
        let outcomes: (Error | number)[];
        try {
          outcomes = await this.run(batch);
        } catch (e) {
          // The kernel refused the batch even as a full table: try each request alone, so one cannot fail the others.
          outcomes = [];
          for (const p of batch) outcomes.push(batch.length === 1 ? (e as Error) : await this.run([p]).then((o) => o[0]!, (err: Error) => err));
        }
        const state = { services: this.datapath.list(), down: [...this.datapath.down] };
        batch.forEach((p, i) => {
          if (!(outcomes[i] instanceof Error) && p.applied?.size) this.onApplied(p.applied, p.stamps);
        });
        this.onChanged(state.services);
        let persisted: Error | undefined;
        try {
          await this.store.save(state);
        } catch (e) {
          persisted = new Error(`applied, but the state file could not be written: ${(e as Error).message}`);
          this.onError('could not write the state file', { error: (e as Error).message });
        }
        batch.forEach((p, i) => {
          const o = outcomes[i]!;
          if (o instanceof Error) p.reject(o);
          else if (persisted) p.reject(persisted);
          else p.resolve(o);
        });
        this.last = { size: batch.length, waiting: this.pending.length, at: performance.now() };
      }
    } finally {
      this.draining = false;
    }
  }

  /**
   * Under load (the last batch held several requests and ended a moment ago), waits up to
   * GATHER_MS for the callers it just answered: they send their next requests within a round
   * trip, and without the wait they trail behind in a batch of their own, so that clients
   * settle into two half-size batches taking turns. A lone caller never waits.
   */
  private async gather(): Promise<void> {
    if (this.last.size < 2 || performance.now() - this.last.at > GATHER_MS) return;
    // Those already waiting when it ended, plus one more from each caller it answered.
    const want = this.last.waiting + this.last.size;
    const until = performance.now() + GATHER_MS;
    while (this.pending.length < want && performance.now() < until) await new Promise((r) => setTimeout(r, 0.5));
  }

  /** Stages each request of the batch in order and commits them to the kernel together; per request, how many services it changed or why it could not. */
  private run(batch: Pending[]): Promise<(Error | number)[]> {
    return this.datapath.transaction((stage: Stage) =>
      batch.map((p): Error | number => {
        try {
          const changes = p.changes(stage.current());
          stage.services(changes);
          p.applied = changes;
          if (p.down) stage.down(p.down);
          return changes.size;
        } catch (e) {
          return e instanceof ConflictError ? new RejectedChange(e.message) : (e as Error);
        }
      }),
    );
  }
}
