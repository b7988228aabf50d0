/**
 * The failover lease: one DynamoDB item per deployment and VIP group, taken by conditional write.
 * Each take increments `epoch` (the fencing token); the holder renews it before every
 * mutation, so an actor whose lease expired and was taken over stops at its next step.
 */
import { type DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { DEFAULT_GROUP, leaseKeyOf } from '../../lib/contract.ts';
import { errorCode } from './aws/ec2.ts';
import type { LeaseView } from './snapshot.ts';

export class LeaseLostError extends Error {
  constructor(epoch: number) {
    super(`lease epoch ${epoch} is no longer ours (expired and taken over); stopping before the next mutation`);
    this.name = 'LeaseLostError';
  }
}

export type AcquireResult = { acquired: true; epoch: number; lease: LeaseView } | { acquired: false; lease: LeaseView };

const num = (v: { N?: string } | undefined) => (v?.N === undefined ? undefined : Number(v.N));

function view(item: Record<string, any> | undefined): LeaseView {
  return {
    holder: item?.holder?.S,
    epoch: num(item?.epoch) ?? 0,
    expiresAt: num(item?.expiresAt) ?? 0,
    lastMoveAt: num(item?.lastMoveAt),
    lastOwner: item?.lastOwner?.S,
    lastResult: item?.lastResult?.S,
    tornDownAt: num(item?.tornDownAt),
    ...(item?.lostInstance?.S && num(item?.lostAt) !== undefined ? { lost: { instanceId: item.lostInstance.S as string, at: num(item.lostAt)! } } : {}),
  };
}

/** What a run sees when it takes the lease: the item as it was, with itself as the holder. */
function taken(old: Record<string, any> | undefined, holder: string, now: number, ttlMs: number): LeaseView {
  const before = view(old);
  return {
    ...before,
    holder,
    epoch: before.epoch + 1,
    expiresAt: now + ttlMs,
    // A holder that never released the lease stopped mid-run; if it had started a move, say from where.
    interruptedMoveFrom: before.holder !== undefined ? old?.moveFrom?.S : undefined,
  };
}

export class Lease {
  private readonly client: DynamoDBClient;
  private readonly table: string;
  private readonly key: Record<string, { S: string }>;
  private readonly ttlMs: number;
  calls = 0;

  /** One lease per VIP group: runs for different groups never wait on, nor fence, each other. */
  constructor(client: DynamoDBClient, table: string, deploymentId: string, ttlMs: number, group: string = DEFAULT_GROUP) {
    this.client = client;
    this.table = table;
    this.key = { pk: { S: leaseKeyOf(deploymentId, group) } };
    this.ttlMs = ttlMs;
  }

  async read(): Promise<LeaseView> {
    this.calls++;
    const r = await this.client.send(new GetItemCommand({ TableName: this.table, Key: this.key, ConsistentRead: true }));
    return view(r.Item);
  }

  /** Takes the lease if nobody holds it or the holder's lease expired; bumps the epoch. */
  async acquire(holder: string, now: number): Promise<AcquireResult> {
    try {
      this.calls++;
      const r = await this.client.send(
        new UpdateItemCommand({
          TableName: this.table,
          Key: this.key,
          UpdateExpression: 'SET holder = :h, expiresAt = :exp, epoch = if_not_exists(epoch, :zero) + :one',
          ConditionExpression: 'attribute_not_exists(holder) OR expiresAt < :now',
          ExpressionAttributeValues: { ':h': { S: holder }, ':exp': { N: String(now + this.ttlMs) }, ':now': { N: String(now) }, ':zero': { N: '0' }, ':one': { N: '1' } },
          ReturnValues: 'ALL_OLD',
        }),
      );
      const lease = taken(r.Attributes, holder, now, this.ttlMs);
      return { acquired: true, epoch: lease.epoch, lease };
    } catch (e) {
      if (errorCode(e) !== 'ConditionalCheckFailedException') throw e;
      return { acquired: false, lease: await this.read() };
    }
  }

  /** Records that a move from `from` starts (one run holds it at a time): a run that finds it after a crash knows where the VIP came from. */
  markMove(holder: string, epoch: number, from: string): Promise<void> {
    return this.updateAsHolder(holder, epoch, 'SET moveFrom = :f', { ':f': { S: from } });
  }

  /** Extends our lease; throws LeaseLostError when someone else holds it now. */
  renew(holder: string, epoch: number, now: number): Promise<void> {
    return this.updateAsHolder(holder, epoch, 'SET expiresAt = :exp', { ':exp': { N: String(now + this.ttlMs) } });
  }

  /**
   * Gives the lease back, recording the outcome (and the move time when the VIP moved).
   * `tornDownAt`: a time records a teardown, null clears the record, undefined leaves it.
   */
  async release(holder: string, epoch: number, outcome: { result: string; owner?: string; movedAt?: number; tornDownAt?: number | null; lost?: { instanceId: string; at: number } }): Promise<void> {
    const values: Record<string, any> = { ':r': { S: outcome.result } };
    let set = 'lastResult = :r';
    const remove = ['holder', 'expiresAt', 'moveFrom'];
    if (typeof outcome.tornDownAt === 'number') {
      set += ', tornDownAt = :t';
      values[':t'] = { N: String(outcome.tornDownAt) };
    } else if (outcome.tornDownAt === null) remove.push('tornDownAt');
    if (outcome.owner) {
      set += ', lastOwner = :o';
      values[':o'] = { S: outcome.owner };
    }
    if (outcome.movedAt !== undefined) {
      set += ', lastMoveAt = :m';
      values[':m'] = { N: String(outcome.movedAt) };
    }
    if (outcome.lost) {
      set += ', lostInstance = :li, lostAt = :la';
      values[':li'] = { S: outcome.lost.instanceId };
      values[':la'] = { N: String(outcome.lost.at) };
    }
    return this.updateAsHolder(holder, epoch, `SET ${set} REMOVE ${remove.join(', ')}`, values);
  }

  /** An update that only the holder of this epoch may make. */
  private async updateAsHolder(holder: string, epoch: number, update: string, values: Record<string, any>): Promise<void> {
    try {
      this.calls++;
      await this.client.send(
        new UpdateItemCommand({
          TableName: this.table,
          Key: this.key,
          UpdateExpression: update,
          ConditionExpression: 'holder = :h AND epoch = :e',
          ExpressionAttributeValues: { ...values, ':h': { S: holder }, ':e': { N: String(epoch) } },
        }),
      );
    } catch (e) {
      if (errorCode(e) === 'ConditionalCheckFailedException') throw new LeaseLostError(epoch);
      throw e;
    }
  }
}
