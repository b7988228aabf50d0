import * as cdk from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { type LoxihaConfig, vipGroupsOf } from '../config.ts';
import { DEFAULT_GROUP, namePrefix, ROLE, TAG } from '../contract.ts';
import { cidrContains, cidrsOverlap } from '../net/cidr.ts';

export interface NetworkProps {
  readonly config: LoxihaConfig;
}

/**
 * The VPC (created or imported), one public LB subnet per AZ routed to the internet
 * gateway, the cloud CIDR block associated where needed, and the route table the
 * orchestrator associates with the floating subnet it creates at run time.
 */
export class Network extends Construct {
  /** The VPC's flow-log group (a VPC this stack creates). */
  flowLogGroup: logs.LogGroup | undefined;
  readonly vpc: ec2.IVpc;
  readonly vpcCidr: string | undefined;
  readonly internetGatewayId: string;
  readonly lbSubnets: ec2.ISubnet[];
  /** eni strategy: the route table the floating subnet is associated with. */
  readonly floatingRouteTable: ec2.CfnRouteTable | undefined;
  /** route strategy: the tables whose /32 route to the VIP follows the owner. */
  readonly vipRouteTableIds: string[] = [];
  /** Resources the floating subnet depends on (the block association, when the stack makes one). */
  readonly floatingPrerequisites: Construct[] = [];

  constructor(scope: Construct, id: string, props: NetworkProps) {
    super(scope, id);
    const { config } = props;
    let gatewayDependency: Construct | undefined;

    if ('cidr' in config.vpc) {
      const vpc = new ec2.Vpc(this, 'Vpc', {
        ipAddresses: ec2.IpAddresses.cidr(config.vpc.cidr),
        availabilityZones: config.availabilityZones,
        natGateways: 1,
        subnetConfiguration: [
          { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 22 },
          { name: 'cluster', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
        ],
        flowLogs: {
          all: {
            trafficType: ec2.FlowLogTrafficType.REJECT,
            destination: ec2.FlowLogDestination.toCloudWatchLogs(
              (this.flowLogGroup = new logs.LogGroup(this, 'FlowLogs', {
                retention: config.uninstall.flowLogRetentionDays as logs.RetentionDays,
                // Kept by `cdk destroy` unless configured otherwise (uninstall.retainFlowLogs): the stack outputs say how to delete it.
                removalPolicy: config.uninstall.retainFlowLogs ? cdk.RemovalPolicy.RETAIN : cdk.RemovalPolicy.DESTROY,
              })),
            ),
          },
        },
      });
      this.vpc = vpc;
      this.vpcCidr = config.vpc.cidr;
      this.internetGatewayId = vpc.internetGatewayId!;
      gatewayDependency = vpc.node.findChild('VPCGW');
      const generated = [...vpc.publicSubnets, ...vpc.privateSubnets].map((s) => s.ipv4CidrBlock);
      const ours = [...config.lbSubnetCidrs, ...vipGroupsOf(config).flatMap((g) => (g.cloudCidrBlock ? [g.cloudCidrBlock] : []))];
      const clash = ours.flatMap((o) => generated.filter((g) => cidrsOverlap(o, g)).map((g) => `${o} overlaps the VPC's generated subnet ${g}`));
      if (clash.length) throw new Error(`loxiha network layout: ${clash.join('; ')}. Choose LB subnets and cloudCidrBlock above ${generated.at(-1)}.`);
    } else {
      this.vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', {
        vpcId: config.vpc.vpcId,
        availabilityZones: config.availabilityZones,
        privateSubnetIds: config.vpc.clusterSubnetIds,
      });
      this.vpcCidr = undefined;
      this.internetGatewayId = config.vpc.internetGatewayId;
    }

    // eni: each VIP group's block (the default group's is cloudCidrBlock) is associated with the VPC
    // when outside its CIDR; the default group's keeps its construct id.
    for (const g of config.strategy === 'eni' ? vipGroupsOf(config) : []) {
      const block = g.cloudCidrBlock!;
      const needsAssociation = 'cidr' in config.vpc ? !cidrContains(config.vpc.cidr, block) : g.name === DEFAULT_GROUP ? !config.vpc.cloudCidrBlockAssociated : true;
      if (!needsAssociation) continue;
      const assoc = new ec2.CfnVPCCidrBlock(this, g.name === DEFAULT_GROUP ? 'CloudCidrBlock' : `CloudCidrBlock-${g.name}`, { vpcId: this.vpc.vpcId, cidrBlock: block });
      this.floatingPrerequisites.push(assoc);
    }

    this.lbSubnets = config.availabilityZones.map((az, i) => {
      const subnet = new ec2.PublicSubnet(this, `LbSubnet${i}`, {
        vpcId: this.vpc.vpcId,
        availabilityZone: az,
        cidrBlock: config.lbSubnetCidrs[i]!,
        mapPublicIpOnLaunch: true,
      });
      subnet.addDefaultInternetRoute(this.internetGatewayId, gatewayDependency ?? subnet);
      cdk.Tags.of(subnet).add(TAG.name, `${namePrefix(config.deploymentId)}-lb-${az}`);
      return subnet;
    });

    if (config.strategy === 'route') {
      this.floatingRouteTable = undefined;
      // The nodes reach the VIP (endpoint replies) and the LBs reach each other's: their subnets' tables.
      this.vipRouteTableIds = config.routeTableIds ?? [...this.lbSubnets, ...this.vpc.privateSubnets].map((sub) => sub.routeTable.routeTableId);
      return;
    }
    this.floatingRouteTable = new ec2.CfnRouteTable(this, 'FloatingRouteTable', {
      vpcId: this.vpc.vpcId,
      tags: [
        { key: TAG.deployment, value: config.deploymentId },
        { key: TAG.role, value: ROLE.floatingRouteTable },
        { key: TAG.name, value: `${namePrefix(config.deploymentId)}-floating` },
      ],
    });
    const route = new ec2.CfnRoute(this, 'FloatingDefaultRoute', {
      routeTableId: this.floatingRouteTable.ref,
      destinationCidrBlock: '0.0.0.0/0',
      gatewayId: this.internetGatewayId,
    });
    if (gatewayDependency) route.node.addDependency(gatewayDependency);
    this.floatingPrerequisites.push(route);
  }
}
