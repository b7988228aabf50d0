/** Reads the world through the adapters into one plain snapshot (independent reads run concurrently). */
import type { CloudWatchAdapter } from './aws/cloudwatch.ts';
import type { Ec2Adapter } from './aws/ec2.ts';
import type { EipView, LoxiEniView, Snapshot } from './snapshot.ts';

export interface ObserveDeps {
  ec2: Ec2Adapter;
  cloudwatch: CloudWatchAdapter;
  eipAllocationId: string;
  floatingRouteTableId: string;
}

/**
 * The whole world, or — given the snapshot a run took before — only what a run changes (floating
 * subnets, route table, loxi-eni, EIP): the instances, their status checks and heartbeats are
 * carried over, so checking the result of a run's own steps costs four describe calls, not six.
 */
export async function observe(deps: ObserveDeps, now: number, before?: Snapshot, opts: { eipFromAddresses?: boolean; enisOnly?: boolean } = {}): Promise<Snapshot> {
  if (before && opts.enisOnly) {
    const enis = await deps.ec2.loxiEnis();
    return { ...before, now, enis, eip: eipOnEnis(enis, deps.eipAllocationId, before.eip.publicIp) };
  }
  if (before) {
    const [subnets, enis] = await Promise.all([deps.ec2.floatingSubnets(deps.floatingRouteTableId), deps.ec2.loxiEnis()]);
    return { ...before, now, subnets, enis, eip: eipOnEnis(enis, deps.eipAllocationId, before.eip.publicIp) };
  }
  const [instances, subnets, enis, addresses] = await Promise.all([
    deps.ec2.lbInstances(),
    deps.ec2.floatingSubnets(deps.floatingRouteTableId),
    deps.ec2.loxiEnis(),
    opts.eipFromAddresses ? deps.ec2.eip(deps.eipAllocationId) : undefined,
  ]);
  const eip = addresses ?? eipOnEnis(enis, deps.eipAllocationId, undefined);
  const ids = instances.map((i) => i.id);
  const [status, reports] = await Promise.all([deps.ec2.instanceStatus(ids), deps.cloudwatch.agentReports(ids, now)]);
  return {
    now,
    instances: instances.map((i) => ({
      ...i,
      statusOk: status.get(i.id),
      lastHeartbeatAt: reports.get(i.id)?.lastHeartbeatAt,
      sessionsInSync: reports.get(i.id)?.sessionsInSync,
    })),
    subnets,
    enis,
    eip,
  };
}

/**
 * Where the EIP is, as far as a failover needs it: on one of the loxi-enis (read from their
 * association, no DescribeAddresses call), or on none of them — then it is associated anew with
 * AllowReassociation wherever it is. `status` reads the address itself.
 */
export function eipOnEnis(enis: LoxiEniView[], allocationId: string, publicIp: string | undefined): EipView {
  const on = enis.find((e) => e.association?.allocationId === allocationId);
  return on
    ? { allocationId, publicIp: on.association!.publicIp ?? publicIp, associationId: on.association!.associationId, networkInterfaceId: on.id, privateIp: on.privateIp }
    : { allocationId, publicIp, associationId: undefined, networkInterfaceId: undefined, privateIp: undefined };
}
