/**
 * Keeps a secret file in step with Secrets Manager, so a rotation reaches the agent without a
 * restart: every `pollMs` one DescribeSecret reads the staging labels; when they changed, the values
 * of the labelled versions not read before are fetched (a version's value never changes) and the
 * file is rewritten — current first (the value used), then pending, then previous (accepted) — by a
 * rename, root only. SecretRing (./secret-ring.ts) reads the file; this never touches a value it
 * could not read (the file keeps what it held) and never logs one.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { DescribeSecretCommand, GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SECRET_STAGE, type SecretKind, secretVersionFingerprint } from '../lib/contract.ts';

/** The labelled versions in the order the file lists them: current, pending, previous (pure). */
export function fileOrder(stagesById: Record<string, string[] | undefined>): { id: string; stage: string }[] {
  const out: { id: string; stage: string }[] = [];
  for (const stage of [SECRET_STAGE.current, SECRET_STAGE.pending, SECRET_STAGE.previous]) {
    const id = Object.keys(stagesById).find((v) => stagesById[v]?.includes(stage));
    if (id && !out.some((o) => o.id === id)) out.push({ id, stage });
  }
  return out;
}

export interface SecretMirrorOptions {
  client: SecretsManagerClient;
  kind: SecretKind;
  secretId: string;
  file: string;
  pollMs: number;
  log: (level: 'info' | 'warn', msg: string, extra?: Record<string, unknown>) => void;
}

export class SecretMirror {
  private readonly o: SecretMirrorOptions;
  private readonly values = new Map<string, string>();
  private labels = '';
  private versions: { id: string; stage: string }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private failing = false;
  /** Told after the file was rewritten (the ring reads it at once rather than at its next look). */
  onWritten: () => void = () => {};

  constructor(o: SecretMirrorOptions) {
    this.o = o;
  }

  /** The value a rotation is moving to (AWSPENDING) once written to the file; undefined when none. */
  pending(): { id: string; value: string } | undefined {
    const v = this.versions.find((x) => x.stage === SECRET_STAGE.pending);
    return v ? { id: v.id, value: this.values.get(v.id)! } : undefined;
  }

  /** The value labelled AWSCURRENT as last written. */
  current(): { id: string; value: string } | undefined {
    const v = this.versions.find((x) => x.stage === SECRET_STAGE.current);
    return v ? { id: v.id, value: this.values.get(v.id)! } : undefined;
  }

  /** The newest value: the pending one while a rotation runs, else the current one. */
  newest(): string | undefined {
    return (this.pending() ?? this.current())?.value;
  }

  /**
   * What `SecretHeld` reports: the pending version's fingerprint once `inUse(pending)` says the agent
   * took it (and, for the API token, its callers did), else the current one's; undefined before the
   * first read.
   */
  held(inUse: (pendingValue: string) => boolean): number | undefined {
    const p = this.pending();
    if (p && inUse(p.value)) return secretVersionFingerprint(p.id);
    const c = this.current();
    return c ? secretVersionFingerprint(c.id) : undefined;
  }

  start(): void {
    if (this.timer) return;
    void this.poll();
    this.timer = setInterval(() => void this.poll(), this.o.pollMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.inFlight;
  }

  /** One look now (skipped while one is in flight); failures are said once per streak. */
  poll(): Promise<void> {
    this.inFlight ??= this.look()
      .then(() => {
        if (this.failing) this.o.log('info', 'secret readable again', { secret: this.o.kind });
        this.failing = false;
      })
      .catch((e: unknown) => {
        if (!this.failing) this.o.log('warn', 'cannot read the secret from Secrets Manager; the file keeps what it held', { secret: this.o.kind, error: (e as Error).name, message: (e as Error).message });
        this.failing = true;
      })
      .finally(() => {
        this.inFlight = undefined;
      });
    return this.inFlight;
  }

  private async look(): Promise<void> {
    const d = await this.o.client.send(new DescribeSecretCommand({ SecretId: this.o.secretId }));
    const stages = d.VersionIdsToStages ?? {};
    const order = fileOrder(stages);
    const labels = JSON.stringify(order);
    if (labels === this.labels) return;
    if (!order.some((v) => v.stage === SECRET_STAGE.current)) throw new Error('the secret has no AWSCURRENT version');
    for (const v of order) {
      if (this.values.has(v.id)) continue;
      const r = await this.o.client.send(new GetSecretValueCommand({ SecretId: this.o.secretId, VersionId: v.id }));
      const value = r.SecretString?.trim();
      if (!value || /\s/.test(value)) throw new Error(`version ${v.id} (${v.stage}) holds no single-line string`);
      this.values.set(v.id, value);
    }
    for (const id of [...this.values.keys()]) if (!order.some((v) => v.id === id)) this.values.delete(id);
    const tmp = `${this.o.file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${order.map((v) => this.values.get(v.id)).join('\n')}\n`, { mode: 0o600 });
    renameSync(tmp, this.o.file);
    const first = this.labels === '';
    this.labels = labels;
    this.versions = order;
    this.o.log('info', first ? 'secret file written from Secrets Manager' : 'secret rotation followed: file rewritten', { secret: this.o.kind, versions: order.map((v) => `${v.stage}:${v.id}`) });
    this.onWritten();
  }
}
