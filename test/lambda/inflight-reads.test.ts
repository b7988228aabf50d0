import { describe, expect, it } from 'vitest';
import { InflightReads } from '../../lambda/failover/aws/inflight-reads.ts';

const later = <T>(v: T) => {
  let resolve!: (x: T) => void;
  const p = new Promise<T>((r) => (resolve = r));
  return { p, done: () => resolve(v) };
};

describe('reads shared while in flight', () => {
  it('identical reads under way at once go out once; a read after the answer goes out again', async () => {
    const r = new InflightReads();
    let sent = 0;
    const a = later('x');
    const read = () => {
      sent++;
      return a.p;
    };
    const both = Promise.all([r.share('k', read), r.share('k', read), r.share('other', async () => 'y')]);
    a.done();
    expect(await both).toEqual(['x', 'x', 'y']);
    expect(sent).toBe(1);
    expect(r.shared).toBe(1);
    await r.share('k', async () => {
      sent++;
      return 'z';
    });
    expect(sent).toBe(2);
  });

  it('a read sent before a completed write is not shared with a read after it (a run never reads older than its own write)', async () => {
    const r = new InflightReads();
    const before = later('before');
    const first = r.share('k', () => before.p);
    r.wrote();
    const second = r.share('k', async () => 'after');
    before.done();
    expect(await first).toBe('before');
    expect(await second).toBe('after');
    expect(r.shared).toBe(0);
  });

  it('a failed read fails every sharer, and the next read goes out', async () => {
    const r = new InflightReads();
    const boom = Promise.reject(new Error('throttled'));
    const [x, y] = await Promise.allSettled([r.share('k', () => boom), r.share('k', () => boom)]);
    expect(x.status).toBe('rejected');
    expect(y.status).toBe('rejected');
    expect(await r.share('k', async () => 'ok')).toBe('ok');
  });
});

describe('reads of one id each, batched', () => {
  it('the groups\' EIPs read at once go out as one call; each gets its own; a read after a write opens a new batch', async () => {
    const r = new InflightReads();
    const calls: string[][] = [];
    const readMany = async (ids: string[]) => (calls.push([...ids].sort()), new Map(ids.map((id) => [id, `eip of ${id}`])));
    const got = await Promise.all(['a', 'b', 'c'].map((id) => r.batch('addresses', id, readMany)));
    expect(got).toEqual(['eip of a', 'eip of b', 'eip of c']);
    expect(calls).toEqual([['a', 'b', 'c']]);
    expect(r.batched).toBe(2);
    const first = r.batch('addresses', 'a', readMany);
    r.wrote();
    const second = r.batch('addresses', 'b', readMany);
    await Promise.all([first, second]);
    expect(calls.slice(1)).toEqual([['a'], ['b']]);
  });

  it('one unknown id does not fail the others: when the call for several fails, each is read alone', async () => {
    const r = new InflightReads();
    const readMany = async (ids: string[]) => {
      if (ids.includes('gone')) throw Object.assign(new Error('InvalidAllocationID.NotFound'), { name: 'InvalidAllocationID.NotFound' });
      return new Map(ids.map((id) => [id, id.toUpperCase()]));
    };
    const [a, gone] = await Promise.allSettled([r.batch('addresses', 'a', readMany), r.batch('addresses', 'gone', readMany)]);
    expect(a).toEqual({ status: 'fulfilled', value: 'A' });
    expect(gone.status).toBe('rejected');
  });
});
