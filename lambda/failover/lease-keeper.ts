/**
 * Keeps a run's lease while the run lives. The lease is short (LEASE_TTL_MS in ./wiring.ts) so that
 * a run that dies — a Lambda timeout or out-of-memory ends it mid-move — frees it within seconds;
 * a run that lives renews it in the background every `renewEveryMs`, however long one call or wait
 * takes. Renewing stays the fence as well: before every mutation the run renews by conditional
 * write (`fence`), so a run whose lease was lost (its renewals failed and another run took it
 * over) stops before its next change. The background loop ends with the run (`stop`), and a loss
 * it sees is kept and thrown at the run's next fence or keep-alive.
 */
import type { Clock } from './clock.ts';
import { LeaseLostError } from './lease.ts';

/** The part of the lease the keeper uses. */
export interface RenewableLease {
  renew(holder: string, epoch: number, now: number): Promise<void>;
}

export class LeaseKeeper {
  private readonly lease: RenewableLease;
  private readonly clock: Clock;
  readonly holder: string;
  readonly epoch: number;
  private readonly renewEveryMs: number;
  private renewedAt: number;
  private stopped = true;
  private lost: LeaseLostError | undefined;
  /** Background renewals that failed for another reason than a lost lease (retried on the next look). */
  renewalFailures = 0;

  constructor(o: { lease: RenewableLease; clock: Clock; holder: string; epoch: number; renewEveryMs: number }) {
    this.lease = o.lease;
    this.clock = o.clock;
    this.holder = o.holder;
    this.epoch = o.epoch;
    this.renewEveryMs = o.renewEveryMs;
    this.renewedAt = o.clock.now();
  }

  /** Starts renewing in the background (the lease was just taken: its expiry is a full lifetime away). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
  }

  /** Before a mutation: renews now (the conditional write is the fence); throws LeaseLostError when the lease is no longer ours. */
  async fence(): Promise<void> {
    if (this.lost) throw this.lost;
    await this.renew();
  }

  /** In a long wait: renews when the last renewal is older than the interval. */
  async keepAlive(): Promise<void> {
    if (this.lost) throw this.lost;
    if (this.clock.now() - this.renewedAt >= this.renewEveryMs) await this.renew();
  }

  private async renew(): Promise<void> {
    const at = this.clock.now();
    try {
      await this.lease.renew(this.holder, this.epoch, at);
      this.renewedAt = Math.max(this.renewedAt, at);
    } catch (e) {
      if (e instanceof LeaseLostError) this.lost = e;
      throw e;
    }
  }

  private async loop(): Promise<void> {
    // Looks three times per interval, so a renewal is never much later than due. `idle` waits
    // without driving simulated time (tests and benchmarks): only the run's own work does.
    const look = Math.max(1, Math.floor(this.renewEveryMs / 3));
    while (!this.stopped) {
      await (this.clock.idle ?? this.clock.sleep).call(this.clock, look);
      if (this.stopped || this.lost) return;
      if (this.clock.now() - this.renewedAt < this.renewEveryMs) continue;
      try {
        await this.renew();
      } catch (e) {
        if (e instanceof LeaseLostError) return;
        this.renewalFailures++; // throttled, a network error: the next look tries again, well before expiry
      }
    }
  }
}
