import * as cdk from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as eks from 'aws-cdk-lib/aws-eks-v2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { KubectlV35Layer } from '@aws-cdk/lambda-layer-kubectl-v35';
import { Construct } from 'constructs';
import type { LoxihaConfig, NodeOs } from '../config.ts';
import { PORTS } from '../contract.ts';
import { lbInstanceIps } from '../topology.ts';
import { kubeLoxilbTokenVariables } from './agent-api-token.ts';

/** The AWS CLI image of kube-loxilb's init container, which fetches the API token. */
export const AWS_CLI_IMAGE = 'public.ecr.aws/aws-cli/aws-cli:2.22.0';
/**
 * Lifetime kube-loxilb is told its first token has, as the agents' refresh answer gives every later
 * one (agent config api.tokenLifetimeSeconds' default): kube-loxilb refreshes five minutes before it
 * ends — every minute here — through the agents' `oauth/…/token` path, so a rotation's new token
 * reaches it within about a minute of the agent holding it, without a restart.
 */
export const KUBE_LOXILB_TOKEN_LIFETIME_SECONDS = 360;

export interface ClusterProps {
  readonly config: LoxihaConfig;
  readonly vpc: ec2.IVpc;
  /** The VIP groups and their EIPs, the default first: kube-loxilb's address pools. */
  readonly groups: ReadonlyArray<{ name: string; publicIp: string }>;
  /** The agents' API token, which kube-loxilb reads at start (EKS Pod Identity). */
  readonly apiToken: secretsmanager.ISecret;
}

/**
 * The EKS cluster (created with aws-eks-v2, or imported) and the kube-loxilb
 * Deployment wired to the LB instances, the EIP and the VIP.
 *
 * Roles: kube-loxilb runs WITHOUT --setRoles, so it never elects a master nor pushes
 * cistate. The failover function is the single authority on where the VIP lives;
 * each agent reports MASTER exactly when it holds loxi-eni.
 */
export class Cluster extends Construct {
  readonly cluster: eks.ICluster;
  /** Peer that reaches the agent API: the security group of the cluster's nodes. */
  /** The EKS nodes' security group (the cluster security group managed node groups carry, or the configured one). */
  readonly nodesPeer: ec2.ISecurityGroup;
  readonly kubeLoxilbArgs: string[];
  /** The EKS control plane's log group (api, audit, authenticator), when the stack makes the cluster. */
  readonly controlPlaneLogGroupName: string | undefined;

  constructor(scope: Construct, id: string, props: ClusterProps) {
    super(scope, id);
    const { config } = props;
    const kubectlLayer = new KubectlV35Layer(this, 'KubectlLayer');

    if ('version' in config.eks) {
      const cluster = new eks.Cluster(this, 'Eks', {
        version: eks.KubernetesVersion.of(config.eks.version),
        vpc: props.vpc,
        vpcSubnets: [{ subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS }],
        // The node group is added below with an AMI type chosen here: the default (Amazon Linux 2)
        // has no node images after Kubernetes 1.32.
        defaultCapacityType: eks.DefaultCapacityType.NODEGROUP,
        defaultCapacity: 0,
        kubectlProviderOptions: { kubectlLayer },
        clusterLogging: [eks.ClusterLoggingTypes.API, eks.ClusterLoggingTypes.AUDIT, eks.ClusterLoggingTypes.AUTHENTICATOR],
      });
      const instanceType = new ec2.InstanceType(config.eks.nodeInstanceType);
      cluster.addNodegroupCapacity('Nodes', {
        instanceTypes: [instanceType],
        amiType: nodegroupAmiType(config.eks.nodeOs, instanceType.architecture),
        desiredSize: config.eks.nodeCount,
        minSize: config.eks.nodeCount,
        maxSize: config.eks.nodeCount,
        subnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      });
      // The people who run kubectl (API authentication mode: without an access entry nobody but the kubectl provider can).
      config.adminPrincipalArns.forEach((arn, i) =>
        cluster.grantAccess(`Admin${i}`, arn, [eks.AccessPolicy.fromAccessPolicyName('AmazonEKSClusterAdminPolicy', { accessScopeType: eks.AccessScopeType.CLUSTER })]),
      );
      // EKS creates its control-plane log group itself (named after the cluster, known only once it
      // exists): its retention is set on it then, and `cdk destroy` removes it with the rest.
      const controlPlaneLogs = new logs.LogRetention(this, 'ControlPlaneLogRetention', {
        logGroupName: `/aws/eks/${cluster.clusterName}/cluster`,
        retention: config.logRetentionDays as logs.RetentionDays,
        removalPolicy: cdk.RemovalPolicy.DESTROY,
      });
      controlPlaneLogs.node.addDependency(cluster);
      // CDK's helper (one function per stack) writes its policy itself.
      const stack = cdk.Stack.of(this);
      const helper = stack.node.children.find((c) => c.node.id.startsWith('LogRetention'));
      if (helper) {
        cdk.Validations.of(helper).acknowledge(
          { id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]', reason: "CDK's log-retention helper writes only its own logs with the basic execution role." },
          { id: 'AwsSolutions-IAM5[Resource::*]', reason: "CDK's log-retention helper is granted logs:PutRetentionPolicy/DeleteRetentionPolicy on any group as CDK writes it; the stack gives it one group, the EKS control plane's." },
          {
            id: `AwsSolutions-IAM5[Resource::arn:${cdk.Token.isUnresolved(stack.partition) ? '<AWS::Partition>' : stack.partition}:logs:${stack.region}:${stack.account}:log-group:/aws/eks/<${stack.getLogicalId(cluster.node.defaultChild as cdk.CfnElement)}>/cluster:*]`,
            reason: 'The EKS control-plane log group, removed at cdk destroy.',
          },
        );
      }
      this.controlPlaneLogGroupName = `/aws/eks/${cluster.clusterName}/cluster`;
      this.cluster = cluster;
      // Managed node groups carry the EKS-created cluster security group.
      this.nodesPeer = cluster.clusterSecurityGroup;
    } else {
      this.cluster = eks.Cluster.fromClusterAttributes(this, 'Eks', {
        clusterName: config.eks.existingClusterName,
        vpc: props.vpc,
        kubectlProviderOptions: { kubectlLayer, role: iam.Role.fromRoleArn(this, 'KubectlRole', config.eks.kubectlRoleArn) },
      });
      this.nodesPeer = ec2.SecurityGroup.fromSecurityGroupId(this, 'NodeSg', config.eks.nodeSecurityGroupId);
      // An existing cluster's logs are its owner's.
      this.controlPlaneLogGroupName = undefined;
    }

    const urls = lbInstanceIps(config).map((ip) => `http://${ip}:${PORTS.agentApi}`);
    this.kubeLoxilbArgs = [
      `--loxiURL=${urls.join(',')}`,
      ...kubeLoxilbPoolArgs(props.groups),
      `--privateCIDR=${config.vip}/32`,
      '--setLBMode=2',
    ];
    // kube-loxilb's identity on AWS: it may read the API token and nothing else.
    const serviceAccount = new eks.ServiceAccount(this, 'KubeLoxilbServiceAccount', {
      cluster: this.cluster,
      name: 'kube-loxilb',
      namespace: 'kube-system',
      identityType: eks.IdentityType.POD_IDENTITY,
    });
    props.apiToken.grantRead(serviceAccount);
    const manifest = this.cluster.addManifest(
      'KubeLoxilb',
      ...kubeLoxilbManifests(config.kubeLoxilbImage, this.kubeLoxilbArgs, {
        secretArn: props.apiToken.secretArn,
        region: cdk.Stack.of(this).region,
        variables: urls.map(kubeLoxilbTokenVariables),
      }),
    );
    manifest.node.addDependency(serviceAccount);
    cdk.Tags.of(this).add('loxiha:deployment', config.deploymentId);
    acknowledgeEksLibraryFindings(this);
  }
}

/** Findings on roles and functions that aws-eks-v2 itself creates (not loxiha's own code). */
function acknowledgeEksLibraryFindings(scope: Construct): void {
  const managed = [
    'AmazonEKSClusterPolicy',
    'AmazonEKSWorkerNodePolicy',
    'AmazonEKS_CNI_Policy',
    'AmazonEC2ContainerRegistryReadOnly',
    'service-role/AWSLambdaBasicExecutionRole',
    'service-role/AWSLambdaVPCAccessExecutionRole',
  ];
  for (const policy of managed) {
    cdk.Validations.of(scope).acknowledge({
      id: `AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/${policy}]`,
      reason: `EKS control plane, managed node group and kubectl provider roles need the AWS-managed ${policy}, as EKS documents.`,
    });
  }
  const handler = scope.node.tryFindChild('Eks')?.node.tryFindChild('KubectlProvider')?.node.tryFindChild('Handler');
  if (!handler) return;
  const stack = cdk.Stack.of(scope);
  const handlerId = stack.getLogicalId(handler.node.defaultChild as cdk.CfnElement);
  const ecrCondition = handler.node.children.find((c) => c instanceof cdk.CfnCondition) as cdk.CfnCondition | undefined;
  if (ecrCondition) {
    const conditionId = stack.getLogicalId(ecrCondition);
    cdk.Validations.of(scope).acknowledge({
      id: `AwsSolutions-IAM4[Policy::{"Fn::If":["${conditionId}",{"Fn::Join":["",["arn:",{"Ref":"AWS::Partition"},":iam::aws:policy/AmazonElasticContainerRegistryPublicReadOnly"]]},{"Ref":"AWS::NoValue"}]}]`,
      reason: 'The kubectl provider role gets AmazonElasticContainerRegistryPublicReadOnly (aws-eks-v2 behaviour) only in regions with ECR Public.',
    });
  }
  cdk.Validations.of(scope).acknowledge({
    id: `AwsSolutions-IAM5[Resource::<${handlerId}.Arn>:*]`,
    reason: 'The kubectl provider framework may invoke the versions of its own handler, as aws-eks-v2 generates it.',
  });
  cdk.Validations.of(scope).acknowledge({
    id: 'AwsSolutions-L1',
    reason: 'The kubectl provider handler runtime is chosen by aws-eks-v2 to match the kubectl layer; loxiha’s own function is on nodejs24.x.',
  });
}

export interface KubeLoxilbToken {
  secretArn: string;
  region: string;
  /** kube-loxilb's variable names for each agent URL. */
  variables: { token: string; expiry: string; refresh: string }[];
}

/**
 * RBAC and Deployment of kube-loxilb (what its upstream ext-cluster manifest holds; the
 * ServiceAccount is made by the Pod Identity construct). An init container fetches the agents'
 * API token into a memory volume; kube-loxilb starts with it in the variables it reads.
 */
/**
 * kube-loxilb's address pools: one VIP group, its EIP as --externalCIDR (as before groups existed);
 * several, a pool per group (--cidrPools), the default group's named `defaultPool` (what a Service
 * without the loxilb.io/poolSelect annotation gets), every other by its group's name. kube-loxilb's
 * --externalCIDR would replace the pools, so it is left out then. Its --privateCIDR is one address
 * for every pool: the agent serves each rule on the VIP of the group whose EIP it names.
 */
export function kubeLoxilbPoolArgs(groups: ReadonlyArray<{ name: string; publicIp: string }>): string[] {
  if (groups.length === 1) return [`--externalCIDR=${groups[0]!.publicIp}/32`];
  return [`--cidrPools=${groups.map((g, k) => `${k === 0 ? KUBE_LOXILB_DEFAULT_POOL : g.name}=${g.publicIp}/32`).join(',')}`];
}

/** kube-loxilb's name of the pool Services get without the loxilb.io/poolSelect annotation. */
export const KUBE_LOXILB_DEFAULT_POOL = 'defaultPool';

export function kubeLoxilbManifests(image: string, args: string[], token: KubeLoxilbToken): Record<string, unknown>[] {
  const name = 'kube-loxilb';
  const namespace = 'kube-system';
  const tokenDir = '/run/loxiha';
  // The refresh path is authorised by a token the agent accepts: the one fetched at start stands in for OAuth's refresh token.
  const exports = token.variables.map((v) => `${v.token}="$(cat ${tokenDir}/token)" ${v.refresh}="$(cat ${tokenDir}/token)"`).join(' ');
  const hardened = { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };
  return [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name },
      // What kube-loxilb's external-cluster manifest grants (it also watches Gateway API routes).
      rules: [
        { apiGroups: [''], resources: ['nodes', 'pods'], verbs: ['get', 'watch', 'list', 'patch'] },
        { apiGroups: [''], resources: ['endpoints', 'services', 'services/status'], verbs: ['get', 'watch', 'list', 'patch', 'update'] },
        {
          apiGroups: ['gateway.networking.k8s.io'],
          resources: ['gatewayclasses', 'gatewayclasses/status', 'gateways', 'gateways/status', 'tcproutes', 'udproutes'],
          verbs: ['get', 'watch', 'list', 'patch', 'update'],
        },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'watch', 'list'] },
        { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
        { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
      subjects: [{ kind: 'ServiceAccount', name, namespace }],
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, namespace, labels: { app: name } },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: name } },
        template: {
          metadata: { labels: { app: name } },
          spec: {
            // On the node's network, as upstream runs it: its calls to the agents come from the nodes,
            // which is what the LB security group lets reach the agent API.
            hostNetwork: true,
            dnsPolicy: 'ClusterFirstWithHostNet',
            serviceAccountName: name,
            priorityClassName: 'system-node-critical',
            tolerations: [{ key: 'CriticalAddonsOnly', operator: 'Exists' }],
            volumes: [{ name: 'api-token', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } }],
            initContainers: [
              {
                name: 'fetch-api-token',
                image: AWS_CLI_IMAGE,
                command: ['/bin/sh', '-c', `umask 077 && aws secretsmanager get-secret-value --secret-id "$SECRET_ARN" --query SecretString --output text > ${tokenDir}/token`],
                env: [
                  { name: 'SECRET_ARN', value: token.secretArn },
                  { name: 'AWS_REGION', value: token.region },
                ],
                volumeMounts: [{ name: 'api-token', mountPath: tokenDir }],
                resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '200m', memory: '128Mi' } },
                securityContext: hardened,
              },
            ],
            containers: [
              {
                name,
                image,
                imagePullPolicy: 'IfNotPresent',
                // kube-loxilb takes the token only from ACCESS_TOKEN_<host> variables: set them from the fetched file, then exec it with its args.
                command: ['/bin/sh', '-c', `export ${exports} && exec /bin/kube-loxilb "$@"`, 'kube-loxilb'],
                args,
                env: token.variables.map((v) => ({ name: v.expiry, value: String(KUBE_LOXILB_TOKEN_LIFETIME_SECONDS) })),
                volumeMounts: [{ name: 'api-token', mountPath: tokenDir, readOnly: true }],
                resources: { requests: { cpu: '100m', memory: '50Mi' }, limits: { cpu: '100m', memory: '100Mi' } },
                // External mode only calls the agents' API: none of the privileges upstream grants for in-cluster mode.
                securityContext: hardened,
              },
            ],
          },
        },
      },
    },
  ];
}

/** The managed node group's AMI type for a node OS and an instance architecture. */
export function nodegroupAmiType(os: NodeOs, arch: ec2.InstanceArchitecture): eks.NodegroupAmiType {
  const arm = arch === ec2.InstanceArchitecture.ARM_64;
  if (os === 'bottlerocket') return arm ? eks.NodegroupAmiType.BOTTLEROCKET_ARM_64 : eks.NodegroupAmiType.BOTTLEROCKET_X86_64;
  return arm ? eks.NodegroupAmiType.AL2023_ARM_64_STANDARD : eks.NodegroupAmiType.AL2023_X86_64_STANDARD;
}
