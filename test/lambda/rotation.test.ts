import { describe, expect, it } from 'vitest';
import { SECRET_KIND, SECRET_STAGE, type SecretKind, secretVersionFingerprint, TAG } from '../../lib/contract.ts';
import { confirmation, type InstanceView } from '../../lambda/rotation/confirm.ts';
import { type Confirmations, RotationRefused, type RotationDeps, rotationStep, type SecretStore } from '../../lambda/rotation/rotate.ts';

const CURRENT = 'v-current-0000000000000000000000000000';
const TOKEN = 'v-pending-1111111111111111111111111111';

/** Secrets Manager as the steps see it: versions with labels and values. */
class FakeStore implements SecretStore {
  stages: Record<string, string[]> = { [CURRENT]: [SECRET_STAGE.current] };
  values: Record<string, string> = { [CURRENT]: 'c'.repeat(48) };
  tags: Record<string, string> = { [TAG.deployment]: 'dep', [TAG.secret]: SECRET_KIND.syncKey };
  calls: string[] = [];
  async describe() {
    return { arn: 'arn:secret', stages: structuredClone(this.stages), tags: this.tags };
  }
  async value(_s: string, v: string) {
    return this.values[v]!;
  }
  async hasValue(_s: string, v: string) {
    return v in this.values;
  }
  async randomValue(n: number) {
    return 'r'.repeat(n);
  }
  async putPending(_s: string, v: string, value: string) {
    this.calls.push(`put ${v}`);
    this.values[v] = value;
    this.stages[v] = [SECRET_STAGE.pending];
  }
  async moveCurrent(_s: string, to: string, from: string) {
    this.calls.push(`move ${from}->${to}`);
    this.stages[from] = [SECRET_STAGE.previous];
    this.stages[to] = [SECRET_STAGE.current];
  }
}

function deps(store: FakeStore, held: (t: number) => Map<string, number | undefined>, instances: InstanceView[] = [{ id: 'i-a', lifecycleState: 'InService' }, { id: 'i-b', lifecycleState: 'InService' }], waitMs = 60_000) {
  let now = 0;
  const log: unknown[] = [];
  const asked: SecretKind[] = [];
  const confirmations: Confirmations = {
    instances: async () => instances,
    held: async (_ids, kind) => {
      asked.push(kind);
      return held(now);
    },
  };
  const d: RotationDeps = { deploymentId: 'dep', secrets: store, confirmations, now: () => now, sleep: async (ms) => void (now += ms), waitUntil: () => waitMs, pollMs: 5000, log: (m, e) => log.push({ m, ...e }) };
  return { d, log, asked, clock: () => now };
}

const fp = secretVersionFingerprint(TOKEN);

describe('rotation steps', () => {
  it('runs a whole rotation: a pending value, a wait until both instances hold it, then current — the old value previous', async () => {
    const store = new FakeStore();
    // i-b takes the pending value 20 s in.
    const { d, asked, clock } = deps(store, (t) => new Map([['i-a', fp], ['i-b', t >= 20_000 ? fp : secretVersionFingerprint(CURRENT)]]));
    expect(await rotationStep(d, 'arn:secret', TOKEN, 'createSecret')).toMatch(/created/);
    expect(store.values[TOKEN]).toHaveLength(48);
    expect(await rotationStep(d, 'arn:secret', TOKEN, 'setSecret')).toMatch(/confirmed/);
    expect(clock()).toBe(20_000);
    expect(asked.every((k) => k === SECRET_KIND.syncKey)).toBe(true);
    expect(await rotationStep(d, 'arn:secret', TOKEN, 'testSecret')).toMatch(/confirmed/);
    expect(await rotationStep(d, 'arn:secret', TOKEN, 'finishSecret')).toMatch(/moved/);
    expect(store.stages).toEqual({ [CURRENT]: [SECRET_STAGE.previous], [TOKEN]: [SECRET_STAGE.current] });
    // Every step again (Secrets Manager retries): nothing changes.
    for (const step of ['createSecret', 'setSecret', 'testSecret', 'finishSecret'] as const) expect(await rotationStep(d, 'arn:secret', TOKEN, step)).toMatch(/already current/);
    expect(store.calls).toEqual([`put ${TOKEN}`, `move ${CURRENT}->${TOKEN}`]);
  });

  it('creates the value when RotateSecret labelled the version AWSPENDING before it had one (AWS), and not twice', async () => {
    const store = new FakeStore();
    store.stages[TOKEN] = [SECRET_STAGE.pending];
    const { d } = deps(store, () => new Map());
    await rotationStep(d, 'arn:secret', TOKEN, 'createSecret');
    await rotationStep(d, 'arn:secret', TOKEN, 'createSecret');
    expect(store.calls).toEqual([`put ${TOKEN}`]);
  });

  it('never makes the value current while an instance has not confirmed it: the set step fails at its bound, naming the instance, and nothing moved', async () => {
    const store = new FakeStore();
    const { d, log } = deps(store, () => new Map([['i-a', fp], ['i-b', undefined]]), undefined, 30_000);
    await rotationStep(d, 'arn:secret', TOKEN, 'createSecret');
    await expect(rotationStep(d, 'arn:secret', TOKEN, 'setSecret')).rejects.toThrow(/i-b \(no recent SecretHeld/);
    expect(store.stages[CURRENT]).toEqual([SECRET_STAGE.current]);
    expect(store.stages[TOKEN]).toEqual([SECRET_STAGE.pending]);
    // Said once while nothing changed, not every poll.
    expect(log).toHaveLength(1);
    // The test step checks again.
    await expect(rotationStep(d, 'arn:secret', TOKEN, 'testSecret')).rejects.toThrow(/no longer confirmed.*i-b/);
  });

  it('refuses another deployment’s secret, a secret that is not one of ours, and a version that is not pending — changing nothing', async () => {
    for (const [tags, why] of [
      [{ [TAG.deployment]: 'other', [TAG.secret]: SECRET_KIND.apiToken }, /not deployment dep's/],
      [{ [TAG.deployment]: 'dep' }, /no loxiha:secret tag/],
    ] as const) {
      const store = new FakeStore();
      store.tags = tags;
      const { d } = deps(store, () => new Map());
      await expect(rotationStep(d, 'arn:secret', TOKEN, 'createSecret')).rejects.toBeInstanceOf(RotationRefused);
      await expect(rotationStep(d, 'arn:secret', TOKEN, 'createSecret')).rejects.toThrow(why);
      expect(store.calls).toEqual([]);
    }
    const store = new FakeStore();
    store.stages.old = [];
    const { d } = deps(store, () => new Map());
    await expect(rotationStep(d, 'arn:secret', 'old', 'finishSecret')).rejects.toThrow(/neither current nor pending/);
    await expect(rotationStep(d, 'arn:secret', 'missing', 'setSecret')).rejects.toThrow(/no version missing/);
    expect(store.calls).toEqual([]);
  });
});

describe('confirmation', () => {
  it('counts every instance of the slot groups but those terminating; none at all is not a confirmation', () => {
    const held = new Map([['i-a', 7], ['i-b', 7], ['i-c', 3]]);
    expect(confirmation(7, [{ id: 'i-a', lifecycleState: 'InService' }, { id: 'i-b', lifecycleState: 'Pending:Wait' }], held).done).toBe(true);
    expect(confirmation(7, [{ id: 'i-a', lifecycleState: 'InService' }, { id: 'i-c', lifecycleState: 'Terminating:Wait' }], held).done).toBe(true);
    expect(confirmation(7, [{ id: 'i-a', lifecycleState: 'InService' }, { id: 'i-c', lifecycleState: 'InService' }], held).waitingFor.map((w) => w.id)).toEqual(['i-c']);
    expect(confirmation(7, [], held).done).toBe(false);
  });
});
