/**
 * Identical EC2 reads in flight at once are sent once: the groups of one run observe the same
 * tagged subnets, interfaces and route tables (each keeps only its own group's), so N groups'
 * concurrent looks cost one describe instead of N. A read is shared only while no write (of any
 * group sharing it) has completed since it was sent, and never after its answer came back: what a
 * run reads is never older than its own last write.
 */
export class InflightReads {
  private readonly pending = new Map<string, { answer: Promise<unknown>; generation: number }>();
  private readonly batches = new Map<string, { ids: Set<string>; generation: number; answer: Promise<Map<string, unknown>> }>();
  private generation = 0;
  /** Reads answered by another's call. */
  shared = 0;
  /** Reads of one id answered by a call that asked for several (the groups' EIPs: one DescribeAddresses). */
  batched = 0;

  /**
   * Reads of one resource each (`kind`: e.g. the groups' EIPs) asked within `windowMs` of each
   * other go out as one call for all their ids (`readMany`); each gets its own. A batch opened
   * before a write completed is not joined after it. If the call for several fails (one id
   * unknown fails them all on EC2), each is read alone, so one group's error stays its own.
   */
  batch<T>(kind: string, id: string, readMany: (ids: string[]) => Promise<Map<string, T>>, windowMs = 2): Promise<T | undefined> {
    let b = this.batches.get(kind);
    if (!b || b.generation !== this.generation) {
      const ids = new Set<string>();
      const opened = { ids, generation: this.generation, answer: undefined as unknown as Promise<Map<string, unknown>> };
      opened.answer = new Promise<void>((r) => setTimeout(r, windowMs)).then(() => {
        if (this.batches.get(kind) === opened) this.batches.delete(kind);
        return readMany([...ids]) as Promise<Map<string, unknown>>;
      });
      this.batches.set(kind, opened);
      b = opened;
    } else this.batched++;
    b.ids.add(id);
    const joined = b;
    return joined.answer.then(
      (m) => m.get(id) as T | undefined,
      async (e: unknown) => {
        if (joined.ids.size === 1) throw e;
        return (await readMany([id])).get(id);
      },
    );
  }

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
