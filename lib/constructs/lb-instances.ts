import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as cdk from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import type { LoxihaConfig } from '../config.ts';
import { KERNEL_PREREQUISITES } from '../../agent/host/prerequisites.ts';
import { AGENT_NODE_FLAGS, bundleAgent } from '../agent-bundle.ts';
import { AGENT_API_TOKEN_FILE, METRICS, namePrefix, ROLE, SYNC_KEY_FILE, TAG } from '../contract.ts';
import { agentConfigFor, lbIngressIp, lbInstanceIp } from '../topology.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface LbInstancesProps {
  readonly config: LoxihaConfig;
  readonly vpc: ec2.IVpc;
  readonly subnets: ec2.ISubnet[];
  readonly securityGroup: ec2.ISecurityGroup;
  /** Function the backup agent invokes on its fast path. */
  readonly failoverFunctionArn: string;
  readonly failoverFunctionName: string;
  /** The agents' API token (read at boot into a root-only file). */
  readonly apiToken: secretsmanager.ISecret;
}

/**
 * The load-balancer instances: one per AZ, Amazon Linux 2023, IMDSv2 only, source/dest
 * check off, a fixed primary IP, running the agent (bundled asset, systemd, Node 24).
 */
export class LbInstances extends Construct {
  readonly instances: ec2.Instance[];
  readonly role: iam.Role;
  readonly syncSecret: secretsmanager.Secret;

  constructor(scope: Construct, id: string, props: LbInstancesProps) {
    super(scope, id);
    // Without this flag the IMDSv2 launch templates get fixed names, and two deployments in one region collide.
    this.node.setContext('@aws-cdk/aws-ec2:uniqueImdsv2TemplateName', true);
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
        reason: 'cloudwatch:PutMetricData and ec2:DescribeNetworkInterfaces support no resource-level permissions; PutMetricData is limited to the Loxiha namespace by condition.',
      },
    );

    this.syncSecret = new secretsmanager.Secret(this, 'SyncKey', {
      description: `loxiha ${config.deploymentId}: shared key authenticating peer heartbeats and session sync`,
      generateSecretString: { passwordLength: 48, excludePunctuation: true },
    });
    this.syncSecret.grantRead(this.role);
    props.apiToken.grantRead(this.role);
    cdk.Validations.of(this.syncSecret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason: 'Peer key read by both agents at start; rotation needs a coordinated agent restart, done by redeploying the stack.',
    });

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

    const machineImage = ec2.MachineImage.latestAmazonLinux2023({
      cpuType: instanceType.architecture === ec2.InstanceArchitecture.ARM_64 ? ec2.AmazonLinuxCpuType.ARM_64 : ec2.AmazonLinuxCpuType.X86_64,
    });

    /** A user-data line writing a secret to a root-only file. */
    const fetchSecret = (secret: secretsmanager.ISecret, file: string) =>
      `(umask 077 && aws secretsmanager get-secret-value --region ${stack.region} --secret-id ${secret.secretArn} --query SecretString --output text > ${file})`;

    this.instances = config.availabilityZones.map((az, index) => {
      const selfIp = lbInstanceIp(config, index);
      const agentConfig = agentConfigFor(config, index, { region: stack.region, failoverFunctionName: props.failoverFunctionName });
      const userData = ec2.UserData.forLinux();
      const bundlePath = userData.addS3DownloadCommand({ bucket: agentAsset.bucket, bucketKey: agentAsset.s3ObjectKey, localFile: '/opt/loxiha/agent.zip' });
      userData.addCommands(
        'set -euo pipefail',
        // conntrack-tools: session sync streams (conntrack -E) and loads (conntrack -R) flows; iputils: arping.
        'dnf install -y nodejs24 nftables conntrack-tools iputils unzip python3',
        'mkdir -p /opt/loxiha /etc/loxiha /var/lib/loxiha',
        `unzip -o ${bundlePath} -d /opt/loxiha`,
        // The API token and the peers' shared key, readable by root only (the agent runs as root with two capabilities).
        fetchSecret(props.apiToken, AGENT_API_TOKEN_FILE),
        fetchSecret(this.syncSecret, SYNC_KEY_FILE),
        `cat > /etc/loxiha/agent.json <<'LOXIHA_EOF'\n${stack.toJsonString(agentConfig)}\nLOXIHA_EOF`,
        // loxi-eni, when hot-plugged here, is configured by amazon-ec2-net-utils (address, its own source rules) as
        // AL2023 does for any ENI; the agent adds only its mark rule and routing table 7410 on top (README: the VIP's path).
        // The agent's kernel prerequisites, persistent (a reboot keeps forwarding on); the agent checks and sets them at every start too.
        `printf '${KERNEL_PREREQUISITES.map((p) => `${p.key} = ${p.want}\\n`).join('')}' > /etc/sysctl.d/90-loxiha.conf`,
        `sysctl -w ${KERNEL_PREREQUISITES.map((p) => `${p.key}=${p.want}`).join(' ')}`,
        `cat > /etc/systemd/system/loxiha-agent.service <<'LOXIHA_EOF'
[Unit]
Description=loxiha load-balancer agent
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/bin/node-24 ${AGENT_NODE_FLAGS.join(' ')} /opt/loxiha/agent.mjs --config /etc/loxiha/agent.json
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
        `printf '#!/bin/sh\\nexec /usr/bin/node-24 /opt/loxiha/cli.mjs "$@"\\n' > /usr/local/bin/loxiha`,
        'chmod 755 /usr/local/bin/loxiha',
        'systemctl daemon-reload',
        'systemctl enable --now loxiha-agent.service',
      );

      const instance = new ec2.Instance(this, `Lb${index}`, {
        vpc: props.vpc,
        vpcSubnets: { subnets: [props.subnets[index]!] },
        availabilityZone: az,
        instanceType,
        machineImage,
        role: this.role,
        securityGroup: props.securityGroup,
        privateIpAddress: selfIp,
        sourceDestCheck: false,
        requireImdsv2: true,
        detailedMonitoring: true,
        userData,
        userDataCausesReplacement: true,
        blockDevices: [{ deviceName: '/dev/xvda', volume: ec2.BlockDeviceVolume.ebs(16, { encrypted: true, volumeType: ec2.EbsDeviceVolumeType.GP3 }) }],
      });
      if (config.strategy === 'route') this.withIngressIp(instance, index, selfIp, props);
      cdk.Tags.of(instance).add(TAG.deployment, config.deploymentId);
      cdk.Tags.of(instance).add(TAG.role, ROLE.lbInstance);
      cdk.Tags.of(instance).add(TAG.instanceIndex, String(index));
      cdk.Tags.of(instance).add(TAG.name, `${namePrefix(config.deploymentId)}-lb${index}`);
      cdk.Validations.of(instance).acknowledge({
        id: 'AwsSolutions-EC29',
        reason: 'Instances are cattle: a failed LB instance is replaced by the stack, the VIP moves to the peer; termination protection would block that and cdk destroy.',
      });
      return instance;
    });
  }

  /**
   * `route` strategy: the primary interface, made explicitly so that it carries the instance's
   * ingress IP as a secondary address (the EIP is associated with it on failover; AL2023 configures
   * secondary addresses from IMDS), source/dest check off, and the deployment's tag (the function
   * may associate the EIP only with this deployment's interfaces).
   */
  private withIngressIp(instance: ec2.Instance, index: number, selfIp: string, props: LbInstancesProps): void {
    const { config } = props;
    const ingress = lbIngressIp(config, index);
    const eni = new ec2.CfnNetworkInterface(this, `Lb${index}Primary`, {
      subnetId: props.subnets[index]!.subnetId,
      groupSet: [props.securityGroup.securityGroupId],
      privateIpAddresses: [
        { privateIpAddress: selfIp, primary: true },
        { privateIpAddress: ingress, primary: false },
      ],
      sourceDestCheck: false,
      description: `loxiha ${config.deploymentId} lb${index}: primary, ingress IP ${ingress}`,
      tags: [
        { key: TAG.deployment, value: config.deploymentId },
        { key: TAG.name, value: `${namePrefix(config.deploymentId)}-lb${index}` },
      ],
    });
    const cfn = instance.node.defaultChild as ec2.CfnInstance;
    for (const p of ['SubnetId', 'SecurityGroupIds', 'PrivateIpAddress', 'SourceDestCheck']) cfn.addPropertyDeletionOverride(p);
    cfn.addPropertyOverride('NetworkInterfaces', [{ DeviceIndex: '0', NetworkInterfaceId: eni.ref }]);
  }
}
