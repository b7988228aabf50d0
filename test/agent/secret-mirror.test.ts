import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DescribeSecretCommand, GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { fileOrder, SecretMirror } from '../../agent/secret-mirror.ts';
import { SECRET_KIND, secretVersionFingerprint } from '../../lib/contract.ts';

const sm = mockClient(SecretsManagerClient);
const dir = mkdtempSync(join(tmpdir(), 'loxiha-mirror-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let stages: Record<string, string[]>;
const values: Record<string, string> = { v1: 'one'.repeat(12), v2: 'two'.repeat(12), v3: 'three'.repeat(8) };
let reads: string[];

beforeEach(() => {
  sm.reset();
  reads = [];
  sm.on(DescribeSecretCommand).callsFake(async () => ({ VersionIdsToStages: structuredClone(stages) }));
  sm.on(GetSecretValueCommand).callsFake(async (i: { VersionId: string }) => {
    reads.push(i.VersionId);
    return { SecretString: `${values[i.VersionId]}\n` };
  });
});

function mirror(file: string, logs: unknown[] = []) {
  return new SecretMirror({ client: new SecretsManagerClient({ region: 'us-east-1' }), kind: SECRET_KIND.syncKey, secretId: 'arn:s', file, pollMs: 1000, log: (...a) => logs.push(a) });
}

describe('SecretMirror', () => {
  it('writes current, then pending, then previous, root only; reads a version’s value once; follows a rotation to its end', async () => {
    const file = join(dir, 'a');
    const m = mirror(file);
    stages = { v1: ['AWSCURRENT'] };
    await m.poll();
    expect(readFileSync(file, 'utf8')).toBe(`${values.v1}\n`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(m.held(() => true)).toBe(secretVersionFingerprint('v1'));
    // Rotation started: v2 pending.
    stages = { v1: ['AWSCURRENT'], v2: ['AWSPENDING'] };
    await m.poll();
    expect(readFileSync(file, 'utf8')).toBe(`${values.v1}\n${values.v2}\n`);
    expect(m.newest()).toBe(values.v2);
    // Held only once taken (the ring has it, callers use it).
    expect(m.held(() => false)).toBe(secretVersionFingerprint('v1'));
    expect(m.held((v) => v === values.v2)).toBe(secretVersionFingerprint('v2'));
    // Finished: v2 current, v1 previous — nothing read again.
    stages = { v1: ['AWSPREVIOUS'], v2: ['AWSCURRENT'] };
    await m.poll();
    expect(readFileSync(file, 'utf8')).toBe(`${values.v2}\n${values.v1}\n`);
    expect(m.pending()).toBeUndefined();
    // The next rotation: v1 falls out of the file.
    stages = { v1: [], v2: ['AWSPREVIOUS'], v3: ['AWSCURRENT'] };
    await m.poll();
    expect(readFileSync(file, 'utf8')).toBe(`${values.v3}\n${values.v2}\n`);
    expect(reads).toEqual(['v1', 'v2', 'v3']);
  });

  it('keeps the file as it was when Secrets Manager cannot be read or a value is unusable, and says so once per streak', async () => {
    const file = join(dir, 'b');
    const logs: any[] = [];
    const m = mirror(file, logs);
    stages = { v1: ['AWSCURRENT'] };
    await m.poll();
    sm.on(DescribeSecretCommand).rejects(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }));
    await m.poll();
    await m.poll();
    expect(readFileSync(file, 'utf8')).toBe(`${values.v1}\n`);
    expect(logs.filter((l) => l[0] === 'warn')).toHaveLength(1);
    sm.on(DescribeSecretCommand).resolves({ VersionIdsToStages: { v1: ['AWSCURRENT'], v9: ['AWSPENDING'] } });
    sm.on(GetSecretValueCommand, { VersionId: 'v9' }).resolves({ SecretString: 'two words' });
    await m.poll();
    expect(readFileSync(file, 'utf8')).toBe(`${values.v1}\n`);
    expect(m.pending()).toBeUndefined();
    expect(JSON.stringify(logs)).not.toContain(values.v1);
  });

  it('orders the labelled versions (pure)', () => {
    expect(fileOrder({ a: ['AWSPREVIOUS'], b: ['AWSPENDING'], c: ['AWSCURRENT'], d: [] })).toEqual([
      { id: 'c', stage: 'AWSCURRENT' },
      { id: 'b', stage: 'AWSPENDING' },
      { id: 'a', stage: 'AWSPREVIOUS' },
    ]);
  });
});
