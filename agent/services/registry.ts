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
interface Pending {
  /** From the services as staged so far, the changes this request makes. */
  changes: (current: ReadonlyMap<string, Service>) => Changes;
  down?: ReadonlySet<string>;
  resolve: (n: number) => void;
  reject: (e: Error) => void;
}

export class ServiceRegistry {
  private readonly datapath: Datapath;
  private readonly store: { save(state: SavedState): Promise<void> };
  private pending: Pending[] = [];
  private draining = false;
  /** Told after each batch reached the kernel (the prober follows the services). */
  onChanged: (services: Service[]) => void = () => undefined;
  onError: (msg: string, extra: Record<string, unknown>) => void = () => undefined;

  constructor(datapath: Datapath, store: { save(state: SavedState): Promise<void> }) {
    this.datapath = datapath;
    this.store = store;
  }

  list(): Service[] {
    return this.datapath.list();
  }

  get(key: string): Service | undefined {
    return this.datapath.get(key);
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

  /** New endpoint health from the probes (kept in the state file, so a restart starts from it). */
  setDown(down: ReadonlySet<string>): Promise<void> {
    return this.enqueue(() => new Map(), down).then(() => undefined);
  }

  private enqueue(changes: Pending['changes'], down?: ReadonlySet<string>): Promise<number> {
    return new Promise((resolve, reject) => {
      this.pending.push({ changes, down, resolve, reject });
      if (!this.draining) void this.drain();
    });
  }

  /**
   * One batch at a time into the kernel. The state file of a batch is written while the next batch
   * goes to the kernel (never ahead of it: a batch is saved only after its commit, and saves stay
   * in order); each caller is answered once its batch is both in the kernel and on disk.
   */
  private async drain(): Promise<void> {
    this.draining = true;
    let saving: Promise<void> = Promise.resolve();
    try {
      for (;;) {
        if (!this.pending.length) {
          // Requests that arrive while the last save finishes are drained here, not stranded.
          await saving;
          if (!this.pending.length) break;
        }
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
        this.onChanged(state.services);
        const previous = saving;
        saving = (async () => {
          await previous;
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
        })();
      }
    } finally {
      this.draining = false;
    }
  }

  /** Stages each request of the batch in order and commits them to the kernel together; per request, how many services it changed or why it could not. */
  private run(batch: Pending[]): Promise<(Error | number)[]> {
    return this.datapath.transaction((stage: Stage) =>
      batch.map((p): Error | number => {
        try {
          const changes = p.changes(stage.current());
          stage.services(changes);
          if (p.down) stage.down(p.down);
          return changes.size;
        } catch (e) {
          return e instanceof ConflictError ? new RejectedChange(e.message) : (e as Error);
        }
      }),
    );
  }
}
