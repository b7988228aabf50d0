/** An in-memory stand-in for the nft binary, for API and controller unit tests (the e2e tests use the real kernel). */
import type { Nft } from '../../agent/datapath/nft.ts';
import type { CounterValue } from '../../agent/datapath/render.ts';

export class FakeNft {
  applied: string[] = [];
  reject: string | undefined;

  async apply(text: string): Promise<void> {
    if (this.reject) throw new Error(this.reject);
    this.applied.push(text);
  }
  async appliedHash(): Promise<string | undefined> {
    const last = this.applied.at(-1);
    return last ? /comment "loxiha ([0-9a-f]+)"/.exec(last)?.[1] : undefined;
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
