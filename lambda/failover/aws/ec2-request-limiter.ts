/**
 * Paces EC2 calls client-side so that a run never drains EC2's request token buckets.
 *
 * EC2 throttles each API action on its own token bucket, per account and Region ("Request throttling
 * for the Amazon EC2 API", docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html):
 * non-mutating actions (Describe*, Get*, List*, Search*) hold 100 tokens refilled at 20 a second;
 * mutating actions hold 50 refilled at 5 a second. A request past an empty bucket answers
 * RequestLimitExceeded, and every retry spends a token again — and the SDK's retry quota. The
 * buckets are the account's, shared with everything else that calls EC2 there (the VPC CNI,
 * Karpenter, other tooling): this limiter keeps a run to a share of each bucket.
 *
 * Reservation, not polling: each call takes a token at once, going into debt when the bucket is
 * empty, and waits until its token has been refilled — first come, first served, one sleep per call.
 */
import type { Clock } from '../clock.ts';

/** One of EC2's request token buckets, as AWS documents it. */
export interface TokenBucketSpec {
  capacity: number;
  refillPerSecond: number;
}

export const EC2_REQUEST_BUCKETS = {
  nonMutating: { capacity: 100, refillPerSecond: 20 },
  mutating: { capacity: 50, refillPerSecond: 5 },
} as const satisfies Record<string, TokenBucketSpec>;

/** Which bucket an EC2 action draws from (its own bucket, of that size). */
export function bucketOf(action: string): keyof typeof EC2_REQUEST_BUCKETS {
  return /^(Describe|Get|List|Search)/.test(action) ? 'nonMutating' : 'mutating';
}

interface BucketState {
  tokens: number;
  at: number;
}

export class Ec2RequestLimiter {
  private readonly clock: Clock;
  private readonly share: number;
  private readonly buckets = new Map<string, BucketState>();

  /** `share`: the fraction of each of the account's buckets this run may use (0–1]. */
  constructor(clock: Clock, share = 0.5) {
    if (!(share > 0 && share <= 1)) throw new RangeError(`share must be in (0, 1], got ${share}`);
    this.clock = clock;
    this.share = share;
  }

  /** How long a call of `action` made now must wait (ms); the token is taken. */
  reserve(action: string): number {
    const spec = EC2_REQUEST_BUCKETS[bucketOf(action)];
    const capacity = spec.capacity * this.share;
    const rate = (spec.refillPerSecond * this.share) / 1000;
    const now = this.clock.now();
    const b = this.buckets.get(action) ?? { tokens: capacity, at: now };
    b.tokens = Math.min(capacity, b.tokens + (now - b.at) * rate) - 1;
    b.at = now;
    this.buckets.set(action, b);
    return b.tokens >= 0 ? 0 : Math.ceil(-b.tokens / rate);
  }

  /** Takes a token for `action`, waiting for it if the bucket is empty. */
  async take(action: string): Promise<void> {
    const wait = this.reserve(action);
    if (wait > 0) await this.clock.sleep(wait);
  }
}
