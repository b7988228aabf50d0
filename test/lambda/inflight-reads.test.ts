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
