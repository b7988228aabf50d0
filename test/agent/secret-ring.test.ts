/** The secret files' rotation overlap: the first value used, every one accepted, a change picked up without a restart. */
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SecretRing } from '../../agent/secret-ring.ts';

const dir = mkdtempSync(join(tmpdir(), 'loxiha-ring-'));
afterEach(() => rmSync(join(dir, 'f'), { force: true }));
const file = join(dir, 'f');
const write = (text: string, at: number) => {
  writeFileSync(file, text);
  utimesSync(file, at, at);
};

describe('SecretRing', () => {
  it('uses the first line and accepts every line; a rotated file is picked up on the next look, said once', () => {
    write('a'.repeat(32), 1000);
    const ring = new SecretRing(file, 32);
    const changes: number[] = [];
    ring.onChange = (n) => changes.push(n);
    expect(ring.current()).toBe('a'.repeat(32));
    expect(ring.accepted()).toEqual(['a'.repeat(32)]);
    // The next value written ahead of the current one, the previous kept for the overlap.
    write(`${'b'.repeat(32)}\n${'a'.repeat(32)}\n`, 2000);
    expect(ring.refresh()).toBe(true);
    expect(ring.current()).toBe('b'.repeat(32));
    expect(ring.accepted()).toEqual(['b'.repeat(32), 'a'.repeat(32)]);
    expect(ring.refresh()).toBe(false);
    expect(changes).toEqual([2]);
  });

  it('keeps what it read when the file goes missing, empty or short (never an open API or a key-less link)', () => {
    write('a'.repeat(32), 1000);
    const ring = new SecretRing(file, 32);
    const errors: string[] = [];
    ring.onError = (why) => errors.push(why);
    write('', 2000);
    expect(ring.refresh()).toBe(false);
    write('short', 3000);
    expect(ring.refresh()).toBe(false);
    rmSync(file);
    expect(ring.refresh()).toBe(false);
    expect(ring.refresh()).toBe(false);
    expect(ring.accepted()).toEqual(['a'.repeat(32)]);
    // Each unusable state said once, not at every look.
    expect(errors).toHaveLength(3);
  });

  it('has no value when the file never held one', () => {
    expect(new SecretRing(join(dir, 'missing'), 32).current()).toBeUndefined();
  });
});
