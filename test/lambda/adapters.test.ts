import { ConditionalCheckFailedException, DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import {
  AssociateRouteTableCommand,
  AttachNetworkInterfaceCommand,
  CreateNetworkInterfaceCommand,
  CreateSubnetCommand,
  DeleteSubnetCommand,
  DescribeNetworkInterfacesCommand,
  DescribeRouteTablesCommand,
  DescribeSubnetsCommand,
  DetachNetworkInterfaceCommand,
  EC2Client,
  ModifyInstanceAttributeCommand,
  EC2ServiceException,
} from '@aws-sdk/client-ec2';
import { AutoScalingClient, AutoScalingServiceException, CompleteLifecycleActionCommand, RecordLifecycleActionHeartbeatCommand } from '@aws-sdk/client-auto-scaling';
import { mockClient } from 'aws-sdk-client-mock';
import { LifecycleActions } from '../../lambda/failover/aws/autoscaling.ts';
import { afterEach, describe, expect, it } from 'vitest';
import { TAG } from '../../lib/contract.ts';
import { Ec2Adapter } from '../../lambda/failover/aws/ec2.ts';
import type { Clock } from '../../lambda/failover/clock.ts';
import { Lease, LeaseLostError } from '../../lambda/failover/lease.ts';

const ec2Mock = mockClient(EC2Client);
const ddbMock = mockClient(DynamoDBClient);
const asgMock = mockClient(AutoScalingClient);
afterEach(() => {
  ec2Mock.reset();
  ddbMock.reset();
  asgMock.reset();
});

/** A clock whose sleeps return at once and move time forward. */
function fastClock(): Clock {
  let t = 0;
  return { now: () => t, sleep: async (ms) => void (t += ms) };
}

const awsError = (code: string) => new EC2ServiceException({ name: code, $fault: 'client', $metadata: { httpStatusCode: 400 }, message: code });
const adapter = () => new Ec2Adapter(new EC2Client({ region: 'us-east-1' }), { deploymentId: 'd1', vpcId: 'vpc-1', clock: fastClock() });
const ours = [
  { Key: TAG.deployment, Value: 'd1' },
  { Key: TAG.role, Value: 'floating-subnet' },
];

describe('Ec2Adapter', () => {
  it('adopts our own subnet when CreateSubnet answers a conflict (a lost answer of an earlier run)', async () => {
    ec2Mock.on(CreateSubnetCommand).rejects(awsError('InvalidSubnet.Conflict'));
    ec2Mock.on(DescribeSubnetsCommand).resolvesOnce({ Subnets: [] }).resolves({ Subnets: [{ SubnetId: 'subnet-ours', AvailabilityZone: 'us-east-1b', Tags: ours }] });
    await expect(adapter().createSubnet('us-east-1b', '100.64.248.0/24', 3, 60_000)).resolves.toBe('subnet-ours');
  });

  it('refuses to adopt a subnet that is not this deployment’s', async () => {
    ec2Mock.on(CreateSubnetCommand).rejects(awsError('InvalidSubnet.Conflict'));
    ec2Mock.on(DescribeSubnetsCommand).resolves({ Subnets: [{ SubnetId: 'subnet-theirs', AvailabilityZone: 'us-east-1b', Tags: [{ Key: TAG.deployment, Value: 'other' }] }] });
    await expect(adapter().createSubnet('us-east-1b', '100.64.248.0/24', 3, 60_000)).rejects.toThrow(/not a floating subnet of this deployment's group "default"/);
  });

  it('refuses to adopt another group’s floating subnet, and tags what a group creates with the group', async () => {
    const blue = new Ec2Adapter(new EC2Client({ region: 'us-east-1' }), { deploymentId: 'd1', vpcId: 'vpc-1', clock: fastClock(), group: 'blue' });
    ec2Mock.on(CreateSubnetCommand).rejects(awsError('InvalidSubnet.Conflict'));
    ec2Mock.on(DescribeSubnetsCommand).resolves({ Subnets: [{ SubnetId: 'subnet-default', AvailabilityZone: 'us-east-1b', Tags: [{ Key: TAG.deployment, Value: 'd1' }, { Key: TAG.role, Value: 'floating-subnet' }] }] });
    await expect(blue.createSubnet('us-east-1b', '100.64.248.0/24', 3, 60_000)).rejects.toThrow(/group "blue"/);
    ec2Mock.on(CreateSubnetCommand).resolves({ Subnet: { SubnetId: 'subnet-1' } });
    await blue.createSubnet('us-east-1a', '100.64.249.0/24', 7, 60_000);
    const tags = ec2Mock.commandCalls(CreateSubnetCommand).at(-1)!.args[0].input.TagSpecifications![0]!.Tags!;
    expect(tags).toEqual(expect.arrayContaining([{ Key: TAG.group, Value: 'blue' }, { Key: 'Name', Value: expect.stringMatching(/-blue-floating-us-east-1a$/) }]));
    // The default group's carry no group tag, as before groups existed.
    await adapter().createSubnet('us-east-1a', '100.64.248.0/24', 7, 60_000);
    expect(ec2Mock.commandCalls(CreateSubnetCommand).at(-1)!.args[0].input.TagSpecifications![0]!.Tags!.map((t) => t.Key)).not.toContain(TAG.group);
  });

  it('attaches at the next free device index when another group’s run took the planned one on that instance', async () => {
    const taken = new EC2ServiceException({ name: 'InvalidParameterValue', $fault: 'client', $metadata: { httpStatusCode: 400 }, message: "Instance 'i-1' already has an interface attached at device index '2'." });
    ec2Mock.on(AttachNetworkInterfaceCommand).rejectsOnce(taken).resolves({ AttachmentId: 'eni-attach-1' });
    await adapter().attachEni('eni-1', 'i-1', 2, 60_000);
    expect(ec2Mock.commandCalls(AttachNetworkInterfaceCommand).map((c) => c.args[0].input.DeviceIndex)).toEqual([2, 3]);
    // Any other refusal is not retried at another index.
    ec2Mock.reset();
    ec2Mock.on(AttachNetworkInterfaceCommand).rejects(awsError('AttachmentLimitExceeded'));
    ec2Mock.on(DescribeNetworkInterfacesCommand).resolves({ NetworkInterfaces: [] });
    await expect(adapter().attachEni('eni-1', 'i-1', 2, 60_000)).rejects.toThrow(/AttachmentLimitExceeded/);
    expect(ec2Mock.commandCalls(AttachNetworkInterfaceCommand)).toHaveLength(1);
  });

  it('tags what it creates with the deployment, role and epoch', async () => {
    ec2Mock.on(CreateSubnetCommand).resolves({ Subnet: { SubnetId: 'subnet-1' } });
    await adapter().createSubnet('us-east-1a', '100.64.248.0/24', 7, 60_000);
    const tags = ec2Mock.commandCalls(CreateSubnetCommand)[0]!.args[0].input.TagSpecifications![0]!.Tags!;
    expect(tags).toEqual(expect.arrayContaining([{ Key: TAG.deployment, Value: 'd1' }, { Key: TAG.role, Value: 'floating-subnet' }, { Key: TAG.epoch, Value: '7' }]));
  });

  it('retries DeleteSubnet while ENIs linger (DependencyViolation), and treats NotFound as done', async () => {
    ec2Mock.on(DeleteSubnetCommand).rejectsOnce(awsError('DependencyViolation')).rejectsOnce(awsError('DependencyViolation')).resolves({});
    await adapter().deleteSubnet('subnet-1', 60_000);
    expect(ec2Mock.commandCalls(DeleteSubnetCommand)).toHaveLength(3);
    ec2Mock.reset();
    ec2Mock.on(DeleteSubnetCommand).rejects(awsError('InvalidSubnetID.NotFound'));
    await expect(adapter().deleteSubnet('subnet-1', 60_000)).resolves.toBeUndefined();
  });

  it('gives up on DependencyViolation at the deadline with a resumable error', async () => {
    ec2Mock.on(DeleteSubnetCommand).rejects(awsError('DependencyViolation'));
    await expect(adapter().deleteSubnet('subnet-1', 10_000)).rejects.toThrow(/ran out of time.*DependencyViolation/);
  });

  it('creates the ENI with a ClientToken that is the same on a re-run for the same subnet', async () => {
    ec2Mock.on(CreateNetworkInterfaceCommand).resolves({ NetworkInterface: { NetworkInterfaceId: 'eni-1' } });
    const a = adapter();
    await a.createEni({ subnetId: 'subnet-1', privateIp: '100.64.248.254', securityGroupIds: ['sg-1'], epoch: 1, az: 'us-east-1a' }, 60_000);
    await a.createEni({ subnetId: 'subnet-1', privateIp: '100.64.248.254', securityGroupIds: ['sg-1'], epoch: 2, az: 'us-east-1a' }, 60_000);
    const [first, second] = ec2Mock.commandCalls(CreateNetworkInterfaceCommand).map((c) => c.args[0].input);
    expect(first!.ClientToken).toBe('d1-subnet-1');
    expect(second!.ClientToken).toBe(first!.ClientToken);
    expect(first!.PrivateIpAddress).toBe('100.64.248.254');
    expect(first!.Groups).toEqual(['sg-1']);
  });

  it('retries calls on a resource that AWS does not show yet (NotFound right after create)', async () => {
    ec2Mock.on(CreateNetworkInterfaceCommand).rejectsOnce(awsError('InvalidSubnetID.NotFound')).resolves({ NetworkInterface: { NetworkInterfaceId: 'eni-1' } });
    await expect(adapter().createEni({ subnetId: 'subnet-new', privateIp: '100.64.248.254', securityGroupIds: [], epoch: 1, az: 'us-east-1a' }, 60_000)).resolves.toBe('eni-1');
  });

  it('treats an attach whose answer was lost as done when the ENI is attached to the target', async () => {
    ec2Mock.on(AttachNetworkInterfaceCommand).rejects(awsError('InvalidParameterValue'));
    ec2Mock.on(DescribeNetworkInterfacesCommand).resolves({ NetworkInterfaces: [{ NetworkInterfaceId: 'eni-1', Attachment: { AttachmentId: 'a-1', InstanceId: 'i-target', Status: 'attached' } }] });
    await expect(adapter().attachEni('eni-1', 'i-target', 1, 60_000)).resolves.toBeUndefined();
    ec2Mock.on(DescribeNetworkInterfacesCommand).resolves({ NetworkInterfaces: [{ NetworkInterfaceId: 'eni-1', Attachment: { AttachmentId: 'a-1', InstanceId: 'i-other', Status: 'attached' } }] });
    await expect(adapter().attachEni('eni-1', 'i-target', 1, 60_000)).rejects.toThrow();
  });

  it('retries an attach to an ENI not visible yet without reading it after each NotFound', async () => {
    ec2Mock.on(AttachNetworkInterfaceCommand).rejectsOnce(awsError('InvalidNetworkInterfaceID.NotFound')).resolves({ AttachmentId: 'a-1' });
    await expect(adapter().attachEni('eni-new', 'i-target', 1, 60_000)).resolves.toBeUndefined();
    expect(ec2Mock.commandCalls(AttachNetworkInterfaceCommand)).toHaveLength(2);
    expect(ec2Mock.commandCalls(DescribeNetworkInterfacesCommand)).toHaveLength(0);
  });

  it('returns the route table association from the answer, or finds ours after a lost answer, and refuses another table', async () => {
    ec2Mock.on(AssociateRouteTableCommand).resolves({ AssociationId: 'rtbassoc-1' });
    await expect(adapter().associateRouteTable('rtb-float', 'subnet-new', 60_000)).resolves.toBe('rtbassoc-1');
    ec2Mock.on(AssociateRouteTableCommand).rejects(awsError('Resource.AlreadyAssociated'));
    ec2Mock.on(DescribeRouteTablesCommand).resolves({ RouteTables: [{ RouteTableId: 'rtb-float', Associations: [{ SubnetId: 'subnet-new', RouteTableAssociationId: 'rtbassoc-2' }] }] });
    await expect(adapter().associateRouteTable('rtb-float', 'subnet-new', 60_000)).resolves.toBe('rtbassoc-2');
    ec2Mock.on(DescribeRouteTablesCommand).resolves({ RouteTables: [{ RouteTableId: 'rtb-other', Associations: [{ SubnetId: 'subnet-new', RouteTableAssociationId: 'rtbassoc-3' }] }] });
    await expect(adapter().associateRouteTable('rtb-float', 'subnet-new', 60_000)).rejects.toThrow(/associated with route table rtb-other, not rtb-float/);
  });

  it('finds a slot’s interface by its tags, attaches it at the slot device index, and turns an instance’s source/dest check off', async () => {
    ec2Mock.on(DescribeNetworkInterfacesCommand).resolves({ NetworkInterfaces: [{ NetworkInterfaceId: 'eni-slot1', Attachment: { AttachmentId: 'a-9', InstanceId: 'i-old', Status: 'attached' } }] });
    expect(await adapter().slotInterface(1)).toEqual({ id: 'eni-slot1', attachment: { id: 'a-9', instanceId: 'i-old', status: 'attached' } });
    const filters = ec2Mock.commandCalls(DescribeNetworkInterfacesCommand)[0]!.args[0].input.Filters!;
    expect(filters).toContainEqual({ Name: `tag:${TAG.role}`, Values: ['slot-interface'] });
    expect(filters).toContainEqual({ Name: `tag:${TAG.instanceIndex}`, Values: ['1'] });
    expect(filters).toContainEqual({ Name: `tag:${TAG.deployment}`, Values: ['d1'] });
    ec2Mock.on(AttachNetworkInterfaceCommand).resolves({ AttachmentId: 'a-10' });
    await adapter().attachSlotInterface('eni-slot1', 'i-new', 60_000);
    expect(ec2Mock.commandCalls(AttachNetworkInterfaceCommand)[0]!.args[0].input).toEqual({ NetworkInterfaceId: 'eni-slot1', InstanceId: 'i-new', DeviceIndex: 1 });
    ec2Mock.on(ModifyInstanceAttributeCommand).resolves({});
    await adapter().disableInstanceSourceDestCheck('i-new', 60_000);
    expect(ec2Mock.commandCalls(ModifyInstanceAttributeCommand)[0]!.args[0].input).toEqual({ InstanceId: 'i-new', SourceDestCheck: { Value: false } });
  });

  it('treats detaching an attachment that is gone as done', async () => {
    ec2Mock.on(DetachNetworkInterfaceCommand).rejects(awsError('InvalidAttachmentID.NotFound'));
    await expect(adapter().detachEni('eni-attach-1', false)).resolves.toBeUndefined();
  });
});

describe('Lease', () => {
  const lease = () => new Lease(new DynamoDBClient({ region: 'us-east-1' }), 't', 'd1', 90_000);
  const conditional = () => new ConditionalCheckFailedException({ $metadata: {}, message: 'failed' });

  it('takes the lease with a conditional write that bumps the epoch', async () => {
    // The item as it was (ALL_OLD): released by its last holder, epoch 4.
    ddbMock.on(UpdateItemCommand).resolves({ Attributes: { pk: { S: 'lease#d1' }, epoch: { N: '4' }, lastOwner: { S: 'i-1' } } });
    const r = await lease().acquire('me', 0);
    expect(r).toMatchObject({ acquired: true, epoch: 5, lease: { holder: 'me', epoch: 5, lastOwner: 'i-1', interruptedMoveFrom: undefined } });
    const input = ddbMock.commandCalls(UpdateItemCommand)[0]!.args[0].input;
    expect(input.ConditionExpression).toBe('attribute_not_exists(holder) OR expiresAt < :now');
    expect(input.UpdateExpression).toContain('epoch = if_not_exists(epoch, :zero) + :one');
  });

  it('takes over from a holder that never released it, and says where its move started', async () => {
    ddbMock.on(UpdateItemCommand).resolves({ Attributes: { pk: { S: 'lease#d1' }, holder: { S: 'dead' }, epoch: { N: '7' }, expiresAt: { N: '10' }, moveFrom: { S: 'i-0a' } } });
    await expect(lease().acquire('me', 100)).resolves.toMatchObject({ acquired: true, epoch: 8, lease: { holder: 'me', interruptedMoveFrom: 'i-0a' } });
  });

  it('reports who holds it when the write is refused', async () => {
    ddbMock.on(UpdateItemCommand).rejects(conditional());
    ddbMock.on(GetItemCommand).resolves({ Item: { holder: { S: 'other' }, epoch: { N: '9' }, expiresAt: { N: '50000' } } });
    await expect(lease().acquire('me', 0)).resolves.toMatchObject({ acquired: false, lease: { holder: 'other', epoch: 9 } });
  });

  it('fences: renewing a lease someone else took throws LeaseLostError', async () => {
    ddbMock.on(UpdateItemCommand).rejects(conditional());
    await expect(lease().renew('me', 5, 0)).rejects.toBeInstanceOf(LeaseLostError);
  });
});

describe('LifecycleActions', () => {
  const a = { autoScalingGroupName: 'loxiha-sim-slot0', lifecycleHookName: 'loxiha-terminating', lifecycleActionToken: 'tok', instanceId: 'i-1' };
  const gone = new AutoScalingServiceException({ name: 'ValidationError', $fault: 'client', $metadata: { httpStatusCode: 400 }, message: 'No active Lifecycle Action found with token tok' });

  it('completes the action with the token and the result asked', async () => {
    asgMock.on(CompleteLifecycleActionCommand).resolves({});
    expect(await new LifecycleActions(new AutoScalingClient({ region: 'us-east-1' })).complete(a, 'CONTINUE')).toBe(true);
    expect(asgMock.commandCalls(CompleteLifecycleActionCommand)[0]!.args[0].input).toEqual({ AutoScalingGroupName: a.autoScalingGroupName, LifecycleHookName: a.lifecycleHookName, LifecycleActionToken: 'tok', InstanceId: 'i-1', LifecycleActionResult: 'CONTINUE' });
  });

  it('says an action that already ended is gone (false), and throws anything else', async () => {
    const actions = new LifecycleActions(new AutoScalingClient({ region: 'us-east-1' }));
    asgMock.on(CompleteLifecycleActionCommand).rejects(gone);
    asgMock.on(RecordLifecycleActionHeartbeatCommand).rejects(gone);
    expect(await actions.complete(a, 'CONTINUE')).toBe(false);
    expect(await actions.heartbeat(a)).toBe(false);
    asgMock.on(RecordLifecycleActionHeartbeatCommand).rejects(new Error('AccessDenied'));
    await expect(actions.heartbeat(a)).rejects.toThrow('AccessDenied');
  });
});
