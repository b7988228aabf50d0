/**
 * Identical EC2 reads in flight at once are sent once: the groups of one run observe the same
 * tagged subnets, interfaces and route tables (each keeps only its own group's), so N groups'
 * concurrent looks cost one describe instead of N. A read is shared only while no write (of any
 * group sharing it) has completed since it was sent, and never after its answer came back: what a
 * run reads is never older than its own last write.
 */
export class InflightReads {
  private readonly pending = new Map<string, { answer: Promise<unknown>; generation: number }>();
  private generation = 0;
  /** Reads answered by another's call. */
  shared = 0;

  share<T>(key: string, read: () => Promise<T>): Promise<T> {
    const running = this.pending.get(key);
    if (running && running.generation === this.generation) {
      this.shared++;
      return running.answer as Promise<T>;
    }
    const entry = { answer: read() as Promise<unknown>, generation: this.generation };
    this.pending.set(key, entry);
    void entry.answer.finally(() => {
      if (this.pending.get(key) === entry) this.pending.delete(key);
    }).catch(() => undefined);
    return entry.answer as Promise<T>;
  }

  /** A write has completed (or failed: it may have been applied): reads sent before it are no longer shared. */
  wrote(): void {
    this.generation++;
  }
}
