import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as cdk from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { type LoxihaConfig, slotCountOf, vipGroupsOf } from '../config.ts';
import { KERNEL_PREREQUISITES } from '../../agent/host/prerequisites.ts';
import { AGENT_NODE_FLAGS, bundleAgent } from '../agent-bundle.ts';
import { AGENT_API_TOKEN_FILE, LIFECYCLE_HOOKS, type LifecycleHookMetadata, METRICS, namePrefix, ROLE, SLOT_READY_TIMEOUT_SECONDS, slotGroupName, SYNC_KEY_FILE, TAG } from '../contract.ts';
import { agentConfigFor, lbIngressIp, lbInstanceIp, slotZone } from '../topology.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface LbSlotsProps {
  readonly config: LoxihaConfig;
  readonly vpc: ec2.IVpc;
  readonly subnets: ec2.ISubnet[];
  readonly securityGroup: ec2.ISecurityGroup;
  /** Function the backup agent invokes on its fast path. */
  readonly failoverFunctionArn: string;
  readonly failoverFunctionName: string;
  /** The agents' API token (read at boot into a root-only file). */
  readonly apiToken: secretsmanager.ISecret;
  /** The VIP groups with their EIPs' public addresses, the default first. */
  readonly groups: ReadonlyArray<{ name: string; vip: string; publicIp: string }>;
}

/** One LB slot: what keeps its identity (its interface, its group) whichever instance serves it. */
export interface LbSlot {
  readonly index: number;
  /** The Auto Scaling group of one that keeps an instance in the slot (named: slotGroupName). */
  readonly group: autoscaling.AutoScalingGroup;
  readonly groupName: string;
  /** What the group launches: a deploy that changes it makes a new version (the rollout replaces the instance). */
  readonly launchTemplate: ec2.LaunchTemplate;
  /** The slot's own interface: its fixed address (and, for `route`, the ingress IP), attached to the serving instance. */
  readonly slotInterface: ec2.CfnNetworkInterface;
}

/** How long a lifecycle action waits for the function before its default result (each heartbeat restarts it). */
export const LIFECYCLE_HOOK_TIMEOUT = cdk.Duration.minutes(5);
/** How long a slot's new instance has to report ready (signal) before its creation or update fails and rolls back. */
export const READY_TIMEOUT = cdk.Duration.seconds(SLOT_READY_TIMEOUT_SECONDS);

/**
 * The load-balancer slots: one per AZ. Each slot is an Auto Scaling group of one (launch template,
 * Amazon Linux 2023 pinned, IMDSv2 only, running the agent as a systemd service on Node 24) and a
 * network interface of its own with the slot's fixed address, which the failover function attaches
 * to whichever instance serves the slot (the launching lifecycle hook). An instance that fails, is
 * stopped or terminated is replaced by its group, not by CloudFormation. A deploy that changes the
 * launch template changes the groups only; the rollout resource (FailoverWiring) then replaces their
 * instances at run time, the backup's slot first, the VIP moved off the owner's by its terminating
 * lifecycle hook. The stack's creation waits for each slot's first instance to signal ready.
 */
export class LbSlots extends Construct {
  readonly slots: LbSlot[];
  readonly role: iam.Role;
  readonly syncSecret: secretsmanager.Secret;
  /** The agents' logs, a stream per slot and instance (`slot0/i-…`): the JSON lines the agent writes. */
  readonly agentLogGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: LbSlotsProps) {
    super(scope, id);
    const { config } = props;
    const stack = cdk.Stack.of(this);
    const instanceType = new ec2.InstanceType(config.instanceType);

    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
      description: `loxiha ${config.deploymentId} agent: heartbeats, fast-path failover, own ENIs`,
    });
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'Heartbeats',
        actions: ['cloudwatch:PutMetricData'],
        resources: ['*'],
        conditions: { StringEquals: { 'cloudwatch:namespace': METRICS.namespace } },
      }),
    );
    this.role.addToPolicy(
      new iam.PolicyStatement({ sid: 'FastPathFailover', actions: ['lambda:InvokeFunction'], resources: [props.failoverFunctionArn] }),
    );
    this.role.addToPolicy(
      new iam.PolicyStatement({ sid: 'OwnInterfaces', actions: ['ec2:DescribeNetworkInterfaces'], resources: ['*'] }),
    );
    cdk.Validations.of(this.role).acknowledge(
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'cloudwatch:PutMetricData, ec2:DescribeNetworkInterfaces and the Session Manager channel actions (ssm:UpdateInstanceInformation, ssmmessages:*Channel) support no resource-level permissions; PutMetricData is limited to the Loxiha namespace by condition.',
      },
    );

    // A shell without SSH or an open port: Session Manager (the SSM agent ships with AL2023).
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'SessionManager',
        actions: ['ssm:UpdateInstanceInformation', 'ssmmessages:CreateControlChannel', 'ssmmessages:CreateDataChannel', 'ssmmessages:OpenControlChannel', 'ssmmessages:OpenDataChannel'],
        resources: ['*'],
      }),
    );
    this.agentLogGroup = new logs.LogGroup(this, 'AgentLogs', {
      logGroupName: `/loxiha/${config.deploymentId}/agent`,
      retention: config.logRetentionDays as logs.RetentionDays,
      removalPolicy: cdk.RemovalPolicy.DESTROY,
    });
    this.agentLogGroup.grantWrite(this.role);

    this.syncSecret = new secretsmanager.Secret(this, 'SyncKey', {
      description: `loxiha ${config.deploymentId}: shared key authenticating peer heartbeats and session sync`,
      generateSecretString: { passwordLength: 48, excludePunctuation: true },
    });
    this.syncSecret.grantRead(this.role);
    props.apiToken.grantRead(this.role);

    const agentAsset = new s3assets.Asset(this, 'AgentBundle', {
      path: path.join(ROOT, 'agent'),
      assetHashType: cdk.AssetHashType.OUTPUT,
      bundling: {
        image: cdk.DockerImage.fromRegistry('loxiha/no-docker-bundling'),
        local: {
          tryBundle(outputDir: string) {
            bundleAgent(path.join(outputDir, 'agent.mjs'));
            return true;
          },
        },
      },
    });
    // Only the one object, rather than Asset.grantRead's s3:GetObject*/List* on the whole bucket.
    this.role.addToPolicy(
      new iam.PolicyStatement({ sid: 'AgentBundle', actions: ['s3:GetObject'], resources: [agentAsset.bucket.arnForObjects(agentAsset.s3ObjectKey)] }),
    );

    const cpuType = instanceType.architecture === ec2.InstanceArchitecture.ARM_64 ? ec2.AmazonLinuxCpuType.ARM_64 : ec2.AmazonLinuxCpuType.X86_64;
    // Pinned: the configured image, or the latest AL2023 looked up once and recorded in cdk.context.json.
    const machineImage = config.amiId
      ? ec2.MachineImage.genericLinux({ [stack.region]: config.amiId })
      : ec2.MachineImage.latestAmazonLinux2023({ cpuType, cachedInContext: true });

    /** A user-data line writing a secret to a root-only file. */
    const fetchSecret = (secret: secretsmanager.ISecret, file: string) =>
      `(umask 077 && aws secretsmanager get-secret-value --region ${stack.region} --secret-id ${secret.secretArn} --query SecretString --output text > ${file})`;

    // Each slot's new instance tells CloudFormation it is ready (creation and rolling updates wait for it).
    this.role.addToPolicy(new iam.PolicyStatement({ sid: 'SignalReady', actions: ['cloudformation:SignalResource'], resources: [stack.stackId] }));

    const slotIndexes = Array.from({ length: slotCountOf(config) }, (_, i) => i);
    const slotInterfaces = slotIndexes.map((index) => this.slotInterface(index, props));
    this.slots = slotIndexes.map((index) => {
      const selfIp = lbInstanceIp(config, index);
      const groupName = slotGroupName(config.deploymentId, index);
      const agentConfig = agentConfigFor(config, index, {
        region: stack.region,
        failoverFunctionName: props.failoverFunctionName,
        // The agent follows both secrets' rotations (DescribeSecret and GetSecretValue, granted above).
        secrets: { apiToken: props.apiToken.secretArn, syncKey: this.syncSecret.secretArn },
      }, props.groups);
      const userData = ec2.UserData.forLinux();
      const bundlePath = userData.addS3DownloadCommand({ bucket: agentAsset.bucket, bucketKey: agentAsset.s3ObjectKey, localFile: '/opt/loxiha/agent.zip' });
      const launchTemplate = new ec2.LaunchTemplate(this, `Slot${index}Template`, {
        instanceType,
        machineImage,
        role: this.role,
        securityGroup: props.securityGroup,
        requireImdsv2: true,
        detailedMonitoring: true,
        userData,
        blockDevices: [{ deviceName: '/dev/xvda', volume: ec2.BlockDeviceVolume.ebs(16, { encrypted: true, volumeType: ec2.EbsDeviceVolumeType.GP3 }) }],
      });
      const group = new autoscaling.AutoScalingGroup(this, `Slot${index}`, {
        vpc: props.vpc,
        vpcSubnets: { subnets: [props.subnets[slotZone(config, index)]!] },
        autoScalingGroupName: groupName,
        launchTemplate,
        minCapacity: 1,
        maxCapacity: 1,
        // A stopped or impaired instance is replaced (EC2 status checks).
        healthChecks: autoscaling.HealthChecks.ec2({ gracePeriod: cdk.Duration.minutes(5) }),
        // Created only once its first instance reports ready. A deploy that changes the template changes
        // the group alone (no update policy): the rollout resource then replaces the slots' instances
        // at run time, the backup's first, so the VIP moves once (FailoverWiring).
        signals: autoscaling.Signals.waitForMinCapacity({ timeout: READY_TIMEOUT }),
      });
      // The hooks are part of the group from its creation, so its very first instance gets the slot's interface too.
      const metadata = (slot: number): string => JSON.stringify({ deployment: config.deploymentId, slot } satisfies LifecycleHookMetadata);
      (group.node.defaultChild as autoscaling.CfnAutoScalingGroup).lifecycleHookSpecificationList = [
        { lifecycleHookName: LIFECYCLE_HOOKS.launching, lifecycleTransition: 'autoscaling:EC2_INSTANCE_LAUNCHING', heartbeatTimeout: LIFECYCLE_HOOK_TIMEOUT.toSeconds(), defaultResult: 'ABANDON', notificationMetadata: metadata(index) },
        { lifecycleHookName: LIFECYCLE_HOOKS.terminating, lifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING', heartbeatTimeout: LIFECYCLE_HOOK_TIMEOUT.toSeconds(), defaultResult: 'CONTINUE', notificationMetadata: metadata(index) },
      ];
      // No instance before every slot's fixed address is taken by its interface (DHCP could hand it out).
      for (const i of slotInterfaces) group.node.addDependency(i);
      const signal = (status: 'SUCCESS' | 'FAILURE') =>
        `aws cloudformation signal-resource --region ${stack.region} --stack-name ${stack.stackName} --logical-resource-id ${stack.getLogicalId(group.node.defaultChild as cdk.CfnElement)} --unique-id "$INSTANCE_ID" --status ${status}`;

      userData.addCommands(
        'set -euo pipefail',
        'IMDS_TOKEN=$(curl -sf --retry 10 --retry-connrefused -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")',
        'INSTANCE_ID=$(curl -sf --retry 10 --retry-connrefused -H "X-aws-ec2-metadata-token: $IMDS_TOKEN" http://169.254.169.254/latest/meta-data/instance-id)',
        // Whatever fails below, a stack creation hears it at once instead of after the timeout. (A later instance
        // of the slot has no CloudFormation operation waiting for its signal: the rollout reads its readiness
        // from its heartbeats, and the refused signal is not an error.)
        `trap '${signal('FAILURE')} || true' ERR`,
        // conntrack-tools: session sync streams (conntrack -E) and loads (conntrack -R) flows; iputils: arping.
        // amazon-cloudwatch-agent ships the agent's log to CloudWatch Logs.
        'dnf install -y nodejs24 nftables conntrack-tools iputils unzip python3 amazon-cloudwatch-agent logrotate',
        'mkdir -p /opt/loxiha /etc/loxiha /var/lib/loxiha /var/log/loxiha',
        `unzip -o ${bundlePath} -d /opt/loxiha`,
        // The API token and the peers' shared key, readable by root only (the agent runs as root with two capabilities).
        fetchSecret(props.apiToken, AGENT_API_TOKEN_FILE),
        fetchSecret(this.syncSecret, SYNC_KEY_FILE),
        `cat > /etc/loxiha/agent.json <<'LOXIHA_EOF'\n${stack.toJsonString(agentConfig)}\nLOXIHA_EOF`,
        // The slot's interface (its fixed address) and loxi-eni, when hot-plugged here, are configured by amazon-ec2-net-utils
        // (address, its own source rules) as AL2023 does for any ENI; the agent adds only its mark rule and routing table 7410
        // on top (README: the VIP's path).
        // The agent's kernel prerequisites, persistent (a reboot keeps forwarding on); the agent checks and sets them at every start too.
        `printf '${KERNEL_PREREQUISITES.map((p) => `${p.key} = ${p.want}\\n`).join('')}' > /etc/sysctl.d/90-loxiha.conf`,
        `sysctl -w ${KERNEL_PREREQUISITES.map((p) => `${p.key}=${p.want}`).join(' ')}`,
        `cat > /etc/systemd/system/loxiha-agent.service <<'LOXIHA_EOF'
[Unit]
Description=loxiha load-balancer agent
After=network-online.target
Wants=network-online.target

[Service]
# The slot's address arrives with its interface (attached by the failover function as the instance launches).
# ($$ is systemd's literal dollar.)
ExecStartPre=/bin/sh -c 'for i in $$(seq 300); do ip -4 -o addr show | grep -q " ${selfIp}/" && exit 0; sleep 1; done; echo "slot address ${selfIp} not configured"; exit 1'
ExecStart=/usr/bin/node-24 ${AGENT_NODE_FLAGS.join(' ')} /opt/loxiha/agent.mjs --config /etc/loxiha/agent.json
# JSON lines, one per event: kept on the instance (logrotate) and shipped to CloudWatch Logs.
StandardOutput=append:${AGENT_LOG_FILE}
StandardError=append:${AGENT_LOG_FILE}
Restart=always
RestartSec=1
# the agent programs nftables and conntrack; nothing else
AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=/var/lib/loxiha
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
LOXIHA_EOF`,
        `cat > /etc/logrotate.d/loxiha <<'LOXIHA_EOF'\n${AGENT_LOG_FILE} {\n  daily\n  rotate 7\n  compress\n  missingok\n  notifempty\n  copytruncate\n}\nLOXIHA_EOF`,
        `cat > /opt/aws/amazon-cloudwatch-agent/etc/loxiha.json <<'LOXIHA_EOF'\n${stack.toJsonString(cloudWatchAgentConfig(this.agentLogGroup.logGroupName, index))}\nLOXIHA_EOF`,
        '/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:/opt/aws/amazon-cloudwatch-agent/etc/loxiha.json',
        `printf '#!/bin/sh\\nexec /usr/bin/node-24 /opt/loxiha/cli.mjs "$@"\\n' > /usr/local/bin/loxiha`,
        'chmod 755 /usr/local/bin/loxiha',
        'systemctl daemon-reload',
        'systemctl enable --now loxiha-agent.service',
        // In service only once the agent reports ready (its kernel prerequisites hold): then the slot is whole.
        `/usr/local/bin/loxiha wait-ready --timeout ${READY_TIMEOUT.toSeconds() - 120}`,
        `${signal('SUCCESS')} || echo 'no CloudFormation operation waits for this instance (not the stack creation): ready, as its heartbeats say'`,
      );

      cdk.Validations.of(group).acknowledge({
        id: 'AwsSolutions-AS3',
        reason: "The group's launches and terminations reach the failover function as lifecycle actions (EventBridge), which acts on each; Auto Scaling's own SNS notifications cannot publish to the deployment's topic (encrypted with the AWS-managed SNS key).",
      });
      cdk.Tags.of(group).add(TAG.role, ROLE.lbInstance, { applyToLaunchedInstances: true });
      cdk.Tags.of(group).add(TAG.instanceIndex, String(index), { applyToLaunchedInstances: true });
      cdk.Tags.of(group).add(TAG.name, `${namePrefix(config.deploymentId)}-lb${index}`, { applyToLaunchedInstances: true });
      return { index, group, groupName, launchTemplate, slotInterface: slotInterfaces[index]! };
    });
  }

  /**
   * A slot's own interface: the slot's fixed address (peers, kube-loxilb) and, for `route`, its
   * ingress IP as a secondary address (the EIP is associated with it on failover; AL2023 configures
   * secondary addresses from IMDS), source/dest check off, tagged so that the function finds it and
   * may attach it and move the EIP onto it. It outlives every instance of the slot.
   */
  private slotInterface(index: number, props: LbSlotsProps): ec2.CfnNetworkInterface {
    const { config } = props;
    // route: one ingress IP per VIP group (the default group's first), whichever groups the slot owns now.
    const ingress = config.strategy === 'route' ? vipGroupsOf(config).map((_, g) => lbIngressIp(config, index, g)) : [];
    return new ec2.CfnNetworkInterface(this, `Slot${index}Interface`, {
      subnetId: props.subnets[slotZone(config, index)]!.subnetId,
      groupSet: [props.securityGroup.securityGroupId],
      privateIpAddresses: [{ privateIpAddress: lbInstanceIp(config, index), primary: true }, ...ingress.map((ip) => ({ privateIpAddress: ip, primary: false }))],
      sourceDestCheck: false,
      description: `loxiha ${config.deploymentId} slot ${index}${ingress.length ? `, ingress IP${ingress.length > 1 ? 's' : ''} ${ingress.join(' ')}` : ''}`,
      tags: [
        { key: TAG.deployment, value: config.deploymentId },
        { key: TAG.role, value: ROLE.slotInterface },
        { key: TAG.instanceIndex, value: String(index) },
        { key: TAG.name, value: `${namePrefix(config.deploymentId)}-slot${index}` },
      ],
    });
  }
}

/** Where the agent's JSON lines go on the instance (and from there to CloudWatch Logs). */
export const AGENT_LOG_FILE = '/var/log/loxiha/agent.log';

/** The CloudWatch agent's configuration: the agent's log file to the deployment's group, a stream per slot and instance. */
export function cloudWatchAgentConfig(logGroupName: string, slot: number): Record<string, unknown> {
  return {
    agent: { run_as_user: 'root' },
    logs: {
      logs_collected: {
        files: {
          collect_list: [{ file_path: AGENT_LOG_FILE, log_group_name: logGroupName, log_stream_name: `slot${slot}/{instance_id}`, timezone: 'UTC' }],
        },
      },
    },
  };
}
