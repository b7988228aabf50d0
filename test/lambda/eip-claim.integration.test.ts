/**
 * The EIP claim against the emulator: an install allocates the deployment's EIP (tagged); uninstalling
 * keeps it; the next install of the same deployment id finds it again — same allocation, same
 * address — and another deployment's EIP is never taken.
 */
import { AllocateAddressCommand, DescribeAddressesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROLE, TAG } from '../../lib/contract.ts';
import { type Moto, startMoto } from '../../sim/moto.ts';

let moto: Moto;
let handler: (event: unknown, context: unknown, send: typeof fetch) => Promise<void>;
let ec2: EC2Client;

beforeAll(async () => {
  moto = await startMoto();
  Object.assign(process.env, { LOXIHA_AWS_ENDPOINT: moto.endpoint, AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_REGION: 'us-east-1' });
  ({ handler } = await import('../../lambda/eip-claim/handler.ts'));
  ec2 = new EC2Client({ region: 'us-east-1', endpoint: moto.endpoint, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
});
afterAll(async () => {
  ec2?.destroy();
  await moto?.stop();
});

/** One custom-resource event; what the handler answered CloudFormation. */
async function event(RequestType: 'Create' | 'Update' | 'Delete', deploymentId: string, PhysicalResourceId?: string): Promise<any> {
  let answer: any;
  const send = (async (_url: string, init: { body: string }) => {
    answer = JSON.parse(init.body);
    return new Response('', { status: 200 });
  }) as unknown as typeof fetch;
  await handler({ RequestType, ResponseURL: 'https://cloudformation-custom-resource-response.example/x', StackId: 'arn:aws:cloudformation:us-east-1:123456789012:stack/s/1', RequestId: 'r', LogicalResourceId: 'EipClaim', ...(PhysicalResourceId ? { PhysicalResourceId } : {}), ResourceProperties: { ServiceToken: 'x', DeploymentId: deploymentId, Name: deploymentId } }, {}, send);
  return answer;
}
const addresses = async () => (await ec2.send(new DescribeAddressesCommand({}))).Addresses ?? [];

describe('EIP claim', () => {
  it('allocates once, keeps the address through an uninstall, and the next install of the same deployment finds it', async () => {
    // Another deployment's EIP, and an untagged one: never taken.
    await ec2.send(new AllocateAddressCommand({ Domain: 'vpc', TagSpecifications: [{ ResourceType: 'elastic-ip', Tags: [{ Key: TAG.deployment, Value: 'other' }, { Key: TAG.role, Value: ROLE.eip }] }] }));
    await ec2.send(new AllocateAddressCommand({ Domain: 'vpc' }));
    const first = await event('Create', 'loxiha-a');
    expect(first).toMatchObject({ Status: 'SUCCESS', Reason: expect.stringMatching(/^allocated eipalloc-/) });
    const { AllocationId, PublicIp } = first.Data;
    const mine = (await addresses()).find((a) => a.AllocationId === AllocationId)!;
    expect(Object.fromEntries((mine.Tags ?? []).map((t) => [t.Key, t.Value]))).toMatchObject({ [TAG.deployment]: 'loxiha-a', [TAG.role]: ROLE.eip });
    // A deploy that updates the stack finds the same one.
    expect((await event('Update', 'loxiha-a', AllocationId)).Data).toEqual({ AllocationId, PublicIp });
    // cdk destroy: kept.
    expect(await event('Delete', 'loxiha-a', AllocationId)).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: AllocationId });
    expect((await addresses()).some((a) => a.AllocationId === AllocationId)).toBe(true);
    // Installed again: the same allocation and address, nothing new allocated.
    const count = (await addresses()).length;
    const again = await event('Create', 'loxiha-a');
    expect(again).toMatchObject({ Status: 'SUCCESS', Reason: `reused ${AllocationId}`, PhysicalResourceId: AllocationId, Data: { AllocationId, PublicIp } });
    expect(await addresses()).toHaveLength(count);
    // Another deployment id gets its own.
    const other = await event('Create', 'loxiha-b');
    expect(other.Data.AllocationId).not.toBe(AllocationId);
  });

  it('refuses an event that is not CloudFormation’s, changing nothing', async () => {
    const before = (await addresses()).length;
    await expect(handler({ RequestType: 'Create' }, {}, fetch)).rejects.toThrow(/invalid custom-resource event/);
    expect(await addresses()).toHaveLength(before);
  });
});
