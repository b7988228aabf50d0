/**
 * The EIP claim custom resource (`Custom::LoxihaEip`): Create and Update find or allocate the
 * deployment's EIP (./claim.ts) and answer its allocation id and address; Delete keeps it (that is
 * what `uninstall.retainEip` asks: the next deploy of the same id finds it). Composition root: the
 * event validated, EC2 wired, CloudFormation answered at its presigned URL.
 */
import { AllocateAddressCommand, DescribeAddressesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { Logger } from '@aws-lambda-powertools/logger';
import * as z from 'zod';
import { GROUP_NAME_PATTERN, groupOfTag, ROLE, TAG } from '../../lib/contract.ts';
import { type AddressStore, claimAddress } from './claim.ts';

const logger = new Logger({ serviceName: 'loxiha-eip-claim' });
const ec2 = new EC2Client({ region: process.env.AWS_REGION ?? 'us-east-1', endpoint: process.env.LOXIHA_AWS_ENDPOINT, maxAttempts: 8 });

export const store: AddressStore = {
  async tagged(deploymentId) {
    const r = await ec2.send(new DescribeAddressesCommand({ Filters: [{ Name: `tag:${TAG.deployment}`, Values: [deploymentId] }, { Name: `tag:${TAG.role}`, Values: [ROLE.eip] }] }));
    return (r.Addresses ?? [])
      .filter((a) => a.AllocationId && a.PublicIp)
      .map((a) => ({ allocationId: a.AllocationId!, publicIp: a.PublicIp!, associated: !!a.AssociationId, group: groupOfTag(a.Tags?.find((t) => t.Key === TAG.group)?.Value) }));
  },
  async allocate(tags) {
    const r = await ec2.send(new AllocateAddressCommand({ Domain: 'vpc', TagSpecifications: [{ ResourceType: 'elastic-ip', Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) }] }));
    if (!r.AllocationId || !r.PublicIp) throw new Error('AllocateAddress answered no allocation');
    return { allocationId: r.AllocationId, publicIp: r.PublicIp, associated: false, group: groupOfTag(tags[TAG.group]) };
  },
};

const eventSchema = z.object({
  RequestType: z.enum(['Create', 'Update', 'Delete']),
  ResponseURL: z.url({ protocol: /^https?$/ }),
  StackId: z.string(),
  RequestId: z.string(),
  LogicalResourceId: z.string(),
  PhysicalResourceId: z.string().optional(),
  ResourceProperties: z.object({ DeploymentId: z.string().min(1).max(64), Name: z.string().min(1).max(128), Group: z.string().regex(GROUP_NAME_PATTERN).optional() }).loose(),
});

export async function handler(event: unknown, _context?: unknown, send: typeof fetch = fetch): Promise<void> {
  const parsed = eventSchema.safeParse(event);
  if (!parsed.success) {
    logger.error('not a CloudFormation custom-resource event: nothing done', { issues: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) });
    throw new Error('invalid custom-resource event');
  }
  const e = parsed.data;
  let answer: { Status: 'SUCCESS' | 'FAILED'; Reason: string; PhysicalResourceId: string; Data?: Record<string, string> };
  try {
    if (e.RequestType === 'Delete') {
      logger.info('kept the EIP (uninstall.retainEip): the next deploy of this deployment id reuses it', { allocationId: e.PhysicalResourceId });
      answer = { Status: 'SUCCESS', Reason: 'kept', PhysicalResourceId: e.PhysicalResourceId ?? 'none' };
    } else {
      const p = e.ResourceProperties;
      const a = await claimAddress(store, p.DeploymentId, p.Name, (msg, extra) => logger.info(msg, extra ?? {}), p.Group);
      answer = { Status: 'SUCCESS', Reason: a.reused ? `reused ${a.allocationId}` : `allocated ${a.allocationId}`, PhysicalResourceId: a.allocationId, Data: { AllocationId: a.allocationId, PublicIp: a.publicIp } };
    }
  } catch (err) {
    logger.error('EIP claim failed', { error: (err as Error).message });
    answer = { Status: 'FAILED', Reason: (err as Error).message.slice(0, 500), PhysicalResourceId: e.PhysicalResourceId ?? 'none' };
  }
  const r = await send(e.ResponseURL, { method: 'PUT', headers: { 'content-type': '' }, body: JSON.stringify({ ...answer, StackId: e.StackId, RequestId: e.RequestId, LogicalResourceId: e.LogicalResourceId }) });
  if (!r.ok) throw new Error(`CloudFormation refused the answer: HTTP ${r.status}`);
}
