/**
 * Keeps the kernel table equal to a list of services (and endpoint health): changes arrive as
 * transactions of staged service changes, leave as one incremental diff (two nft transactions
 * at most), and the table is checked against what it should hold, replaced in full whenever it
 * differs, a transaction failed, or the agent cannot prove what is there.
 */
import { type AddressAliases, endpointKey, type Service, serviceKey } from '../services/model.ts';
import { Ledger } from './ledger.ts';
import { baseText, contribution, type CounterValue, diffText, endpointElement, fullText, type Model } from './render.ts';

export { ConflictError } from './ledger.ts';

/** The part of the nft adapter the datapath uses (the tests' fake implements it too). */
export interface NftPort {
  apply(text: string): Promise<void>;
  /** What the table's revision set says: the state's hash, and whether a two-phase change was cut off. */
  revision(): Promise<{ hash: string; inFlight: boolean } | undefined>;
  exists(): Promise<boolean>;
  counters(): Promise<Map<string, CounterValue>>;
}

export interface DatapathOptions {
  table: string;
  hashSeed: number;
  flowtableDevices?: string[];
  /** Addresses served as others (route strategy: the ingress IP as the VIP). */
  aliases?: AddressAliases;
  /** The routing mark of a service's VIP group when it is not the default group's (several groups). */
  routeMarkOf?: (s: Service) => number | undefined;
}

export interface ServiceCounters {
  service: CounterValue;
  endpoints: Map<string, CounterValue>;
}

/** Stages changes inside `Datapath.transaction`; the kernel sees them all at once on commit. */
export interface Stage {
  /** The services as staged so far. */
  current(): ReadonlyMap<string, Service>;
  /** Replaces (or with undefined removes) services; throws ConflictError and stages nothing when one would take another's address or id. */
  services(changes: ReadonlyMap<string, Service | undefined>): void;
  /** New endpoint health: `${serviceKey}#${endpointKey}` of the endpoints that are down. */
  down(down: ReadonlySet<string>): void;
}

export class Datapath {
  private readonly nft: NftPort;
  private readonly o: DatapathOptions;
  private services = new Map<string, Service>();
  private downSet: ReadonlySet<string> = new Set();
  private ledger: Ledger;
  /** Whether the kernel holds exactly what the ledger says; false after a failure or before the first apply. */
  private inSync = false;
  private queue: Promise<unknown> = Promise.resolve();
  /** Logs recoveries (a refused diff, a table changed behind the agent's back). */
  onWarn: (msg: string, extra: Record<string, unknown>) => void = () => undefined;
  /** Full replaces made since start (start-up included): every other change went as a diff. */
  fullApplies = 0;

  constructor(nft: NftPort, options: DatapathOptions) {
    this.nft = nft;
    this.o = options;
    this.ledger = this.freshLedger();
  }

  private freshLedger(): Ledger {
    const routing = this.o.routeMarkOf !== undefined;
    return new Ledger(baseText(this.o.flowtableDevices ?? [], routing), this.o.flowtableDevices ?? [], routing);
  }

  list(): Service[] {
    return [...this.services.values()];
  }

  get down(): ReadonlySet<string> {
    return this.downSet;
  }

  get revision(): string {
    return this.ledger.hash;
  }

  /** The whole table as it should be now. */
  desired(): Model {
    return this.ledger.model();
  }

  isDown(s: Service, endpoint: { ip: string; port: number }): boolean {
    return this.downSet.has(`${serviceKey(s)}#${endpointKey(endpoint)}`);
  }

  /** Runs `fn` after every earlier transaction or check. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Adopts the kernel's table when it provably holds these services: its revision is this state's
   * hash and no two-phase change was cut off half way. Anything else is replaced in full.
   */
  adopt(services: Service[], down: ReadonlySet<string> = new Set()): Promise<'adopted' | 'applied'> {
    return this.serial(async () => {
      this.load(services, down);
      const inKernel = await this.nft.revision();
      if (inKernel && !inKernel.inFlight && inKernel.hash === this.ledger.hash) {
        this.inSync = true;
        return 'adopted';
      }
      if (inKernel?.inFlight) this.onWarn('the table was left between two phases of a change (the agent stopped mid-change); replacing it', {});
      await this.replace();
      return 'applied';
    });
  }

  private load(services: Service[], down: ReadonlySet<string>): void {
    this.services = new Map(services.map((s) => [serviceKey(s), s]));
    this.downSet = new Set(down);
    this.ledger = this.freshLedger();
    for (const [k, s] of this.services) this.ledger.put(k, contribution(s, this.downSet, this.o.hashSeed, this.o.aliases, this.o.routeMarkOf));
  }

  /**
   * Stages changes with `fn`, then brings the kernel to the result in one diff. If the kernel
   * refuses, the whole table is replaced; if that fails too, everything staged is undone and the
   * error thrown.
   */
  transaction<T>(fn: (stage: Stage) => T): Promise<T> {
    return this.serial(async () => {
      const beforeServices = this.services;
      const beforeDown = this.downSet;
      this.ledger.begin();
      const services = new Map(this.services);
      let down = this.downSet;
      const stage: Stage = {
        current: () => services,
        services: (changes) => {
          const staged: [string, Service | undefined][] = [];
          try {
            for (const [k, s] of changes) {
              const before = services.get(k);
              if (before === s) continue;
              this.ledger.put(k, s ? contribution(s, down, this.o.hashSeed, this.o.aliases, this.o.routeMarkOf) : undefined);
              staged.push([k, before]);
              if (s) services.set(k, s);
              else services.delete(k);
            }
          } catch (e) {
            // Undo this call's earlier puts: a call is staged whole or not at all.
            for (const [k, before] of staged.reverse()) {
              this.ledger.put(k, before ? contribution(before, down, this.o.hashSeed, this.o.aliases, this.o.routeMarkOf) : undefined);
              if (before) services.set(k, before);
              else services.delete(k);
            }
            throw e;
          }
        },
        down: (next) => {
          const affected = new Set<string>();
          for (const k of next) if (!down.has(k)) affected.add(k.split('#')[0]!);
          for (const k of down) if (!next.has(k)) affected.add(k.split('#')[0]!);
          down = new Set(next);
          for (const k of affected) {
            const s = services.get(k);
            if (s) this.ledger.put(k, contribution(s, down, this.o.hashSeed, this.o.aliases, this.o.routeMarkOf));
          }
        },
      };
      let result: T;
      try {
        result = fn(stage);
      } catch (e) {
        this.load([...beforeServices.values()], beforeDown);
        throw e;
      }
      this.services = services;
      this.downSet = down;
      try {
        await this.commit();
      } catch (e) {
        // The kernel's state is not known now: the ledger goes back, the next change replaces the table (inSync is false).
        this.load([...beforeServices.values()], beforeDown);
        throw e;
      }
      return result;
    });
  }

  private async commit(): Promise<void> {
    if (!this.inSync) return this.replace();
    const { prev, next, changed } = this.ledger.delta();
    if (!changed) return;
    const diff = diffText(prev, next, this.o.table);
    try {
      if (diff?.phase1) await this.nft.apply(diff.phase1);
      if (diff?.phase2) await this.nft.apply(diff.phase2);
      if (diff) return;
    } catch (e) {
      this.onWarn('the kernel refused an incremental change; replacing the whole table', { error: (e as Error).message });
    }
    await this.replace();
  }

  /** Replaces the whole table with what the ledger holds, carrying the counters over. */
  private async replace(): Promise<void> {
    this.inSync = false;
    const counters = (await this.nft.exists()) ? await this.nft.counters() : new Map<string, CounterValue>();
    await this.nft.apply(fullText(this.ledger.model(), this.o.table, counters));
    this.inSync = true;
    this.fullApplies++;
  }

  /**
   * The table is the agent's: when it is gone, holds another revision, or was left mid-change,
   * it is replaced in full (kube-proxy's full sync). Returns whether it had to be.
   */
  check(): Promise<'ok' | 'replaced'> {
    return this.serial(async () => {
      const inKernel = await this.nft.revision();
      if (this.inSync && inKernel && !inKernel.inFlight && inKernel.hash === this.ledger.hash) return 'ok';
      this.onWarn('the nftables table differs from what the agent applied; replacing it', {
        found: inKernel ? `${inKernel.inFlight ? 'in flight to ' : ''}${inKernel.hash}` : 'no table',
        expected: this.ledger.hash,
      });
      await this.replace();
      return 'replaced';
    });
  }

  /** Per-service and per-endpoint packet/byte counters, read back from the kernel. */
  async counters(): Promise<Map<string, ServiceCounters>> {
    const raw = await this.nft.counters();
    const out = new Map<string, ServiceCounters>();
    const zero = { packets: 0, bytes: 0 };
    for (const s of this.list()) {
      const endpoints = new Map<string, CounterValue>(s.endpoints.map((e) => [endpointKey(e), raw.get(endpointElement(s, e)) ?? zero]));
      // An endpoint (node IP + NodePort) belongs to one service, so the service's counter is the sum of its endpoints'.
      const service = [...endpoints.values()].reduce((a, c) => ({ packets: a.packets + c.packets, bytes: a.bytes + c.bytes }), zero);
      out.set(serviceKey(s), { service, endpoints });
    }
    return out;
  }
}
