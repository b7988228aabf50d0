import * as cdk from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Construct } from 'constructs';
import type { LoxihaConfig } from '../config.ts';
import { PORTS } from '../contract.ts';

export interface LbSecurityGroupProps {
  readonly config: LoxihaConfig;
  readonly vpc: ec2.IVpc;
}

/**
 * The LB instances' security group, also put on loxi-eni: service ports open to the
 * clients, the agent API to the EKS nodes only, peer sync and heartbeat to the LB
 * instances only.
 */
export class LbSecurityGroup extends Construct {
  readonly securityGroup: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: LbSecurityGroupProps) {
    super(scope, id);
    const { config } = props;
    this.securityGroup = new ec2.SecurityGroup(this, 'Sg', {
      vpc: props.vpc,
      description: `loxiha ${config.deploymentId} load-balancer instances and loxi-eni`,
      allowAllOutbound: true,
    });
    for (const cidr of config.clientCidrs) {
      for (const sp of config.servicePorts) {
        const port = sp.protocol === 'tcp' ? ec2.Port.tcp(sp.port) : ec2.Port.udp(sp.port);
        this.securityGroup.addIngressRule(ec2.Peer.ipv4(cidr), port, `service ${sp.protocol}/${sp.port} from ${cidr}`);
      }
    }
    if (config.clientCidrs.includes('0.0.0.0/0')) {
      cdk.Validations.of(this.securityGroup).acknowledge({
        id: 'AwsSolutions-EC23',
        reason: 'The load balancer serves the public on the configured service ports only (clientCidrs narrows it).',
      });
    }
    const self = this.securityGroup;
    self.addIngressRule(self, ec2.Port.tcp(PORTS.peerSync), 'session sync from the peer LB instance');
    self.addIngressRule(self, ec2.Port.udp(PORTS.peerHeartbeat), 'heartbeat from the peer LB instance');
  }

  /** Opens the agent API to the EKS nodes' security group. */
  allowApiFrom(nodes: ec2.IPeer): void {
    this.securityGroup.addIngressRule(nodes, ec2.Port.tcp(PORTS.agentApi), 'agent API (kube-loxilb) from the EKS nodes');
  }

  /**
   * Admits the endpoints' packets to the VIP by rule, not only by connection tracking. Security
   * groups track connections per interface: the LB's packets to an endpoint may leave through one
   * interface while the reply arrives on loxi-eni, and after a failover the new loxi-eni has seen
   * none of the synced flows. Full-NAT sends to the endpoints from the VIP, keeping the client's
   * source port where it can, so the reply's destination port can be any: all TCP and UDP ports,
   * from the EKS nodes' security group only (the agent's own ports on the way still authenticate).
   */
  allowEndpointRepliesFrom(nodes: ec2.IPeer): void {
    this.securityGroup.addIngressRule(nodes, ec2.Port.allTcp(), 'endpoint replies to the VIP (full-NAT, any client port) from the EKS nodes');
    this.securityGroup.addIngressRule(nodes, ec2.Port.allUdp(), 'endpoint replies to the VIP (full-NAT, any client port) from the EKS nodes');
  }
}
