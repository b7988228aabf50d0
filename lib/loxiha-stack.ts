import * as cdk from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Construct } from 'constructs';
import { type LoxihaConfig, type VipGroup, vipGroupsOf } from './config.ts';
import { DEFAULT_GROUP, groupResourceName, namePrefix, ROLE, SECRET_KIND, TAG } from './contract.ts';
import { Cluster } from './constructs/cluster.ts';
import { AgentApiToken } from './constructs/agent-api-token.ts';
import { FailoverFunction } from './constructs/failover-function.ts';
import { FailoverWiring } from './constructs/failover-wiring.ts';
import { LbSlots } from './constructs/lb-slots.ts';
import { LbSecurityGroup } from './constructs/lb-security-group.ts';
import { Network } from './constructs/network.ts';
import { EipClaim } from './constructs/eip-claim.ts';
import { SecretRotation } from './constructs/secret-rotation.ts';

/** A VIP group and the EIP the stack gave it. */
export interface GroupWithEip extends VipGroup {
  allocationId: string;
  publicIp: string;
}

export interface LoxihaStackProps extends cdk.StackProps {
  readonly config: LoxihaConfig;
}

/** Everything one loxiha deployment needs, composed from one construct per concern. */
export class LoxihaStack extends cdk.Stack {
  readonly network: Network;
  readonly cluster: Cluster;
  readonly lbSlots: LbSlots;
  readonly failover: FailoverFunction;
  readonly wiring: FailoverWiring;
  /** Rotates the API token and the sync key. */
  readonly rotation: SecretRotation;
  /** The default group's EIP. */
  readonly eipAllocationId: string;
  readonly eipAddress: string;
  /** Every VIP group with its EIP, the default group first. */
  readonly groups: GroupWithEip[];

  constructor(scope: Construct, id: string, props: LoxihaStackProps) {
    super(scope, id, props);
    const { config } = props;
    // Dashboards take no tags in CloudFormation's published schema (cfn-lint E3002).
    cdk.Tags.of(this).add(TAG.deployment, config.deploymentId, { excludeResourceTypes: ['AWS::CloudWatch::Dashboard'] });

    this.network = new Network(this, 'Network', { config });
    const sg = new LbSecurityGroup(this, 'LbSecurity', { config, vpc: this.network.vpc });

    this.groups = this.groupEips(config);
    this.eipAllocationId = this.groups[0]!.allocationId;
    this.eipAddress = this.groups[0]!.publicIp;

    const apiToken = new AgentApiToken(this, 'AgentApiToken', { config });
    this.cluster = new Cluster(this, 'Cluster', { config, vpc: this.network.vpc, groups: this.groups, apiToken: apiToken.secret });
    sg.allowNodes(this.cluster.nodesPeer);
    sg.letReachNodePorts(this.cluster.nodesPeer);

    this.failover = new FailoverFunction(this, 'Failover', {
      config,
      vpcId: this.network.vpc.vpcId,
      groups: this.groups,
      floatingRouteTableId: this.network.floatingRouteTable?.ref,
      vipRouteTableIds: this.network.vipRouteTableIds,
      lbSecurityGroupId: sg.securityGroup.securityGroupId,
    });

    this.lbSlots = new LbSlots(this, 'Lb', {
      config,
      vpc: this.network.vpc,
      subnets: this.network.lbSubnets,
      securityGroup: sg.securityGroup,
      // The agents reach the function only through their own entry (an alias): fast-path requests and nothing else.
      failoverFunctionArn: this.failover.agentEntry.functionArn,
      failoverFunctionName: this.failover.agentEntry.functionArn,
      apiToken: apiToken.secret,
      groups: this.groups,
    });

    this.rotation = new SecretRotation(this, 'SecretRotation', {
      config,
      secrets: [
        { kind: SECRET_KIND.apiToken, secret: apiToken.secret },
        { kind: SECRET_KIND.syncKey, secret: this.lbSlots.syncSecret },
      ],
    });

    this.wiring = new FailoverWiring(this, 'Wiring', {
      config,
      fn: this.failover.fn,
      slots: this.lbSlots.slots,
      // Created first, deleted last: placement needs them, teardown (on destroy) undoes what runs did to them.
      lifecycleDependsOn: [
        ...this.network.floatingPrerequisites,
        ...(this.network.floatingRouteTable ? [this.network.floatingRouteTable] : []),
        ...(config.strategy === 'route' ? [...this.network.lbSubnets, ...this.lbSlots.slots.map((s) => s.slotInterface)] : []),
        ...this.failover.lifecycleDependencies(),
        sg,
      ],
    });

    this.outputs(config);
  }

  /**
   * Each VIP group's EIP: the configured one, else claimed by a custom resource that `cdk destroy`
   * leaves allocated (uninstall.retainEip, the default), else CloudFormation's own. The default
   * group keeps the construct ids it had before groups existed, so an upgrade changes nothing.
   */
  private groupEips(config: LoxihaConfig): GroupWithEip[] {
    const groups = vipGroupsOf(config);
    const toClaim = config.uninstall.retainEip ? groups.filter((g) => !g.existingEip).map((g) => g.name) : [];
    const claim = toClaim.length ? new EipClaim(this, 'EipClaim', { config, groups: toClaim }) : undefined;
    return groups.map((g) => {
      if (g.existingEip) return { ...g, ...g.existingEip };
      const claimed = claim?.addresses.get(g.name);
      if (claimed) return { ...g, ...claimed };
      // Released by `cdk destroy` (uninstall.retainEip false): CloudFormation's own resource.
      const eip = new ec2.CfnEIP(this, g.name === DEFAULT_GROUP ? 'Eip' : `Eip-${g.name}`, {
        domain: 'vpc',
        tags: [
          { key: TAG.deployment, value: config.deploymentId },
          { key: TAG.role, value: ROLE.eip },
          { key: TAG.name, value: groupResourceName(config.deploymentId, g.name) },
          ...(g.name === DEFAULT_GROUP ? [] : [{ key: TAG.group, value: g.name }]),
        ],
      });
      eip.applyRemovalPolicy(cdk.RemovalPolicy.DESTROY);
      return { ...g, allocationId: eip.attrAllocationId, publicIp: eip.attrPublicIp };
    });
  }

  /** What a person needs after `cdk deploy`: the commands to use it, where to look, what `cdk destroy` keeps. */
  private outputs(config: LoxihaConfig): void {
    const region = this.region;
    const fn = this.failover.fn.functionName;
    const invoke = (payload: string) => `aws lambda invoke --region ${region} --function-name ${fn} --cli-binary-format raw-in-base64-out --payload '${payload}' /dev/stdout`;
    const out = (id: string, value: string, description: string) => new cdk.CfnOutput(this, id, { value, description });
    out('ElasticIp', this.eipAddress, 'Public address of the services');
    for (const [k, g] of this.groups.entries()) {
      if (k > 0) out(`ElasticIpGroup${k}`, g.publicIp, `Public address of VIP group ${g.name} (a Service chooses it with the annotation loxilb.io/poolSelect: ${g.name})`);
    }
    out('Vip', config.vip, config.strategy === 'eni' ? 'Private VIP (on loxi-eni)' : 'Private VIP (overlay, routed to the owner)');
    out('FailoverFunctionName', fn, 'The failover function');
    out('StatusCommand', invoke('{"action":"status"}'), 'Who owns the VIP, each instance’s health');
    out('PlanCommand', invoke('{"action":"plan"}'), 'What a failover would do now (changes nothing)');
    out('FailoverCommand', invoke('{"action":"failover","reason":"manual"}'), 'Move the VIP off its owner now (add "to":"i-…" to choose the target)');
    if ('version' in config.eks) {
      out('KubeconfigCommand', `aws eks update-kubeconfig --region ${region} --name ${this.cluster.cluster.clusterName}`, 'kubectl access (for the principals in adminPrincipalArns)');
    }
    out('DashboardUrl', `https://${region}.console.aws.amazon.com/cloudwatch/home?region=${region}#dashboards:name=${namePrefix(config.deploymentId)}`, 'Heartbeats, sync lag, failover phases, alarms');
    out('FunctionLogGroup', this.failover.logGroup.logGroupName, 'The failover function’s logs');
    out('AgentLogGroup', this.lbSlots.agentLogGroup.logGroupName, 'The LB agents’ logs: JSON lines, a stream per slot and instance (slot0/i-…); query them with CloudWatch Logs Insights');
    // A shell on a slot's instance, whichever it is now: Session Manager, no SSH, no open port.
    for (const { index, groupName } of this.lbSlots.slots) {
      out(
        `SessionCommandSlot${index}`,
        `aws ssm start-session --region ${region} --target "$(aws autoscaling describe-auto-scaling-groups --region ${region} --auto-scaling-group-names ${groupName} --query 'AutoScalingGroups[0].Instances[0].InstanceId' --output text)"`,
        `A shell on slot ${index}'s instance (Session Manager; needs the session-manager-plugin)`,
      );
    }
    out('NotificationTopic', this.failover.topic.topicArn, 'Failover notifications (subscribe, or confirm the e-mail subscription)');
    const kept: string[] = [];
    if (config.uninstall.retainEip) {
      for (const g of this.groups) if (!g.existingEip) kept.push(`the EIP ${g.publicIp}${this.groups.length > 1 ? ` (group ${g.name})` : ''}: aws ec2 release-address --region ${region} --allocation-id ${g.allocationId}`);
    }
    if (this.network.flowLogGroup && config.uninstall.retainFlowLogs) kept.push(`the VPC flow logs: aws logs delete-log-group --region ${region} --log-group-name ${this.network.flowLogGroup.logGroupName}`);
    out('RetainedOnDestroy', kept.length ? `cdk destroy keeps ${kept.join('; ')}` : 'cdk destroy removes everything', 'What cdk destroy leaves behind, and how to release it');
  }
}
