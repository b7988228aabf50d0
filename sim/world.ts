/**
 * A deployment as the CDK app would leave it, seeded into moto: VPC, IGW, two LB subnets
 * in two AZs, the LB security group, the prepared floating route table, two tagged LB
 * instances at the stack's fixed IPs, the EIP, the heartbeat and status-check alarms, the lease
 * table and the topic — and, with `strategy: route`, the ingress IPs and the route tables the
 * overlay VIP's /32 follows the owner in. Addresses come from the sim profile.
 */
import { CloudWatchClient, PutMetricAlarmCommand, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  AllocateAddressCommand,
  AssignPrivateIpAddressesCommand,
  AssociateRouteTableCommand,
  AttachInternetGatewayCommand,
  AttachNetworkInterfaceCommand,
  CreateInternetGatewayCommand,
  CreateNetworkInterfaceCommand,
  CreateRouteCommand,
  CreateRouteTableCommand,
  CreateSecurityGroupCommand,
  CreateSubnetCommand,
  CreateVpcCommand,
  DescribeAddressesCommand,
  DescribeInstancesCommand,
  DescribeInternetGatewaysCommand,
  DescribeNetworkInterfacesCommand,
  DescribeRouteTablesCommand,
  DescribeSubnetsCommand,
  EC2Client,
  type _InstanceType,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
} from '@aws-sdk/client-ec2';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { CreateTopicCommand, SNSClient } from '@aws-sdk/client-sns';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { type LoxihaConfig, resolveConfig } from '../lib/config.ts';
import { beatData } from '../agent/ha/heartbeat.ts';
import { ALARM_KIND, alarmName, DEFAULT_GROUP, METRICS, ROLE, SECRET_KIND, type SecretKind, SLOT_INTERFACE_DEVICE_INDEX, SLOT_READY_TIMEOUT_SECONDS, slotGroupName, TAG } from '../lib/contract.ts';
import { lbIngressIp, lbInstanceIp, slotZone } from '../lib/topology.ts';
import type { GroupSettings, Settings } from '../lambda/failover/settings.ts';
import { type AnyStep, type Built, buildDeployment, buildOrchestrator, type Deployment, makeClients } from '../lambda/failover/wiring.ts';
import type { AwsProxy } from './aws-proxy.ts';
import type { SimClock } from './sim-clock.ts';
import { SlotGroups, type SlotGroupsOptions, type SlotSpec } from './slot-groups.ts';
import type { Clock } from '../lambda/failover/clock.ts';
import { NODES } from './vpc.ts';

export const CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };
const REGION = 'us-east-1';
/** The Elastic IP's public address in the simulation (inside 100.64.0.0/10, like every address the demo uses). */
export const SIM_EIP = '100.100.100.100';
/** The public address of VIP group k's EIP (k = 0: the default group's, SIM_EIP): in 100.64.0.0/10 too. */
export function simGroupEip(k: number): string {
  return k === 0 ? SIM_EIP : `100.100.100.${100 + k}`;
}
/** The route strategy's overlay VIP: outside the VPC's CIDR (100.64.0.0/16), inside 100.64.0.0/10. */
export const SIM_OVERLAY_VIP = '100.127.0.10';
/** The failover function in the simulation (its alarms' action; the agents invoke its `agents` alias). */
export const FAILOVER_FUNCTION_NAME = 'loxiha-sim-failover';
export const FAILOVER_FUNCTION_ARN = `arn:aws:lambda:${REGION}:123456789012:function:${FAILOVER_FUNCTION_NAME}`;

export interface EndState {
  subnets: { id: string; az: string; cidr: string }[];
  enis: { id: string; subnetId: string; privateIp: string; attachedTo: string | undefined; sourceDestCheck: boolean }[];
  eip: { networkInterfaceId: string | undefined; privateIp: string | undefined };
  /** ENIs carrying the VIP or subnets holding the cloud block that are not tagged as ours. */
  orphans: string[];
  floatingAssociations: string[];
}

export class World {
  /** The sim profile, with the caller's overrides (e.g. `{ strategy: 'route', vip: SIM_OVERLAY_VIP }`). */
  readonly config: LoxihaConfig;
  readonly ec2: EC2Client;
  readonly cw: CloudWatchClient;
  settings!: Settings;
  instances: { id: string; index: number; az: string }[] = [];
  private slotSpecs: SlotSpec[] = [];
  private readonly endpoint: string;

  constructor(motoEndpoint: string, overrides: Record<string, unknown> = {}) {
    this.config = resolveConfig('sim', overrides);
    this.endpoint = motoEndpoint;
    const common = { region: REGION, endpoint: motoEndpoint, credentials: CREDENTIALS };
    this.ec2 = new EC2Client(common);
    this.cw = new CloudWatchClient(common);
  }

  /**
   * With `strategy: 'route'` (the configuration's, or `opts`) each LB instance also gets its ingress
   * IP (a secondary address on its primary interface), each LB subnet a route table, and a nodes'
   * subnet its own (the tables the VIP's /32 follows the owner in). `opts.vip` overrides the VIP
   * past the configuration's checks (to see AWS refuse one). With `slots`, each LB slot is as the
   * stack makes it: an interface of its own with the slot's fixed address, attached at device index 1
   * to an instance whose own address comes from DHCP (see slotGroups() for its Auto Scaling group).
   */
  async seed(opts: { strategy?: 'eni' | 'route'; vip?: string; slots?: boolean; slotsPerAz?: number; instanceType?: string } = {}): Promise<void> {
    const c = this.config;
    opts = { strategy: c.strategy, ...opts };
    const tag = (role: string, extra: { Key: string; Value: string }[] = []) => [
      { Key: TAG.deployment, Value: c.deploymentId },
      { Key: TAG.role, Value: role },
      ...extra,
    ];
    const vpc = (await this.ec2.send(new CreateVpcCommand({ CidrBlock: 'cidr' in c.vpc ? c.vpc.cidr : '' }))).Vpc!.VpcId!;
    const igw = (await this.ec2.send(new CreateInternetGatewayCommand({}))).InternetGateway!.InternetGatewayId!;
    await this.ec2.send(new AttachInternetGatewayCommand({ InternetGatewayId: igw, VpcId: vpc }));
    const sg = (await this.ec2.send(new CreateSecurityGroupCommand({ GroupName: 'lb', Description: 'lb', VpcId: vpc }))).GroupId!;
    const rtb = (
      await this.ec2.send(new CreateRouteTableCommand({ VpcId: vpc, TagSpecifications: [{ ResourceType: 'route-table', Tags: tag(ROLE.floatingRouteTable) }] }))
    ).RouteTable!.RouteTableId!;
    await this.ec2.send(new CreateRouteCommand({ RouteTableId: rtb, DestinationCidrBlock: '0.0.0.0/0', GatewayId: igw }));
    this.instances = [];
    this.slotSpecs = [];
    const routeTableIds: string[] = [];
    // Slot i lives in AZ i mod n; the k-th slot of an AZ takes its addresses 100·k above the first's (lib/topology.ts).
    const perAz = opts.slotsPerAz ?? 1;
    const zones = c.availabilityZones.length;
    const subnets: string[] = [];
    const ingressIps: string[] = [];
    for (let index = 0; index < zones * perAz; index++) {
      const zone = slotZone(c, index);
      const az = c.availabilityZones[zone]!;
      const firstOfAz = subnets[zone] === undefined;
      const subnet = (subnets[zone] ??= (await this.ec2.send(new CreateSubnetCommand({ VpcId: vpc, CidrBlock: c.lbSubnetCidrs[zone], AvailabilityZone: az }))).Subnet!.SubnetId!);
      const r = await this.ec2.send(
        new RunInstancesCommand({
          ImageId: 'ami-12c6146b',
          ...(opts.instanceType ? { InstanceType: opts.instanceType as _InstanceType } : {}),
          MinCount: 1,
          MaxCount: 1,
          SubnetId: subnet,
          ...(opts.slots ? {} : { PrivateIpAddress: lbInstanceIp(c, index) }),
          SecurityGroupIds: [sg],
          TagSpecifications: [{ ResourceType: 'instance', Tags: tag(ROLE.lbInstance, [{ Key: TAG.instanceIndex, Value: String(index) }]) }],
        }),
      );
      this.instances.push({ id: r.Instances![0]!.InstanceId!, index, az });
      this.slotSpecs.push({ index, az, subnetId: subnet, securityGroupIds: [sg], instanceId: r.Instances![0]!.InstanceId! });
      let slotEni: string | undefined;
      if (opts.slots) {
        const eni = await this.ec2.send(
          new CreateNetworkInterfaceCommand({
            SubnetId: subnet,
            PrivateIpAddress: lbInstanceIp(c, index),
            Groups: [sg],
            TagSpecifications: [{ ResourceType: 'network-interface', Tags: tag(ROLE.slotInterface, [{ Key: TAG.instanceIndex, Value: String(index) }]) }],
          }),
        );
        await this.ec2.send(new AttachNetworkInterfaceCommand({ NetworkInterfaceId: eni.NetworkInterface!.NetworkInterfaceId!, InstanceId: r.Instances![0]!.InstanceId!, DeviceIndex: SLOT_INTERFACE_DEVICE_INDEX }));
        slotEni = eni.NetworkInterface!.NetworkInterfaceId!;
      }
      if (opts.strategy === 'route') {
        if (firstOfAz) {
          const lbRtb = (await this.ec2.send(new CreateRouteTableCommand({ VpcId: vpc }))).RouteTable!.RouteTableId!;
          await this.ec2.send(new CreateRouteCommand({ RouteTableId: lbRtb, DestinationCidrBlock: '0.0.0.0/0', GatewayId: igw }));
          await this.ec2.send(new AssociateRouteTableCommand({ RouteTableId: lbRtb, SubnetId: subnet }));
          routeTableIds.push(lbRtb);
        }
        // The ingress IP lives with the slot's identity: on the slot's interface (slots), else on the primary.
        ingressIps.push(lbIngressIp(c, index));
        await this.ec2.send(new AssignPrivateIpAddressesCommand({ NetworkInterfaceId: slotEni ?? r.Instances![0]!.NetworkInterfaces![0]!.NetworkInterfaceId!, PrivateIpAddresses: [ingressIps[index]!] }));
      }
    }
    if (opts.strategy === 'route') {
      const nodes = (await this.ec2.send(new CreateSubnetCommand({ VpcId: vpc, CidrBlock: NODES.cidr, AvailabilityZone: c.availabilityZones[0] }))).Subnet!.SubnetId!;
      const nodesRtb = (await this.ec2.send(new CreateRouteTableCommand({ VpcId: vpc }))).RouteTable!.RouteTableId!;
      await this.ec2.send(new AssociateRouteTableCommand({ RouteTableId: nodesRtb, SubnetId: nodes }));
      routeTableIds.push(nodesRtb);
    }
    // The EIP's public address lies in 100.64.0.0/10 too: the demo puts it on its namespaces' links.
    const eip = (
      await this.ec2.send(new AllocateAddressCommand({ Domain: 'vpc', Address: SIM_EIP, TagSpecifications: [{ ResourceType: 'elastic-ip', Tags: tag(ROLE.eip) }] }))
    ).AllocationId!;
    await this.putAlarms();
    const ddb = new DynamoDBClient({ region: REGION, endpoint: this.endpoint, credentials: CREDENTIALS });
    await ddb.send(
      new CreateTableCommand({ TableName: 'lease', KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }], AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }], BillingMode: 'PAY_PER_REQUEST' }),
    );
    ddb.destroy();
    const sns = new SNSClient({ region: REGION, endpoint: this.endpoint, credentials: CREDENTIALS });
    const topicArn = (await sns.send(new CreateTopicCommand({ Name: 'loxiha' }))).TopicArn!;
    sns.destroy();
    this.settings = {
      deploymentId: c.deploymentId,
      vpcId: vpc,
      strategy: 'eni',
      cloudCidrBlock: c.cloudCidrBlock,
      vip: c.vip,
      eipAllocationId: eip,
      floatingRouteTableId: rtb,
      leaseTable: 'lease',
      topicArn,
      eventBusName: 'default',
      failback: c.failback,
      holdDownSeconds: c.holdDownSeconds,
      slotCount: this.instances.length,
      readyTimeoutSeconds: SLOT_READY_TIMEOUT_SECONDS,
      group: DEFAULT_GROUP,
      ...(opts.strategy === 'route'
        ? { strategy: 'route' as const, vip: opts.vip ?? (c.strategy === 'route' ? c.vip : SIM_OVERLAY_VIP), routeTableIds, ingressIps }
        : {}),
    };
  }

  /** The heartbeat and status-check alarms of each LB slot, defined as the CDK app defines them (lib/constructs/failover-wiring.ts). */
  private async putAlarms(): Promise<void> {
    const a = this.config.alarms;
    for (const { index } of this.instances) {
      await this.cw.send(
        new PutMetricAlarmCommand({
          AlarmName: alarmName(this.config.deploymentId, index, ALARM_KIND.heartbeat),
          Namespace: METRICS.namespace,
          MetricName: METRICS.heartbeat,
          Dimensions: [
            { Name: METRICS.dimensions.deployment, Value: this.config.deploymentId },
            { Name: METRICS.dimensions.slot, Value: String(index) },
          ],
          Statistic: 'SampleCount',
          Period: a.heartbeatPeriodSeconds,
          EvaluationPeriods: a.evaluationPeriods,
          DatapointsToAlarm: a.datapointsToAlarm,
          Threshold: 1,
          ComparisonOperator: 'LessThanThreshold',
          TreatMissingData: 'breaching',
          ActionsEnabled: true,
          AlarmActions: [FAILOVER_FUNCTION_ARN],
          OKActions: [FAILOVER_FUNCTION_ARN],
        }),
      );
      await this.cw.send(
        new PutMetricAlarmCommand({
          AlarmName: alarmName(this.config.deploymentId, index, ALARM_KIND.statusCheck),
          Namespace: 'AWS/EC2',
          MetricName: 'StatusCheckFailed',
          // EC2's per-group figure: the slot's group, whichever instance serves it.
          Dimensions: [{ Name: 'AutoScalingGroupName', Value: slotGroupName(this.config.deploymentId, index) }],
          Statistic: 'Maximum',
          Period: 60,
          EvaluationPeriods: 2,
          DatapointsToAlarm: 2,
          Threshold: 1,
          ComparisonOperator: 'GreaterThanOrEqualToThreshold',
          TreatMissingData: 'breaching',
          ActionsEnabled: true,
          AlarmActions: [FAILOVER_FUNCTION_ARN],
          OKActions: [FAILOVER_FUNCTION_ARN],
        }),
      );
    }
  }

  /**
   * What EC2 does every minute: publish each running instance's status check (StatusCheckFailed 0);
   * a stopped instance publishes nothing. Moto does not; the demo calls this on EC2's schedule.
   */
  async publishStatusChecks(at: number): Promise<void> {
    const r = await this.ec2.send(new DescribeInstancesCommand({ InstanceIds: this.instances.map((i) => i.id) }));
    const running = (r.Reservations ?? []).flatMap((x) => x.Instances ?? []).filter((i) => i.State?.Name === 'running');
    if (!running.length) return;
    await this.cw.send(
      new PutMetricDataCommand({
        Namespace: 'AWS/EC2',
        // Per instance and, as EC2 does for an Auto Scaling group's instances, per group (the slot's alarm reads that one).
        MetricData: running.flatMap((i) => [
          { MetricName: 'StatusCheckFailed', Dimensions: [{ Name: 'InstanceId', Value: i.InstanceId! }], Value: 0, Timestamp: new Date(at) },
          { MetricName: 'StatusCheckFailed', Dimensions: [{ Name: 'AutoScalingGroupName', Value: slotGroupName(this.config.deploymentId, this.instances.find((x) => x.id === i.InstanceId)!.index) }], Value: 0, Timestamp: new Date(at) },
        ]),
      }),
    );
  }

  /**
   * The deployment's two secrets in Secrets Manager (the emulator), holding `values`, tagged as the
   * stack tags them (deployment, which secret): what the agents follow and the rotation function rotates.
   */
  async seedSecrets(values: Record<SecretKind, string>): Promise<Record<SecretKind, string>> {
    const sm = new SecretsManagerClient({ region: REGION, endpoint: this.endpoint, credentials: CREDENTIALS });
    try {
      const arns = {} as Record<SecretKind, string>;
      for (const kind of Object.values(SECRET_KIND)) {
        const r = await sm.send(
          new CreateSecretCommand({
            Name: `${this.config.deploymentId}-${kind}`,
            SecretString: values[kind],
            Tags: [
              { Key: TAG.deployment, Value: this.config.deploymentId },
              { Key: TAG.secret, Value: kind },
            ],
          }),
        );
        arns[kind] = r.ARN!;
      }
      return arns;
    } finally {
      sm.destroy();
    }
  }

  /**
   * The slots' Auto Scaling groups (the AWS-behaviour layer's model, ./slot-groups.ts) over what
   * seed() made; the world's instance list follows the groups' replacements.
   */
  slotGroups(clock: Clock, deliver: (event: Record<string, unknown>) => void, hookTimeoutMs?: number, on: Pick<SlotGroupsOptions, 'onTerminated' | 'onInService'> = {}): SlotGroups {
    return new SlotGroups({
      ec2: this.ec2,
      clock,
      deploymentId: this.config.deploymentId,
      slots: this.slotSpecs.map((s) => ({ ...s, instanceId: this.id(s.index) })),
      deliver,
      hookTimeoutMs,
      ...on,
      onInstance: (slot, id) => {
        const i = this.instances.find((x) => x.index === slot)!;
        i.id = id;
      },
    });
  }

  /** What the handler's composition root is given, talking to `endpoint` (the fault proxy), in simulated time. */
  private runtime(endpoint: string, clock: SimClock, userAgent: string | undefined) {
    const clients = makeClients({
      region: REGION,
      endpoint,
      userAgent,
      credentials: CREDENTIALS,
      // The SDK waits the real time; the clock counts the simulated backoff.
      backoff: (ms) => {
        void clock.sleep(ms);
        return ms * clock.scale;
      },
    });
    const logger = new Logger({ serviceName: 'loxiha-test', logLevel: 'SILENT' });
    // EMF lines would flood the test and benchmark output; the calls still run.
    process.env.POWERTOOLS_METRICS_DISABLED = 'true';
    const metrics = new Metrics({ namespace: 'Loxiha', serviceName: 'loxiha-test' });
    return { clients, logger, metrics };
  }

  /** The orchestrator as the handler builds it, talking to `endpoint` (the fault proxy), in simulated time. */
  orchestrator(endpoint: string, clock: SimClock, extra: { afterStep?: (s: AnyStep) => void | Promise<void>; settings?: Partial<Settings>; lease?: { ttlMs: number; renewMs: number }; userAgent?: string } = {}): Built {
    const { clients, logger, metrics } = this.runtime(endpoint, clock, extra.userAgent);
    return buildOrchestrator({ ...this.settings, ...extra.settings }, clients, clock, logger, metrics, { afterStep: extra.afterStep, lease: extra.lease });
  }

  /** The deployment as the handler builds it (one group, or several with addGroups), talking to `endpoint`, in simulated time. */
  deployment(endpoint: string, clock: SimClock, extra: { settings?: Partial<Settings>; userAgent?: string; groupConcurrency?: number } = {}): Deployment {
    const { clients, logger, metrics } = this.runtime(endpoint, clock, extra.userAgent);
    return buildDeployment({ ...this.settings, ...extra.settings }, clients, clock, logger, metrics, extra.groupConcurrency ? { groupConcurrency: extra.groupConcurrency } : {});
  }

  /**
   * Adds `n` VIP groups (g1…gn) beside the seeded one, each with its own EIP and VIP: with `eni` its
   * own cloud block (100.64.(200+k).0/24) and floating route table; with `route` its own overlay VIP
   * (100.127.k.10) and, on every LB instance's interface, an ingress address of its own (offset
   * 20 + k in the instance's LB subnet). The settings then list every group, the seeded one first.
   */
  async addGroups(n: number): Promise<GroupSettings[]> {
    if (n < 1 || n > 100) throw new RangeError('addGroups: 1 to 100 groups');
    const s = this.settings;
    const c = this.config;
    const tag = (role: string) => [{ Key: TAG.deployment, Value: c.deploymentId }, { Key: TAG.role, Value: role }];
    const igw = (await this.ec2.send(new DescribeInternetGatewaysCommand({ Filters: [{ Name: 'attachment.vpc-id', Values: [s.vpcId] }] }))).InternetGateways![0]!.InternetGatewayId!;
    const interfaces = s.strategy === 'route' ? await this.ingressInterfaces() : [];
    const added: GroupSettings[] = [];
    for (let k = 1; k <= n; k++) {
      const name = `g${k}`;
      const eipAllocationId = (await this.ec2.send(new AllocateAddressCommand({ Domain: 'vpc', Address: simGroupEip(k), TagSpecifications: [{ ResourceType: 'elastic-ip', Tags: [...tag(ROLE.eip), { Key: TAG.group, Value: name }] }] }))).AllocationId!;
      if (s.strategy === 'route') {
        const ingressIps = [...this.instances].sort((a, b) => a.index - b.index).map((i) => lbIngressIp(c, i.index, k));
        for (const [index, ip] of ingressIps.entries()) await this.ec2.send(new AssignPrivateIpAddressesCommand({ NetworkInterfaceId: interfaces[index]!, PrivateIpAddresses: [ip] }));
        added.push({ name, vip: `100.127.${k}.10`, eipAllocationId, ingressIps, preferredSlot: k % this.instances.length });
        continue;
      }
      const floatingRouteTableId = (await this.ec2.send(new CreateRouteTableCommand({ VpcId: s.vpcId, TagSpecifications: [{ ResourceType: 'route-table', Tags: tag(ROLE.floatingRouteTable) }] }))).RouteTable!.RouteTableId!;
      await this.ec2.send(new CreateRouteCommand({ RouteTableId: floatingRouteTableId, DestinationCidrBlock: '0.0.0.0/0', GatewayId: igw }));
      added.push({ name, vip: `100.64.${200 + k}.254`, eipAllocationId, cloudCidrBlock: `100.64.${200 + k}.0/24`, floatingRouteTableId, preferredSlot: k % this.instances.length });
    }
    const first: GroupSettings = { name: s.group, vip: s.vip, eipAllocationId: s.eipAllocationId, preferredSlot: 0, cloudCidrBlock: s.cloudCidrBlock, floatingRouteTableId: s.floatingRouteTableId, ingressIps: s.ingressIps };
    this.settings = { ...s, groups: [first, ...added] };
    return this.settings.groups!;
  }

  /** Each LB instance's interface that carries ingress addresses (its slot interface, else its primary), by index. */
  private async ingressInterfaces(): Promise<string[]> {
    const out: string[] = [];
    for (const i of [...this.instances].sort((a, b) => a.index - b.index)) {
      const r = await this.ec2.send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [i.id] }] }));
      const enis = r.NetworkInterfaces ?? [];
      const slot = enis.find((e) => e.Attachment?.DeviceIndex === SLOT_INTERFACE_DEVICE_INDEX && !e.TagSet?.some((t) => t.Key === TAG.role && t.Value === ROLE.loxiEni));
      out.push((slot ?? enis.find((e) => e.Attachment?.DeviceIndex === 0))!.NetworkInterfaceId!);
    }
    return out;
  }

  /** Publishes one agent heartbeat (and its sync state) per instance, stamped `at`. */
  /**
   * Agents that keep beating, as real ones do every 5 s, while runs wait or work in simulated
   * time: a beat at the clock's time every `everyMs` of simulated time. Returns the stop function.
   */
  keepBeating(clock: { now(): number; sleep(ms: number): Promise<void> }, ids: string[], everyMs = 5000): () => Promise<void> {
    let on = true;
    const loop = (async () => {
      while (on) {
        await this.beat(clock.now(), ids);
        await clock.sleep(everyMs);
      }
    })();
    return async () => {
      on = false;
      await loop;
    };
  }

  async beat(at: number, ids = this.instances.map((i) => i.id), inSync = true): Promise<void> {
    // An instance its slot's group has replaced beats no more.
    const known = ids.filter((id) => this.instances.some((i) => i.id === id));
    await Promise.all(
      known.map((id) =>
        this.cw.send(
          new PutMetricDataCommand({
            Namespace: METRICS.namespace,
            // What the agent's heartbeat sends (per instance, and per slot for the slot's alarm).
            MetricData: beatData({ deploymentId: this.config.deploymentId, instanceId: id, slot: this.instances.find((i) => i.id === id)!.index }, { inSync }, new Date(at - 1000)),
          }),
        ),
      ),
    );
  }

  async stop(id: string): Promise<void> {
    await this.ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
  }

  async start(id: string): Promise<void> {
    await this.ec2.send(new StartInstancesCommand({ InstanceIds: [id] }));
  }

  id(index: number): string {
    return this.instances.find((i) => i.index === index)!.id;
  }

  /** What AWS holds now, read directly from moto (not through the proxy). */
  async endState(): Promise<EndState> {
    const c = this.config;
    const [subnets, enis, eip, tables] = await Promise.all([
      this.ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: 'vpc-id', Values: [this.settings.vpcId] }] })),
      this.ec2.send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'vpc-id', Values: [this.settings.vpcId] }] })),
      this.ec2.send(new DescribeAddressesCommand({ AllocationIds: [this.settings.eipAllocationId] })),
      this.ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: [this.settings.floatingRouteTableId!] })),
    ]);
    const ours = (tags: { Key?: string; Value?: string }[] | undefined, role: string) =>
      tags?.some((t) => t.Key === TAG.deployment && t.Value === c.deploymentId) && tags.some((t) => t.Key === TAG.role && t.Value === role);
    const floating = (subnets.Subnets ?? []).filter((s) => ours(s.Tags, ROLE.floatingSubnet));
    const loxi = (enis.NetworkInterfaces ?? []).filter((n) => ours(n.TagSet, ROLE.loxiEni));
    const orphans = [
      ...(subnets.Subnets ?? []).filter((s) => s.CidrBlock === c.cloudCidrBlock && !ours(s.Tags, ROLE.floatingSubnet)).map((s) => s.SubnetId!),
      ...(enis.NetworkInterfaces ?? []).filter((n) => n.PrivateIpAddress === c.vip && !ours(n.TagSet, ROLE.loxiEni)).map((n) => n.NetworkInterfaceId!),
    ];
    const a = eip.Addresses?.[0];
    return {
      subnets: floating.map((s) => ({ id: s.SubnetId!, az: s.AvailabilityZone!, cidr: s.CidrBlock! })),
      enis: loxi.map((n) => ({ id: n.NetworkInterfaceId!, subnetId: n.SubnetId!, privateIp: n.PrivateIpAddress!, attachedTo: n.Attachment?.InstanceId, sourceDestCheck: n.SourceDestCheck !== false })),
      eip: { networkInterfaceId: a?.NetworkInterfaceId || undefined, privateIp: a?.PrivateIpAddress || undefined },
      orphans,
      floatingAssociations: (tables.RouteTables?.[0]?.Associations ?? []).map((x) => x.SubnetId!).filter(Boolean),
    };
  }

  /** Asserts the one good end state: VIP on `owner`; returns a list of what is wrong (empty when right). */
  async problems(owner: string): Promise<string[]> {
    const s = await this.endState();
    const out: string[] = [];
    const az = this.instances.find((i) => i.id === owner)!.az;
    if (s.subnets.length !== 1) out.push(`floating subnets: ${s.subnets.length}`);
    else if (s.subnets[0]!.az !== az) out.push(`floating subnet in ${s.subnets[0]!.az}, owner in ${az}`);
    if (s.enis.length !== 1) out.push(`loxi-enis: ${s.enis.length}`);
    else {
      const e = s.enis[0]!;
      if (e.attachedTo !== owner) out.push(`loxi-eni attached to ${e.attachedTo}`);
      if (e.privateIp !== this.config.vip) out.push(`loxi-eni ip ${e.privateIp}`);
      if (e.sourceDestCheck) out.push('source/dest check on');
      if (s.eip.networkInterfaceId !== e.id) out.push(`EIP on ${s.eip.networkInterfaceId}`);
      if (!s.floatingAssociations.includes(e.subnetId)) out.push('floating route table not associated');
    }
    if (s.orphans.length) out.push(`orphans: ${s.orphans.join(',')}`);
    return out;
  }

  /**
   * The route strategy's one good end state, VIP on `owner`: the EIP on its ingress IP (read as AWS
   * would show it, through the behaviour layer) and the VIP's /32 to its primary interface in every
   * listed table. Returns what is wrong (empty when right).
   */
  async routeProblems(owner: string, aws: Pick<AwsProxy, 'addressesAsAws' | 'networkInterfaces'>): Promise<string[]> {
    const s = this.settings;
    const index = this.instances.find((i) => i.id === owner)!.index;
    const ingress = s.ingressIps![index];
    const out: string[] = [];
    const eip = (await aws.addressesAsAws()).find((a) => a.AllocationId === s.eipAllocationId);
    const tables = (await this.ec2.send(new DescribeRouteTablesCommand({ RouteTableIds: s.routeTableIds }))).RouteTables ?? [];
    // The owner's interface that holds its ingress IP: the primary, or (slots) the slot's own interface.
    const ownerEni = (await aws.networkInterfaces()).find((n) => n.Attachment?.InstanceId === owner && (n.PrivateIpAddresses ?? []).some((a) => a.PrivateIpAddress === ingress))?.NetworkInterfaceId;
    if (eip?.NetworkInterfaceId !== ownerEni || eip?.PrivateIpAddress !== ingress) out.push(`EIP on ${eip?.PrivateIpAddress} (${eip?.NetworkInterfaceId}), want ${ingress} (${ownerEni})`);
    for (const t of tables) {
      const r = t.Routes?.find((x) => x.DestinationCidrBlock === `${s.vip}/32`);
      if (r?.NetworkInterfaceId !== ownerEni) out.push(`${t.RouteTableId}: VIP route → ${r?.NetworkInterfaceId ?? 'none'}, want ${ownerEni}`);
    }
    return out;
  }

  destroy(): void {
    this.ec2.destroy();
    this.cw.destroy();
  }
}
