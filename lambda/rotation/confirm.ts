/**
 * Whether a pending secret may become current (pure): every LB instance its slot groups hold — but
 * those already terminating — must report, in its latest `SecretHeld` datum, the pending version's
 * fingerprint. An instance whose agent is down (no recent datum) holds the rotation back rather than
 * be left behind: it would refuse its peer's heartbeats signed with the new key, and kube-loxilb's
 * token for it could fall out of the accepted ones. A new instance reads every labelled version at
 * start, so it confirms at its first beat.
 */
export interface InstanceView {
  id: string;
  /** Auto Scaling's lifecycle state (InService, Pending:Wait, Terminating:Wait, …). */
  lifecycleState: string;
}

export interface Confirmation {
  done: boolean;
  /** The instances not yet confirming, each with why (for the log). */
  waitingFor: { id: string; why: string }[];
}

export function confirmation(pendingFingerprint: number, instances: InstanceView[], held: Map<string, number | undefined>): Confirmation {
  const counted = instances.filter((i) => !/^Terminat/.test(i.lifecycleState));
  const waitingFor = counted.flatMap((i) => {
    const h = held.get(i.id);
    if (h === undefined) return [{ id: i.id, why: 'no recent SecretHeld from its agent (down, or not started yet)' }];
    if (h !== pendingFingerprint) return [{ id: i.id, why: 'its agent does not hold the pending version yet (or, for the API token, its callers still use another)' }];
    return [];
  });
  return { done: counted.length > 0 && waitingFor.length === 0, waitingFor: counted.length === 0 ? [{ id: '-', why: 'no LB instance in the slot groups' }] : waitingFor };
}
