import * as cdk from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Construct } from 'constructs';
import type { LoxihaConfig } from '../config.ts';
import { lbIngressRules, NODE_PORTS } from '../lb-ingress-rules.ts';

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
  private readonly fromNodes: { port: ec2.Port; description: string }[] = [];

  constructor(scope: Construct, id: string, props: LbSecurityGroupProps) {
    super(scope, id);
    const { config } = props;
    this.securityGroup = new ec2.SecurityGroup(this, 'Sg', {
      vpc: props.vpc,
      description: `loxiha ${config.deploymentId} load-balancer instances and loxi-eni`,
      allowAllOutbound: true,
    });
    const self = this.securityGroup;
    for (const rule of lbIngressRules(config)) {
      const port = rule.protocol === 'tcp' ? ec2.Port.tcpRange(rule.fromPort, rule.toPort) : ec2.Port.udpRange(rule.fromPort, rule.toPort);
      if ('cidr' in rule.source) self.addIngressRule(ec2.Peer.ipv4(rule.source.cidr), port, rule.description);
      else if (rule.source.group === 'self') self.addIngressRule(self, port, rule.description);
      else this.fromNodes.push({ port, description: rule.description });
    }
    if (config.clientCidrs.includes('0.0.0.0/0')) {
      cdk.Validations.of(this.securityGroup).acknowledge({
        id: 'AwsSolutions-EC23',
        reason: 'The load balancer serves the public on the configured service ports only (clientCidrs narrows it).',
      });
    }
  }

  /**
   * Admits what lbIngressRules gives the EKS nodes: the agent API (kube-loxilb), and the endpoints'
   * replies to the VIP by rule, not only by connection tracking (see lbIngressRules).
   */
  allowNodes(nodes: ec2.IPeer): void {
    for (const r of this.fromNodes) this.securityGroup.addIngressRule(nodes, r.port, r.description);
  }

  /**
   * The other direction: the nodes' security group admits the LBs' full-NAT traffic to the
   * NodePorts (kube-loxilb's endpoints). By security-group reference: the packets leave loxi-eni
   * (eni strategy) or the primary interface (route strategy), both in this group, from the VIP.
   */
  letReachNodePorts(nodes: ec2.ISecurityGroup): void {
    for (const port of [ec2.Port.tcpRange(NODE_PORTS.from, NODE_PORTS.to), ec2.Port.udpRange(NODE_PORTS.from, NODE_PORTS.to)]) {
      nodes.addIngressRule(this.securityGroup, port, 'loxiha load balancers (full-NAT from the VIP) to the NodePorts');
    }
  }
}
