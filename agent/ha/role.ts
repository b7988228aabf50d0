/**
 * The agent's HA role, from where the VIP lives: MASTER exactly when one of this instance's
 * interfaces carries the VIP (loxi-eni is attached here), BACKUP otherwise. The failover function
 * is the only one that moves the VIP; the agent only reports what it sees.
 */
import { HA_ROLE } from '../../lib/contract.ts';
import type { Imds } from './imds.ts';

export type Role = typeof HA_ROLE.master | typeof HA_ROLE.backup;

export function roleFromAddresses(vip: string, addresses: readonly string[]): Role {
  return addresses.includes(vip) ? HA_ROLE.master : HA_ROLE.backup;
}

/** Polls the instance's addresses; `current` is undefined until the first answer. */
export class RoleWatcher {
  private readonly imds: Imds;
  private readonly vip: string;
  private readonly intervalMs: number;
  private readonly onChange: (role: Role, previous: Role | undefined) => void;
  private readonly onError: (e: Error) => void;
  private failing = false;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  current: Role | undefined;
  /** Told of every role change (after onChange). */
  onRole: ((role: Role) => void) | undefined;

  constructor(o: { imds: Imds; vip: string; intervalMs: number; onChange: (role: Role, previous: Role | undefined) => void; onError: (e: Error) => void }) {
    this.imds = o.imds;
    this.onError = o.onError;
    this.vip = o.vip;
    this.intervalMs = o.intervalMs;
    this.onChange = o.onChange;
  }

  start(): void {
    if (this.timer) return;
    void this.check();
    this.timer = setInterval(() => void this.check(), this.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One look now; an IMDS error keeps the last known role, is reported once per streak, and is retried on the next tick. */
  async check(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const role = roleFromAddresses(this.vip, await this.imds.localIpv4s());
      this.failing = false;
      if (role !== this.current) {
        const previous = this.current;
        this.current = role;
        this.onChange(role, previous);
        this.onRole?.(role);
      }
    } catch (e) {
      if (!this.failing) this.onError(e as Error);
      this.failing = true;
    } finally {
      this.busy = false;
    }
  }
}
