/** Reads the world through the adapters into one plain snapshot (independent reads run concurrently). */
import type { CloudWatchAdapter } from './aws/cloudwatch.ts';
import type { Ec2Adapter } from './aws/ec2.ts';
import type { Snapshot } from './snapshot.ts';

export interface ObserveDeps {
  ec2: Ec2Adapter;
  cloudwatch: CloudWatchAdapter;
  eipAllocationId: string;
  floatingRouteTableId: string;
}

export async function observe(deps: ObserveDeps, now: number): Promise<Snapshot> {
  const [instances, subnets, enis, eip] = await Promise.all([
    deps.ec2.lbInstances(),
    deps.ec2.floatingSubnets(deps.floatingRouteTableId),
    deps.ec2.loxiEnis(),
    deps.ec2.eip(deps.eipAllocationId),
  ]);
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
