/** The AWS-behaviour layer's models that moto lacks, checked against their documented behaviour. */
import { CreateTagsCommand, DescribeSubnetsCommand, DescribeVpcsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { describe, expect, it } from 'vitest';
import { CREDENTIALS } from '../../sim/world.ts';
import { emulatedAws } from '../harness/emulated-aws.ts';
import { motoAvailable } from '../harness/prerequisites.ts';

describe.skipIf(!motoAvailable)('EC2 request token buckets (the proxy)', () => {
  const env = emulatedAws();

  /** Sends `n` calls at once (no simulated time passes) with no SDK retry; counts RequestLimitExceeded. */
  async function burst(n: number, command: () => object): Promise<number> {
    const ec2 = new EC2Client({ region: 'us-east-1', endpoint: env.proxy.endpoint, credentials: CREDENTIALS, maxAttempts: 1 });
    const answers = await Promise.allSettled(Array.from({ length: n }, () => ec2.send(command() as never)));
    ec2.destroy();
    return answers.filter((a) => a.status === 'rejected' && (a.reason as { name?: string }).name === 'RequestLimitExceeded').length;
  }

  it('throttles each action past its own bucket (what other callers left of it), and refills it with time', async () => {
    env.proxy.configure({ ec2TokenBuckets: { usedByOthers: 0.5 } });
    // Non-mutating: 100 tokens, half left to us.
    expect(await burst(60, () => new DescribeSubnetsCommand({}))).toBe(10);
    // Another action has its own bucket.
    expect(await burst(10, () => new DescribeVpcsCommand({}))).toBe(0);
    const vpc = (await env.world.ec2.send(new DescribeVpcsCommand({}))).Vpcs![0]!.VpcId!;
    // Mutating: 50 tokens, half ours, refilled at 2.5 a second.
    expect(await burst(30, () => new CreateTagsCommand({ Resources: [vpc], Tags: [{ Key: 'k', Value: 'v' }] }))).toBe(5);
    env.clock.advance(2000);
    expect(await burst(6, () => new CreateTagsCommand({ Resources: [vpc], Tags: [{ Key: 'k', Value: 'v' }] }))).toBe(1);
  });

  it('is off unless asked for', async () => {
    expect(await burst(120, () => new DescribeSubnetsCommand({}))).toBe(0);
  });
});
