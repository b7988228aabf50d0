/**
 * One step of a Secrets Manager rotation of the deployment's API token or sync key, as AWS's
 * rotation contract defines the four steps (createSecret, setSecret, testSecret, finishSecret; each
 * may be retried, so each is idempotent):
 *
 * - create: a new random value (the generator's alphabet and length) as AWSPENDING, unless the
 *   token's version already exists;
 * - set: the agents follow the labels themselves (agent/secret-mirror.ts); this waits, bounded, until
 *   every LB instance confirms it accepts the pending value — for the API token, until kube-loxilb
 *   uses it too (it takes it through the agents' token refresh) — so no one is left with a value
 *   about to stop working;
 * - test: the pending value is well formed and the confirmation still holds;
 * - finish: AWSCURRENT moves to it (Secrets Manager moves AWSPREVIOUS to the old one).
 *
 * A step that throws fails the rotation; AWSPENDING stays and the next rotation takes it up again.
 */
import { SECRET_KIND, SECRET_STAGE, type SecretKind, secretVersionFingerprint, TAG } from '../../lib/contract.ts';
import { type Confirmation, confirmation, type InstanceView } from './confirm.ts';

export const ROTATION_STEPS = ['createSecret', 'setSecret', 'testSecret', 'finishSecret'] as const;
export type RotationStep = (typeof ROTATION_STEPS)[number];

export interface SecretDescription {
  arn: string;
  /** Version id → its staging labels. */
  stages: Record<string, string[]>;
  tags: Record<string, string>;
}

export interface SecretStore {
  describe(secretId: string): Promise<SecretDescription>;
  /** The version's value. */
  value(secretId: string, versionId: string): Promise<string>;
  /** Whether the version holds a value yet. */
  hasValue(secretId: string, versionId: string): Promise<boolean>;
  /** A random value as the secrets were generated (letters and digits). */
  randomValue(length: number): Promise<string>;
  /** Stores `value` as version `versionId` labelled AWSPENDING (idempotent on the version id). */
  putPending(secretId: string, versionId: string, value: string): Promise<void>;
  /** Moves AWSCURRENT from `from` to `to`. */
  moveCurrent(secretId: string, to: string, from: string): Promise<void>;
}

export interface Confirmations {
  /** The slot groups' instances. */
  instances(): Promise<InstanceView[]>;
  /** The latest SecretHeld of each instance for `kind` (undefined: none recent). */
  held(instanceIds: string[], kind: SecretKind): Promise<Map<string, number | undefined>>;
}

export interface RotationDeps {
  deploymentId: string;
  secrets: SecretStore;
  confirmations: Confirmations;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  /** Until when the set step may wait (the timeout setting, bounded by the invocation's time left). */
  waitUntil: () => number;
  pollMs: number;
  log: (msg: string, extra?: Record<string, unknown>) => void;
}

/** Length of a generated value (as the CDK app's generateSecretString). */
export const SECRET_LENGTH = 48;

export class RotationRefused extends Error {
  override name = 'RotationRefused';
}

export async function rotationStep(d: RotationDeps, secretId: string, token: string, step: RotationStep): Promise<string> {
  const secret = await d.secrets.describe(secretId);
  if (secret.tags[TAG.deployment] !== d.deploymentId) throw new RotationRefused(`secret ${secret.arn} is not deployment ${d.deploymentId}'s (tag ${TAG.deployment})`);
  const kind = secret.tags[TAG.secret];
  if (kind !== SECRET_KIND.apiToken && kind !== SECRET_KIND.syncKey) throw new RotationRefused(`secret ${secret.arn} has no ${TAG.secret} tag naming ${Object.values(SECRET_KIND).join(' or ')}`);
  const stages = secret.stages[token];
  if (!stages && step !== 'createSecret') throw new RotationRefused(`secret ${secret.arn} has no version ${token}`);
  if (stages?.includes(SECRET_STAGE.current)) return `version ${token} is already current`;
  if (stages && !stages.includes(SECRET_STAGE.pending)) throw new RotationRefused(`version ${token} of ${secret.arn} is neither current nor pending`);
  const currentId = Object.keys(secret.stages).find((v) => secret.stages[v]!.includes(SECRET_STAGE.current));
  if (!currentId) throw new RotationRefused(`secret ${secret.arn} has no current version`);

  switch (step) {
    case 'createSecret': {
      // RotateSecret labels the new version AWSPENDING before the value exists (AWS); a retried step finds the value.
      if (stages && (await d.secrets.hasValue(secretId, token))) return `version ${token} exists (pending)`;
      await d.secrets.putPending(secretId, token, await d.secrets.randomValue(SECRET_LENGTH));
      return `version ${token} created as ${SECRET_STAGE.pending}`;
    }
    case 'setSecret': {
      const c = await waitForConfirmation(d, token, kind);
      if (!c.done) throw new Error(`not every LB instance confirmed the pending ${kind} before the wait ended: ${c.waitingFor.map((w) => `${w.id} (${w.why})`).join('; ')}`);
      return `every LB instance confirmed the pending ${kind}`;
    }
    case 'testSecret': {
      const value = await d.secrets.value(secretId, token);
      if (value.length < 32 || /\s/.test(value)) throw new Error(`the pending ${kind} is not a single line of 32+ characters`);
      const c = await check(d, token, kind);
      if (!c.done) throw new Error(`the pending ${kind} is no longer confirmed by every LB instance: ${c.waitingFor.map((w) => w.id).join(', ')}`);
      return `the pending ${kind} is well formed and confirmed`;
    }
    case 'finishSecret': {
      await d.secrets.moveCurrent(secretId, token, currentId);
      return `${SECRET_STAGE.current} moved to version ${token} (was ${currentId})`;
    }
  }
}

async function check(d: RotationDeps, token: string, kind: SecretKind): Promise<Confirmation> {
  const instances = await d.confirmations.instances();
  const live = instances.filter((i) => !/^Terminat/.test(i.lifecycleState)).map((i) => i.id);
  return confirmation(secretVersionFingerprint(token), instances, await d.confirmations.held(live, kind));
}

async function waitForConfirmation(d: RotationDeps, token: string, kind: SecretKind): Promise<Confirmation> {
  let said = '';
  for (;;) {
    const c = await check(d, token, kind);
    if (c.done) return c;
    const now = JSON.stringify(c.waitingFor);
    if (now !== said) d.log('waiting for the LB instances to take the pending value', { kind, waitingFor: c.waitingFor });
    said = now;
    if (d.now() + d.pollMs > d.waitUntil()) return c;
    await d.sleep(d.pollMs);
  }
}
