/** An in-memory stand-in for the nft binary, for API and controller unit tests (the e2e tests use the real kernel). */
import { Datapath } from '../../agent/datapath/controller.ts';
import type { Nft } from '../../agent/datapath/nft.ts';
import { parseRevision } from '../../agent/datapath/render.ts';
import { ServiceRegistry } from '../../agent/services/registry.ts';
import type { SavedState } from '../../agent/services/store.ts';
import type { CounterValue } from '../../agent/datapath/render.ts';

export class FakeNft {
  applied: string[] = [];
  reject: string | undefined;
  /** How long an apply takes (a real `nft -f` takes milliseconds; changes arriving meanwhile queue up). */
  latencyMs = 0;

  async apply(text: string): Promise<void> {
    if (this.latencyMs) await new Promise((r) => setTimeout(r, this.latencyMs));
    if (this.reject) throw new Error(this.reject);
    this.applied.push(text);
  }
  async revision(): Promise<{ hash: string; inFlight: boolean } | undefined> {
    const last = this.applied.at(-1);
    return last ? parseRevision(last) : undefined;
  }
  async counters(): Promise<Map<string, CounterValue>> {
    return new Map();
  }
  async exists(): Promise<boolean> {
    return this.applied.length > 0;
  }
  async flowtablesSupported(): Promise<boolean> {
    return false;
  }
  asNft(): Nft {
    return this as unknown as Nft;
  }
}

/** A datapath over a fake kernel and a registry over it, as the API and the CLI tests use them. */
export function fakeAgent(store: { save(state: SavedState): Promise<void> } = { save: async () => undefined }) {
  const nft = new FakeNft();
  const datapath = new Datapath(nft.asNft(), { table: 'loxiha', hashSeed: 1 });
  const registry = new ServiceRegistry(datapath, store);
  return { nft, datapath, registry };
}
