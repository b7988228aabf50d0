/**
 * Secrets Manager's rotation, which moto does not run: `RotateSecret` reaching the behaviour layer
 * is answered here as AWS answers it (the new version id at once; a second rotation of a secret
 * whose rotation is still running refused with InvalidRequestException, one after a failed rotation
 * taking that rotation's version up again) and the rotation function
 * is invoked for its four steps in order, each once it answered the previous; a step that fails ends
 * the rotation (AWSPENDING stays, as on AWS). Unlike AWS, the pending version is not labelled before
 * createSecret (moto cannot hold a version without a value); the function handles both.
 */
import { randomUUID } from 'node:crypto';

export const STEPS = ['createSecret', 'setSecret', 'testSecret', 'finishSecret'] as const;

export type StepInvoker = (event: { SecretId: string; ClientRequestToken: string; Step: string }) => Promise<{ result?: unknown; errorType?: string; errorMessage?: string }>;

export interface RotationOutcome {
  secretId: string;
  token: string;
  ok: boolean;
  /** The step that failed, and why. */
  failed?: { step: string; message: string };
  startedAt: number;
  endedAt: number;
}

export class SecretRotations {
  private readonly invoke: StepInvoker;
  private readonly running = new Map<string, Promise<RotationOutcome>>();
  /** Told of each step as it ends. */
  onStep: (secretId: string, step: string, outcome: { ok: boolean; message: string }) => void = () => {};
  readonly outcomes: RotationOutcome[] = [];

  constructor(invoke: StepInvoker) {
    this.invoke = invoke;
  }

  /** Secrets Manager's RotateSecret (JSON protocol body); answers at once, the rotation runs on. */
  answer(body: Buffer): { status: number; body: string } {
    let input: { SecretId?: unknown; ClientRequestToken?: unknown };
    try {
      input = JSON.parse(body.toString()) as typeof input;
    } catch {
      return { status: 400, body: JSON.stringify({ __type: 'InvalidParameterException', message: 'the body is not JSON' }) };
    }
    if (typeof input.SecretId !== 'string' || !input.SecretId) return { status: 400, body: JSON.stringify({ __type: 'InvalidParameterException', message: 'SecretId is required' }) };
    const secretId = input.SecretId;
    if (this.running.has(secretId)) return { status: 400, body: JSON.stringify({ __type: 'InvalidRequestException', message: "A previous rotation isn't complete. That rotation will be reattempted." }) };
    // A rotation that failed left its AWSPENDING version: AWS takes that rotation up again rather than start another.
    const unfinished = [...this.outcomes].reverse().find((o) => o.secretId === secretId);
    const token = typeof input.ClientRequestToken === 'string' ? input.ClientRequestToken : unfinished && !unfinished.ok ? unfinished.token : randomUUID();
    const run = this.rotate(secretId, token).finally(() => this.running.delete(secretId));
    this.running.set(secretId, run);
    return { status: 200, body: JSON.stringify({ ARN: secretId, Name: secretId.split(':').at(-1), VersionId: token }) };
  }

  /** Until every rotation started so far has ended. */
  async idle(): Promise<RotationOutcome[]> {
    return Promise.all([...this.running.values()]);
  }

  private async rotate(secretId: string, token: string): Promise<RotationOutcome> {
    const startedAt = Date.now();
    let failed: RotationOutcome['failed'];
    for (const step of STEPS) {
      const r: Awaited<ReturnType<StepInvoker>> = await this.invoke({ SecretId: secretId, ClientRequestToken: token, Step: step }).catch((e: Error) => ({ errorType: 'ServiceException', errorMessage: e.message }));
      const ok = !r.errorType;
      const message = ok ? String(r.result) : `${r.errorType}: ${r.errorMessage}`;
      this.onStep(secretId, step, { ok, message });
      if (!ok) {
        failed = { step, message };
        break;
      }
    }
    const outcome: RotationOutcome = { secretId, token, ok: !failed, ...(failed ? { failed } : {}), startedAt, endedAt: Date.now() };
    this.outcomes.push(outcome);
    return outcome;
  }
}
