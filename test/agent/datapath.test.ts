/**
 * The datapath's incremental changes: after any sequence of batches the desired table equals a
 * full render of the same services, and in a real kernel the diffs leave exactly what a full load
 * would; a table changed behind its back is found and replaced.
 */
import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Datapath } from '../../agent/datapath/controller.ts';
import { Nft } from '../../agent/datapath/nft.ts';
import { fullText, renderModel } from '../../agent/datapath/render.ts';
import { type Service, serviceKey } from '../../agent/services/model.ts';
import { Lab } from '../../sim/netns.ts';
import { FakeNft } from './fake-nft.ts';
import { svc } from './fixtures/service.ts';
import { netnsAvailable } from '../harness/prerequisites.ts';

const SEED = 7;
/** A small universe of services so that batches replace, remove and share groups, timeouts and addresses. */
const serviceArb = fc
  .record({
    port: fc.integer({ min: 1, max: 6 }),
    protocol: fc.constantFrom('tcp' as const, 'udp' as const),
    sel: fc.constantFrom(0, 1, 2, 3) as fc.Arbitrary<Service['sel']>,
    mode: fc.constantFrom(0, 2) as fc.Arbitrary<Service['mode']>,
    idle: fc.constantFrom(0, 0, 30, 600),
    eps: fc.subarray([101, 102, 103, 104], { minLength: 0 }),
    weight: fc.integer({ min: 1, max: 3 }),
    allowed: fc.boolean(),
  })
  .map((o) =>
    svc({
      port: 8000 + o.port,
      protocol: o.protocol,
      sel: o.sel,
      mode: o.mode,
      inactiveTimeOut: o.idle,
      endpoints: o.eps.map((e) => ({ ip: `100.64.2.${e}`, port: 30000 + o.port, weight: e === 104 ? o.weight : 1 })),
      allowedSources: o.allowed ? ['100.64.1.0/24'] : [],
    }),
  );
type Op = { kind: 'set'; s: Service } | { kind: 'del'; port: number; protocol: 'tcp' | 'udp' } | { kind: 'down'; eps: number[] };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: serviceArb.map((s) => ({ kind: 'set' as const, s })) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('del' as const), port: fc.integer({ min: 8001, max: 8006 }), protocol: fc.constantFrom('tcp' as const, 'udp' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('down' as const), eps: fc.subarray([101, 102, 103, 104]) }) },
);
const batchesArb = fc.array(fc.array(opArb, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 12 });

/** Runs the batches through a datapath; returns the services and down set it should now hold. */
async function run(dp: Datapath, batches: Op[][], after?: () => Promise<void>): Promise<void> {
  for (const batch of batches) {
    await dp.transaction((stage) => {
      for (const op of batch) {
        if (op.kind === 'set') stage.services(new Map([[serviceKey(op.s), op.s]]));
        else if (op.kind === 'del') stage.services(new Map([[serviceKey({ externalIP: '100.100.100.100', port: op.port, protocol: op.protocol }), undefined]]));
        else stage.down(new Set([...stage.current().values()].flatMap((s) => s.endpoints.filter((e) => op.eps.includes(Number(e.ip.split('.')[3]))).map((e) => `${serviceKey(s)}#${e.ip}:${e.port}`))));
      }
    });
    await after?.();
  }
}

const full = (dp: Datapath) => renderModel({ table: 'loxiha', services: dp.list(), down: dp.down, hashSeed: SEED });

describe('datapath: incremental changes', () => {
  it('after any sequence of batches, holds exactly what a full render of its services holds (same revision)', async () => {
    await fc.assert(
      fc.asyncProperty(batchesArb, async (batches) => {
        const nft = new FakeNft();
        const dp = new Datapath(nft.asNft(), { table: 'loxiha', hashSeed: SEED });
        await dp.adopt([]);
        await run(dp, batches, async () => {
          const want = full(dp);
          expect(fullText(dp.desired(), 'loxiha')).toBe(fullText(want, 'loxiha'));
          expect(dp.revision).toBe(want.hash);
        });
        // Only the start-up load replaced the table: every batch went as a diff.
        expect(dp.fullApplies).toBe(1);
      }),
      { numRuns: 300 },
    );
  });

  it('a kernel that refuses a diff gets the whole table; one that refuses that too leaves the datapath as before', async () => {
    const nft = new FakeNft();
    const dp = new Datapath(nft.asNft(), { table: 'loxiha', hashSeed: SEED });
    await dp.adopt([svc()]);
    const before = dp.revision;
    nft.reject = 'Error: Could not process rule';
    await expect(dp.transaction((st) => st.services(new Map([[serviceKey(svc({ port: 81 })), svc({ port: 81 })]])))).rejects.toThrow(/Could not process/);
    expect(dp.revision).toBe(before);
    expect(dp.list()).toHaveLength(1);
    nft.reject = undefined;
    // The next change is a full replace: after a failure the kernel's state is not known.
    await dp.transaction((st) => st.services(new Map([[serviceKey(svc({ port: 82 })), svc({ port: 82 })]])));
    expect(nft.applied.at(-1)).toMatch(/^table ip loxiha \{\}\ndelete table/);
  });
});

describe.skipIf(!netnsAvailable)('datapath in a kernel', () => {
  const lab = new Lab();
  const ns = (n: string) => lab.ns(n);
  const list = (n: string) =>
    execFileSync('ip', ['netns', 'exec', ns(n), 'nft', 'list', 'table', 'ip', 'loxiha'], { encoding: 'utf8' })
      .split('\n')
      // One element per line, whatever order the kernel lists an interval set in.
      .map((l) => l.trim().replace(/^elements = \{ /, '').replace(/( \}|,)$/, ''))
      .filter((l) => !/^counter packets|packets \d+ bytes/.test(l))
      .sort();

  it('leaves, after every batch of random changes, the same table as a full load, and repairs a table deleted behind its back', async () => {
    try {
      for (const n of ['inc', 'full']) {
        execFileSync('ip', ['netns', 'add', ns(n)]);
        lab.namespaces.push(ns(n));
      }
      const dp = new Datapath(new Nft('loxiha', ns('inc')), { table: 'loxiha', hashSeed: SEED });
      await dp.adopt([]);
      const batches = fc.sample(batchesArb, { numRuns: 6, seed: 42 }).flat();
      let compared = 0;
      await run(dp, batches, async () => {
        execFileSync('ip', ['netns', 'exec', ns('full'), 'nft', '-f', '-'], { input: fullText(full(dp), 'loxiha') });
        expect(list('inc')).toEqual(list('full'));
        compared++;
      });
      expect(compared).toBeGreaterThan(10);
      expect(dp.fullApplies).toBe(1);
      expect(await dp.check()).toBe('ok');
      execFileSync('ip', ['netns', 'exec', ns('inc'), 'nft', 'delete', 'table', 'ip', 'loxiha']);
      expect(await dp.check()).toBe('replaced');
      expect(list('inc')).toEqual(list('full'));
      // A table changed (an element removed) is found by its revision only if the revision changed too: flushing it counts.
      execFileSync('ip', ['netns', 'exec', ns('inc'), 'nft', 'flush', 'set', 'ip', 'loxiha', 'revision']);
      expect(await dp.check()).toBe('replaced');
    } finally {
      await lab.stop();
    }
  });
});
