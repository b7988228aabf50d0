/**
 * The backup's fast path: when the peer that holds the VIP stops beating, ask the failover
 * function to move the VIP now instead of waiting for the CloudWatch alarm (tens of seconds).
 * The function still decides (health from CloudWatch and EC2, lease, hold-down): this is a hint.
 */
import { type FastPathRequest, fastPathRequestSchema, HA_ROLE } from '../../lib/contract.ts';
import type { PeerState } from './peer-link.ts';

export type FastPathDecision = { invoke: true; request: FastPathRequest } | { invoke: false; why: string };

export function fastPathDecision(peer: Pick<PeerState, 'role' | 'instanceId'>, myRole: string | undefined): FastPathDecision {
  if (peer.role !== HA_ROLE.master) return { invoke: false, why: `the lost peer was ${peer.role ?? 'never heard'}, not MASTER` };
  if (myRole !== 'BACKUP') return { invoke: false, why: `this agent is ${myRole ?? 'of unknown role'}, not BACKUP` };
  if (!peer.instanceId) return { invoke: false, why: 'the lost peer never said its instance id' };
  const request = fastPathRequestSchema.parse({ action: 'failover', from: peer.instanceId, reason: 'peer-heartbeat-lost' });
  return { invoke: true, request };
}
