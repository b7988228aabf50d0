/** Reads the LB instances as every strategy needs them: EC2 state, status checks, agent heartbeats (independent reads run concurrently). */
import type { CloudWatchAdapter } from './aws/cloudwatch.ts';
import type { Ec2Adapter } from './aws/ec2.ts';
import type { InstanceView } from './snapshot.ts';

export interface ObserveDeps {
  ec2: Ec2Adapter;
  cloudwatch: CloudWatchAdapter;
}

export async function observeInstances(deps: ObserveDeps, now: number): Promise<InstanceView[]> {
  const instances = await deps.ec2.lbInstances();
  const ids = instances.map((i) => i.id);
  const [status, reports] = await Promise.all([deps.ec2.instanceStatus(ids), deps.cloudwatch.agentReports(ids, now)]);
  return instances.map((i) => ({
    ...i,
    statusOk: status.get(i.id),
    lastHeartbeatAt: reports.get(i.id)?.lastHeartbeatAt,
    sessionsInSync: reports.get(i.id)?.sessionsInSync,
    ready: reports.get(i.id)?.ready,
    servicesMatch: reports.get(i.id)?.servicesMatch,
  }));
}
