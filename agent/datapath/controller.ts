/**
 * Keeps the kernel equal to the desired services: renders, compares with what is applied,
 * applies one transaction, one at a time. Changes are validated by rendering before they
 * are accepted, and rolled back in memory when the kernel rejects them.
 */
import { endpointKey, type Service, serviceKey } from '../services/model.ts';
import type { Nft } from './nft.ts';
import { type CounterValue, diffText, endpointElement, fullText, type Model, renderModel } from './render.ts';

export interface DatapathOptions {
  table: string;
  hashSeed: number;
  flowtableDevices?: string[];
}

export interface ServiceCounters {
  service: CounterValue;
  endpoints: Map<string, CounterValue>;
}

export class Datapath {
  private readonly nft: Nft;
  private readonly o: DatapathOptions;
  private services = new Map<string, Service>();
  private down: ReadonlySet<string> = new Set();
  /** What the kernel holds (as far as this process knows): the base of the next diff. */
  private applied: Model | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** Logs recoveries (a diff the kernel refused, replaced by a full transaction). */
  onWarn: (msg: string, extra: Record<string, unknown>) => void = () => undefined;

  constructor(nft: Nft, options: DatapathOptions) {
    this.nft = nft;
    this.o = options;
  }

  list(): Service[] {
    return [...this.services.values()];
  }

  get(key: string): Service | undefined {
    return this.services.get(key);
  }

  /** Runs `fn` after every earlier change, so concurrent API calls apply in order. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Adopts what the kernel holds: applies only when the table differs from these services. */
  adopt(services: Service[]): Promise<'adopted' | 'applied'> {
    return this.serial(async () => {
      this.services = new Map(services.map((s) => [serviceKey(s), s]));
      const inKernel = await this.nft.appliedHash();
      const desired = renderModel(this.input());
      if (inKernel === desired.hash) {
        this.applied = desired;
        return 'adopted';
      }
      await this.applyNow(desired);
      return 'applied';
    });
  }

  /** Replaces the whole service set (or a change to it) atomically: all of it reaches the kernel or none. */
  change(mutate: (current: Map<string, Service>) => Map<string, Service>): Promise<void> {
    return this.serial(async () => {
      const before = this.services;
      this.services = mutate(new Map(before));
      try {
        await this.applyNow();
      } catch (e) {
        this.services = before;
        throw e;
      }
    });
  }

  setDown(down: ReadonlySet<string>): Promise<void> {
    return this.serial(async () => {
      this.down = down;
      await this.applyNow();
    });
  }

  isDown(s: Service, endpoint: { ip: string; port: number }): boolean {
    return this.down.has(`${serviceKey(s)}#${endpointKey(endpoint)}`);
  }

  private input() {
    return { table: this.o.table, services: this.list(), down: this.down, hashSeed: this.o.hashSeed, flowtableDevices: this.o.flowtableDevices };
  }

  private async applyNow(next: Model = renderModel(this.input())): Promise<void> {
    if (next.hash === this.applied?.hash) return;
    const diff = this.applied ? diffText(this.applied, next, this.o.table) : undefined;
    if (diff !== undefined) {
      try {
        if (diff.phase1) await this.nft.apply(diff.phase1);
        if (diff.phase2) await this.nft.apply(diff.phase2);
        this.applied = next;
        return;
      } catch (e) {
        this.onWarn('the kernel refused an incremental change; replacing the whole table', { error: (e as Error).message });
      }
    }
    // Full replace, carrying the counters over it.
    const counters = (await this.nft.exists()) ? await this.nft.counters() : new Map<string, CounterValue>();
    await this.nft.apply(fullText(next, this.o.table, counters));
    this.applied = next;
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
