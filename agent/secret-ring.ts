/**
 * A secret file holding one value or several, one per line: the first is the one this agent uses (it
 * signs heartbeats, opens sync sessions, is the token it expects first); every one is accepted — the
 * overlap of a rotation, while the peer or kube-loxilb may still use the previous value or already the
 * next. The file is read again when it changes (size or modification time), so a rotated secret is
 * picked up without a restart; a file that became unreadable or empty keeps the values last read.
 */
import { readFileSync, statSync } from 'node:fs';

export class SecretRing {
  private readonly file: string;
  private readonly minLength: number;
  private values: string[] = [];
  private stamp = '';
  private timer: NodeJS.Timeout | undefined;
  /** Told when the values changed (rotation picked up), with how many there are now. */
  onChange: (count: number) => void = () => {};
  /** Told when the file could not be used (the values last read stay). */
  onError: (why: string) => void = () => {};

  constructor(file: string, minLength = 1) {
    this.file = file;
    this.minLength = minLength;
    this.refresh();
  }

  /** The value this agent uses; undefined when the file never held a usable one. */
  current(): string | undefined {
    return this.values[0];
  }

  /** Every value accepted from others, the current one first. */
  accepted(): readonly string[] {
    return this.values;
  }

  /**
   * Reads the file again when it changed; true when the values changed. A file that cannot be used is
   * said once (until it changes again), and the values last read stay.
   */
  refresh(): boolean {
    let stamp: string;
    let text: string;
    try {
      const st = statSync(this.file);
      stamp = `${st.size}:${st.mtimeMs}`;
      if (stamp === this.stamp) return false;
      text = readFileSync(this.file, 'utf8');
    } catch (e) {
      if (this.stamp !== 'unreadable') this.onError(`cannot read ${this.file}: ${(e as Error).message}; keeping what was read before`);
      this.stamp = 'unreadable';
      return false;
    }
    this.stamp = stamp;
    const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
    const usable = [...new Set(lines.filter((v) => v.length >= this.minLength))];
    if (usable.length === 0) {
      this.onError(`${this.file}: no value of ${this.minLength}+ characters; keeping what was read before`);
      return false;
    }
    if (usable.length < lines.length) this.onError(`${this.file}: ignored ${lines.length - usable.length} line(s) shorter than ${this.minLength} characters or repeated`);
    const changed = usable.join('\n') !== this.values.join('\n');
    this.values = usable;
    if (changed) this.onChange(usable.length);
    return changed;
  }

  /** Looks at the file every `intervalMs`. */
  watch(intervalMs: number): void {
    this.timer ??= setInterval(() => this.refresh(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
