/**
 * The deployment's Elastic IP, found or allocated: a deploy reuses the EIP an earlier deployment of
 * the same id kept (`uninstall.retainEip`: `cdk destroy` leaves it allocated and tagged) instead of
 * allocating another — the public address survives an uninstall and a reinstall without editing
 * config. Several candidates (should not happen): the one associated with something first, then the
 * lowest allocation id, and a warning naming the others (they cost money and count against the quota).
 */
import { DEFAULT_GROUP, ROLE, TAG } from '../../lib/contract.ts';

export interface TaggedAddress {
  allocationId: string;
  publicIp: string;
  /** Associated with an interface now (the VIP's, as a live deployment leaves it). */
  associated: boolean;
  /** The VIP group it was allocated for (its group tag; untagged: the default group). */
  group: string;
}

export interface AddressStore {
  /** The addresses tagged with this deployment and the EIP role. */
  tagged(deploymentId: string): Promise<TaggedAddress[]>;
  /** A new address, tagged at its creation. */
  allocate(tags: Record<string, string>): Promise<TaggedAddress>;
}

/** The address to use of those found (pure). */
export function chooseAddress(found: readonly TaggedAddress[]): TaggedAddress | undefined {
  return [...found].sort((a, b) => Number(b.associated) - Number(a.associated) || a.allocationId.localeCompare(b.allocationId))[0];
}

export async function claimAddress(
  store: AddressStore,
  deploymentId: string,
  name: string,
  log: (msg: string, extra?: Record<string, unknown>) => void,
  group: string = DEFAULT_GROUP,
): Promise<TaggedAddress & { reused: boolean }> {
  // Each VIP group has its own EIP: another group's is never taken.
  const found = (await store.tagged(deploymentId)).filter((a) => a.group === group);
  const chosen = chooseAddress(found);
  if (chosen) {
    const others = found.filter((f) => f.allocationId !== chosen.allocationId).map((f) => `${f.allocationId} (${f.publicIp})`);
    if (others.length) log('more than one EIP is tagged as this deployment’s: using one, the others are left alone (release them if unused)', { using: chosen.allocationId, others });
    log('reusing the deployment’s EIP', { allocationId: chosen.allocationId, publicIp: chosen.publicIp });
    return { ...chosen, reused: true };
  }
  const made = await store.allocate({ [TAG.deployment]: deploymentId, [TAG.role]: ROLE.eip, [TAG.name]: name, ...(group === DEFAULT_GROUP ? {} : { [TAG.group]: group }) });
  log('allocated an EIP for the deployment', { allocationId: made.allocationId, publicIp: made.publicIp, group });
  return { ...made, reused: false };
}
