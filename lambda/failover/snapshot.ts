/** The world as the function observed it: plain data, no SDK types. */

export type InstanceState = 'pending' | 'running' | 'stopping' | 'stopped' | 'shutting-down' | 'terminated';

export interface InstanceView {
  id: string;
  index: number;
  az: string;
  state: InstanceState;
  /** When EC2 launched it (ms since epoch): how long a new instance has had to become ready. */
  launchedAt?: number;
  /** EC2 status checks: true ok, false impaired, undefined not yet known (initializing). */
  statusOk: boolean | undefined;
  /** Time of the latest agent heartbeat seen in CloudWatch (ms since epoch). */
  lastHeartbeatAt: number | undefined;
  /** The agent's latest report that its session table is in sync with the peer. */
  sessionsInSync: boolean | undefined;
  /** The agent's latest report that its kernel forwards as an LB must (AgentReady); undefined: not reported. */
  ready?: boolean | undefined;
  /** The agent's latest report that it serves the owner's services (ServicesMatch); undefined: not reported. */
  servicesMatch?: boolean | undefined;
  /** Its Auto Scaling group is terminating it (tagged by the termination hook's run): never the VIP's place. */
  draining?: boolean;
  securityGroupIds: string[];
  /** Device indexes of the network interfaces attached to it. */
  usedDeviceIndexes: number[];
  /** Its EC2 instance type (how many interfaces it can attach: DescribeInstanceTypes). */
  instanceType?: string;
}

export interface FloatingSubnetView {
  id: string;
  az: string;
  cidr: string;
  /** Association of the floating route table with this subnet, when present. */
  routeTableAssociationId: string | undefined;
  /**
   * The association was not read: a run's first look leaves it out, as a move deletes the subnets it
   * does not keep; the strategy's `readForOwner` reads it for the one subnet the owner keeps.
   */
  associationUnread?: true;
  epoch: number | undefined;
}

export interface LoxiEniView {
  id: string;
  subnetId: string;
  az: string;
  privateIp: string;
  /** ENI status: available | in-use | attaching | detaching | associated … */
  status: string;
  attachment: { id: string; instanceId: string; status: string; deviceIndex: number } | undefined;
  sourceDestCheck: boolean;
  epoch: number | undefined;
  /** The Elastic IP associated with its primary address, as DescribeNetworkInterfaces reports it. */
  association?: { allocationId: string | undefined; associationId: string | undefined; publicIp: string | undefined };
}

export interface EipView {
  allocationId: string;
  /** Unknown (undefined) when read from the ENIs and the EIP is on none of them. */
  publicIp: string | undefined;
  associationId: string | undefined;
  networkInterfaceId: string | undefined;
  privateIp: string | undefined;
}

export interface LeaseView {
  holder: string | undefined;
  epoch: number;
  expiresAt: number;
  lastMoveAt: number | undefined;
  lastOwner: string | undefined;
  lastResult: string | undefined;
  /** Set by a teardown (stack deletion): automatic triggers change nothing after it. */
  tornDownAt: number | undefined;
  /** Where the VIP was moving from when the run that held the lease stopped without releasing it (a crash). */
  interruptedMoveFrom?: string;
  /**
   * The last owner its peer reported unreachable (the fast path) when the VIP left it, and when: it is
   * not healthy again until it beats after that (a rebooting instance's last heartbeat is still fresh).
   */
  lost?: { instanceId: string; at: number };
}

/**
 * What every strategy's snapshot holds: when it was taken and the LB instances as the function
 * sees them (state, status checks, heartbeats). Each strategy adds what it moves (VipStrategy's
 * `State`): the eni strategy its floating subnets, loxi-enis and the EIP; the route strategy the
 * EIP, the VIP's routes and the instances' ingress addresses.
 */
export interface Observed {
  now: number;
  instances: InstanceView[];
}
