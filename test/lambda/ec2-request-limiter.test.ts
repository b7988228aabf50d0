import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { describe, expect, it } from 'vitest';
import { Ec2Adapter } from '../../lambda/failover/aws/ec2.ts';
import { bucketOf, EC2_REQUEST_BUCKETS, Ec2RequestLimiter } from '../../lambda/failover/aws/ec2-request-limiter.ts';
import type { Clock } from '../../lambda/failover/clock.ts';

function fakeClock(): Clock & { t: number } {
  const c = { t: 0, now: () => c.t, sleep: async (ms: number) => void (c.t += ms) };
  return c;
}

describe('the EC2 request limiter', () => {
  it('sorts actions into the buckets AWS documents', () => {
    expect(bucketOf('DescribeNetworkInterfaces')).toBe('nonMutating');
    expect(bucketOf('AssociateAddress')).toBe('mutating');
    expect(bucketOf('ReplaceRoute')).toBe('mutating');
    expect(EC2_REQUEST_BUCKETS.mutating).toEqual({ capacity: 50, refillPerSecond: 5 });
  });

  it('lets a burst of its share through at once, then paces each action at its share of the refill rate', () => {
    const clock = fakeClock();
    const l = new Ec2RequestLimiter(clock, 0.5);
    // Half of a mutating bucket: 25 at once, then one every 400 ms (2.5 a second).
    const waits = Array.from({ length: 30 }, () => l.reserve('ReplaceRoute'));
    expect(waits.slice(0, 25)).toEqual(Array(25).fill(0));
    expect(waits.slice(25)).toEqual([400, 800, 1200, 1600, 2000]);
    // Each action has its own bucket.
    expect(l.reserve('AssociateAddress')).toBe(0);
    // Refilled with time, never above the share.
    clock.t += 60_000;
    expect(Array.from({ length: 26 }, () => l.reserve('ReplaceRoute')).filter((w) => w > 0)).toEqual([400]);
  });

  it('60 route replacements asked at once start when EC2’s own bucket (even half drained by others) has a token for each', () => {
    const l = new Ec2RequestLimiter(fakeClock(), 0.5);
    const starts = Array.from({ length: 60 }, () => l.reserve('ReplaceRoute')).sort((a, b) => a - b);
    // EC2's bucket, with the other half taken by other callers in the account: 25 tokens, 2.5 a second.
    let tokens = 25;
    let at = 0;
    for (const t of starts) {
      tokens = Math.min(25, tokens + ((t - at) / 1000) * 2.5) - 1;
      at = t;
      expect(tokens).toBeGreaterThanOrEqual(-1e-9);
    }
    // …and no later than needed: the last one at (60 − 25) / 2.5 s.
    expect(starts.at(-1)).toBe(14_000);
  });

  it('refuses a share outside (0, 1]', () => {
    expect(() => new Ec2RequestLimiter(fakeClock(), 0)).toThrow(/share/);
    expect(() => new Ec2RequestLimiter(fakeClock(), 1.5)).toThrow(/share/);
  });

  it('the EC2 adapter takes a token per call, named by the action', async () => {
    const mock = mockClient(EC2Client);
    mock.on(DescribeInstancesCommand).resolves({ Reservations: [] });
    const taken: string[] = [];
    const limiter = new Ec2RequestLimiter(fakeClock());
    const take = limiter.take.bind(limiter);
    limiter.take = (action: string) => {
      taken.push(action);
      return take(action);
    };
    const ec2 = new Ec2Adapter(new EC2Client({ region: 'us-east-1' }), { deploymentId: 'd', vpcId: 'vpc-1', clock: fakeClock(), limiter });
    await ec2.lbInstances();
    expect(taken).toEqual(['DescribeInstances']);
    mock.restore();
  });
});
