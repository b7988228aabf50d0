import * as cdk from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Construct } from 'constructs';
import type { LoxihaConfig } from './config.ts';
import { ROLE, TAG } from './contract.ts';
import { Cluster } from './constructs/cluster.ts';
import { AgentApiToken } from './constructs/agent-api-token.ts';
import { FailoverFunction } from './constructs/failover-function.ts';
import { FailoverWiring } from './constructs/failover-wiring.ts';
import { LbInstances } from './constructs/lb-instances.ts';
import { LbSecurityGroup } from './constructs/lb-security-group.ts';
import { Network } from './constructs/network.ts';

export interface LoxihaStackProps extends cdk.StackProps {
  readonly config: LoxihaConfig;
}

/** Everything one loxiha deployment needs, composed from one construct per concern. */
export class LoxihaStack extends cdk.Stack {
  readonly network: Network;
  readonly cluster: Cluster;
  readonly lbInstances: LbInstances;
  readonly failover: FailoverFunction;
  readonly wiring: FailoverWiring;
  readonly eipAllocationId: string;
  readonly eipAddress: string;

  constructor(scope: Construct, id: string, props: LoxihaStackProps) {
    super(scope, id, props);
    const { config } = props;
    // Dashboards take no tags in CloudFormation's published schema (cfn-lint E3002).
    cdk.Tags.of(this).add(TAG.deployment, config.deploymentId, { excludeResourceTypes: ['AWS::CloudWatch::Dashboard'] });

    this.network = new Network(this, 'Network', { config });
    const sg = new LbSecurityGroup(this, 'LbSecurity', { config, vpc: this.network.vpc });

    if (config.existingEip) {
      this.eipAllocationId = config.existingEip.allocationId;
      this.eipAddress = config.existingEip.publicIp;
    } else {
      const eip = new ec2.CfnEIP(this, 'Eip', {
        domain: 'vpc',
        tags: [
          { key: TAG.deployment, value: config.deploymentId },
          { key: TAG.role, value: ROLE.eip },
          { key: TAG.name, value: `loxiha-${config.deploymentId}` },
        ],
      });
      eip.applyRemovalPolicy(cdk.RemovalPolicy.RETAIN);
      this.eipAllocationId = eip.attrAllocationId;
      this.eipAddress = eip.attrPublicIp;
    }

    const apiToken = new AgentApiToken(this, 'AgentApiToken', { config });
    this.cluster = new Cluster(this, 'Cluster', { config, vpc: this.network.vpc, eipAddress: this.eipAddress, apiToken: apiToken.secret });
    sg.allowApiFrom(this.cluster.nodesPeer);

    this.failover = new FailoverFunction(this, 'Failover', {
      config,
      vpcId: this.network.vpc.vpcId,
      eipAllocationId: this.eipAllocationId,
      floatingRouteTableId: this.network.floatingRouteTable.ref,
      lbSecurityGroupId: sg.securityGroup.securityGroupId,
    });

    this.lbInstances = new LbInstances(this, 'Lb', {
      config,
      vpc: this.network.vpc,
      subnets: this.network.lbSubnets,
      securityGroup: sg.securityGroup,
      // The agents reach the function only through their own entry (an alias): fast-path requests and nothing else.
      failoverFunctionArn: this.failover.agentEntry.functionArn,
      failoverFunctionName: this.failover.agentEntry.functionArn,
      apiToken: apiToken.secret,
    });

    this.wiring = new FailoverWiring(this, 'Wiring', {
      config,
      fn: this.failover.fn,
      instances: this.lbInstances.instances,
      lifecycleDependsOn: [...this.network.floatingPrerequisites, this.network.floatingRouteTable, ...this.failover.lifecycleDependencies(), sg],
    });

    new cdk.CfnOutput(this, 'ElasticIp', { value: this.eipAddress, description: 'Public address of the services' });
    new cdk.CfnOutput(this, 'FailoverFunctionName', { value: this.failover.fn.functionName });
    new cdk.CfnOutput(this, 'Vip', { value: config.vip });
  }
}
