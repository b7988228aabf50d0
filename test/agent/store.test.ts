/** The state file: snapshot + journal, what a crash can leave, and what a restart reads back. */
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { StateStore } from '../../agent/services/store.ts';
import { svc } from './fixtures/service.ts';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const fresh = () => {
  const d = mkdtempSync(join(tmpdir(), 'loxiha-store-'));
  dirs.push(d);
  return d;
};

describe('state store', () => {
  it('reads back every batch saved, appended to a journal (no rewrite of every service per change)', async () => {
    const dir = fresh();
    const store = new StateStore(dir);
    const a = svc({ port: 80 });
    const b = svc({ port: 81 });
    await store.save({ services: [a], down: [] });
    await store.save({ services: [a, b], down: ['x#1'] });
    const b2 = { ...b, endpoints: b.endpoints.slice(1) };
    await store.save({ services: [b2], down: [] });
    await store.close();
    expect(existsSync(join(dir, 'services.json'))).toBe(false);
    expect(readFileSync(join(dir, 'services.journal'), 'utf8').trim().split('\n')).toHaveLength(3);
    expect(new StateStore(dir).load()).toEqual({ services: [b2], down: [] });
  });

  it('drops a last line cut short by a crash, and the next append starts on its own line', async () => {
    const dir = fresh();
    const store = new StateStore(dir);
    await store.save({ services: [svc({ port: 80 })], down: [] });
    await store.close();
    appendFileSync(join(dir, 'services.journal'), '{"set":[{"name":"half');
    const again = new StateStore(dir);
    expect(again.load().services.map((s) => s.port)).toEqual([80]);
    await again.save({ services: [svc({ port: 80 }), svc({ port: 82 })], down: [] });
    await again.close();
    expect(new StateStore(dir).load().services.map((s) => s.port)).toEqual([80, 82]);
  });

  it('refuses a journal damaged before its last line rather than guess', async () => {
    const dir = fresh();
    writeFileSync(join(dir, 'services.journal'), 'garbage\n{"set":[],"del":[]}\n');
    expect(() => new StateStore(dir).load()).toThrow(/line 1 is damaged/);
  });

  it('folds the journal into a snapshot when it grows, and reads the older snapshot-only format', async () => {
    const dir = fresh();
    const store = new StateStore(dir);
    for (let i = 0; i < 520; i++) await store.save({ services: [svc({ port: 1000 + (i % 7) })], down: [] });
    await store.close();
    expect(JSON.parse(readFileSync(join(dir, 'services.json'), 'utf8')).version).toBe(2);
    expect(readFileSync(join(dir, 'services.journal'), 'utf8').trim().split('\n').length).toBeLessThan(20);
    expect(new StateStore(dir).load().services.map((s) => s.port)).toEqual([1000 + (519 % 7)]);
    const old = fresh();
    writeFileSync(join(old, 'services.json'), JSON.stringify({ version: 1, services: [svc()] }));
    writeFileSync(join(old, 'services.json.4242.tmp'), '{"version":2,"serv');
    expect(new StateStore(old).load()).toEqual({ services: [svc()], down: [] });
    expect(existsSync(join(old, 'services.json.4242.tmp'))).toBe(false);
  });
});
