/**
 * The fast path: when the peer that holds the VIP stops beating (its host answers nothing), the
 * backup asks the failover function to move the VIP now instead of waiting for the CloudWatch alarm
 * (tens of seconds). When the backup is the one lost, the owner tells the function so, which then
 * moves nothing to it (an operator's move, a lifecycle move) until it beats again. The function still
 * decides (health from CloudWatch and EC2, lease, hold-down): these are hints.
 */
import { type FastPathRequest, fastPathRequestSchema, HA_ROLE } from '../../lib/contract.ts';
import type { PeerState } from './peer-link.ts';

export type FastPathDecision = { invoke: true; request: FastPathRequest } | { invoke: false; why: string };

/**
 * `severalGroups`: every instance may own a group, so a lost owner is reported by any peer that
 * hears it go, whatever its own role (the function moves each group the lost instance held).
 */
export function fastPathDecision(peer: Pick<PeerState, 'role' | 'instanceId'>, myRole: string | undefined, severalGroups = false): FastPathDecision {
  const owner = peer.role === HA_ROLE.master && (myRole === HA_ROLE.backup || (severalGroups && myRole === HA_ROLE.master));
  const backup = peer.role === HA_ROLE.backup && myRole === HA_ROLE.master;
  if (!owner && !backup) return { invoke: false, why: `the lost peer was ${peer.role ?? 'never heard'} and this agent is ${myRole ?? 'of unknown role'}: neither the owner lost by its backup nor the backup lost by the owner` };
  if (!peer.instanceId) return { invoke: false, why: 'the lost peer never said its instance id' };
  const request = fastPathRequestSchema.parse({ action: 'failover', from: peer.instanceId, reason: owner ? 'peer-heartbeat-lost' : 'peer-backup-lost' });
  return { invoke: true, request };
}
