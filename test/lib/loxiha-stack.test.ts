import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { AGENT_ENTRY_ALIAS, ALARM_KIND, EIP_CLAIM_RESOURCE_TYPE, FUNCTION_ENV, PORTS, ROLLOUT_RESOURCE_TYPE, ROTATION_ENV, SECRET_KIND, slotGroupName, TAG, alarmName, namePrefix } from '../../lib/contract.ts';
import { lbInstanceIp } from '../../lib/topology.ts';
import { RECORDED_AMI, synthStack, type SynthResult } from '../helpers/stack.ts';

type Resources = Record<string, { Type: string; Properties?: Record<string, any>; DependsOn?: string[]; CreationPolicy?: any; UpdatePolicy?: any }>;

let s: SynthResult;
let resources: Resources;
const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
/** The deployment's EIP: by default the claim that finds or allocates it (kept on destroy). */
const ourEip = () => ofType(EIP_CLAIM_RESOURCE_TYPE)[0]!;

beforeAll(() => {
  s = synthStack();
  resources = s.template.toJSON().Resources as Resources;
});

describe('LB slots', () => {
  const groups = () => ofType('AWS::AutoScaling::AutoScalingGroup');
  const slotInterfaces = () => ofType('AWS::EC2::NetworkInterface').filter(([, r]) => r.Properties!.Tags?.some((t: any) => t.Key === TAG.role && t.Value === 'slot-interface'));
  const templateOf = (group: any) => resources[group.Properties.LaunchTemplate.LaunchTemplateId.Ref]!;
  const userDataOf = (group: any) => JSON.stringify(templateOf(group).Properties!.LaunchTemplateData.UserData);
  const tagsOf = (tags: any[]) => Object.fromEntries(tags.map((t: any) => [t.Key, t.Value]));

  it('keeps each slot’s identity in an interface of its own: the fixed IP, source/dest check off, tagged with its slot, in its AZ’s subnet', () => {
    const enis = slotInterfaces();
    expect(enis).toHaveLength(2);
    expect(enis.map(([, r]) => r.Properties!.PrivateIpAddresses)).toEqual([
      [{ PrivateIpAddress: lbInstanceIp(s.config, 0), Primary: true }],
      [{ PrivateIpAddress: lbInstanceIp(s.config, 1), Primary: true }],
    ]);
    for (const [, r] of enis) expect(r.Properties!.SourceDestCheck).toBe(false);
    expect(enis.map(([, r]) => tagsOf(r.Properties!.Tags)[TAG.instanceIndex])).toEqual(['0', '1']);
    expect(enis.map(([, r]) => JSON.stringify(r.Properties!.SubnetId))).toEqual([expect.stringContaining('LbSubnet0'), expect.stringContaining('LbSubnet1')]);
    // No plain instances: the platform replaces them, not CloudFormation.
    expect(ofType('AWS::EC2::Instance')).toEqual([]);
  });

  it('serves each slot with an Auto Scaling group of one in its AZ’s subnet, named for the slot, launched only after every slot’s address is taken', () => {
    const gs = groups();
    expect(gs).toHaveLength(2);
    gs.forEach(([, g], i) => {
      expect(g.Properties).toMatchObject({ MinSize: '1', MaxSize: '1', AutoScalingGroupName: slotGroupName(s.config.deploymentId, i), HealthCheckType: 'EC2' });
      expect(JSON.stringify(g.Properties!.VPCZoneIdentifier)).toContain(`LbSubnet${i}`);
      for (const [eniId] of slotInterfaces()) expect(g.DependsOn).toContain(eniId);
    });
  });

  it('creates a slot only once its instance signals ready; a changed template is rolled out by the rollout resource, not by CloudFormation replacing groups in a fixed order', () => {
    const [[id0, g0], [id1, g1]] = groups() as [[string, any], [string, any]];
    expect(g0.DependsOn ?? []).not.toContain(id1);
    expect(g1.DependsOn ?? []).not.toContain(id0);
    for (const [, g] of groups() as [string, any][]) {
      expect(g.CreationPolicy).toEqual({ ResourceSignal: { Count: 1, Timeout: 'PT15M' } });
      // No AutoScalingRollingUpdate: its order would be fixed at synth, and the VIP would move twice whenever it sits on the slot replaced first.
      expect(g.UpdatePolicy?.AutoScalingRollingUpdate).toBeUndefined();
      expect(g.UpdatePolicy?.AutoScalingReplacingUpdate).toBeUndefined();
    }
    const rollouts = ofType(ROLLOUT_RESOURCE_TYPE);
    expect(rollouts).toHaveLength(1);
    const [, rollout] = rollouts[0]! as [string, any];
    // Every slot's template version is a property: a deploy that changes any makes CloudFormation update the resource (a rollout).
    const templates = JSON.stringify(rollout.Properties.templates);
    for (const [tid] of ofType('AWS::EC2::LaunchTemplate')) expect(templates).toContain(`"${tid}","LatestVersionNumber"`);
    const [lifecycleId] = ofType('Custom::LoxihaLifecycle')[0]!;
    expect(rollout.DependsOn).toContain(lifecycleId);
    // The provider framework polls the failover function itself (onEvent and isComplete).
    const [fnId] = ofType('AWS::Lambda::Function').find(([id]) => id.startsWith('FailoverFn'))!;
    const framework = ofType('AWS::Lambda::Function').filter(([id]) => /RolloutProviderframework(onEvent|isComplete)/.test(id));
    expect(framework).toHaveLength(2);
    for (const [, f] of framework) expect(JSON.stringify(f.Properties!.Environment)).toContain(fnId);
  });

  it('hooks every launch and termination to the function from the group’s creation, with the slot in the metadata', () => {
    groups().forEach(([, g], i) => {
      const hooks = g.Properties!.LifecycleHookSpecificationList as any[];
      expect(hooks.map((h) => [h.LifecycleHookName, h.LifecycleTransition, h.DefaultResult])).toEqual([
        ['loxiha-launching', 'autoscaling:EC2_INSTANCE_LAUNCHING', 'ABANDON'],
        ['loxiha-terminating', 'autoscaling:EC2_INSTANCE_TERMINATING', 'CONTINUE'],
      ]);
      for (const h of hooks) expect(JSON.parse(h.NotificationMetadata)).toEqual({ deployment: s.config.deploymentId, slot: i });
    });
    const [ruleId, rule] = ofType('AWS::Events::Rule').find(([, r]) => r.Properties!.EventPattern?.source?.[0] === 'aws.autoscaling')!;
    expect(rule.Properties!.EventPattern).toEqual({
      source: ['aws.autoscaling'],
      'detail-type': ['EC2 Instance-launch Lifecycle Action', 'EC2 Instance-terminate Lifecycle Action'],
      detail: { AutoScalingGroupName: [slotGroupName(s.config.deploymentId, 0), slotGroupName(s.config.deploymentId, 1)] },
    });
    expect(JSON.stringify(rule.Properties!.Targets)).toMatch(/FailoverFn/);
    for (const [, g] of groups()) expect(g.DependsOn).toContain(ruleId);
  });

  it('pins the image: the configured AMI, or the one recorded in cdk.context.json at the first synth', () => {
    for (const [, g] of groups()) expect(templateOf(g).Properties!.LaunchTemplateData.ImageId).toBe('ami-0123456789abcdef0');
    const prod = synthStack({}, 'production');
    const prodTemplates = Object.values(prod.template.findResources('AWS::EC2::LaunchTemplate')) as any[];
    expect(prodTemplates.map((t) => t.Properties.LaunchTemplateData.ImageId)).toEqual([RECORDED_AMI, RECORDED_AMI]);
  });

  it('requires IMDSv2 and leaves the launch templates’ names to CloudFormation, so two deployments in a region do not collide', () => {
    for (const [, g] of groups()) {
      expect(templateOf(g).Properties!.LaunchTemplateData.MetadataOptions.HttpTokens).toBe('required');
      expect(templateOf(g).Properties!.LaunchTemplateName).toBeUndefined();
    }
  });

  it('tags each slot’s instances with the deployment, their role and the slot', () => {
    groups().forEach(([, g], i) => {
      const tags = g.Properties!.Tags as any[];
      for (const t of tags) expect(t.PropagateAtLaunch).toBe(true);
      expect(tagsOf(tags)).toMatchObject({ [TAG.deployment]: s.config.deploymentId, [TAG.role]: 'lb-instance', [TAG.instanceIndex]: String(i) });
    });
  });

  it('installs the agent as a systemd service on Node 24 with its config, once the slot’s address is there, and signals when ready', () => {
    const [, g] = groups()[0]!;
    const userData = userDataOf(g);
    expect(userData).toContain('dnf install -y nodejs24');
    expect(userData).toContain('/usr/bin/node-24');
    expect(userData).toContain('loxiha-agent.service');
    // Forwarding survives a reboot: the prerequisites are written to sysctl.d, not only set once.
    expect(userData).toContain("printf 'net.ipv4.ip_forward = 1\\\\nnet.netfilter.nf_conntrack_tcp_loose = 1\\\\n' > /etc/sysctl.d/90-loxiha.conf");
    expect(userData).toContain('/opt/loxiha/cli.mjs');
    expect(userData).toContain(`\\"vip\\":\\"${s.config.vip}\\"`);
    expect(userData).toContain(`grep -q \\" ${lbInstanceIp(s.config, 0)}/\\"`);
    expect(userData).toMatch(/loxiha wait-ready --timeout \d+/);
    expect(userData).toMatch(/aws cloudformation signal-resource .*--logical-resource-id LbSlot0ASG[0-9A-F]+ --unique-id \\"\$INSTANCE_ID\\" --status SUCCESS/);
    expect(userData).toMatch(/trap '.*--status FAILURE \|\| true' ERR/);
    // A later instance of the slot has nobody waiting for its signal: the refusal is not an error.
    expect(userData).toMatch(/--status SUCCESS \|\| echo/);
  });

  it('fetches the API token at boot into a root-only file the agent requires, without the token in the template', () => {
    const [tokenId] = ofType('AWS::SecretsManager::Secret').find(([, r]) => /LoxiLB API/.test(r.Properties!.Description))!;
    for (const [, g] of groups()) {
      const userData = userDataOf(g);
      expect(userData).toMatch(/umask 077 && aws secretsmanager get-secret-value --region .* --secret-id .*--query SecretString --output text > \/etc\/loxiha\/api-token/);
      expect(userData).toContain(`{\"Ref\":\"${tokenId}\"}`);
      expect(userData).toContain('\\"tokenFile\\":\\"/etc/loxiha/api-token\\"');
      // The peers' key too (peer heartbeats, the fast path, session sync).
      expect(userData).toMatch(/umask 077 && aws secretsmanager get-secret-value --region .* --secret-id .*--query SecretString --output text > \/etc\/loxiha\/sync-key/);
      expect(userData).toContain('\\"secretFile\\":\\"/etc/loxiha/sync-key\\"');
    }
    expect(JSON.stringify(s.template.toJSON())).not.toMatch(/SecretString\W*:\W*"[A-Za-z0-9]{48}"/);
  });

  it('has each agent follow both secrets from Secrets Manager (their ARNs in its config)', () => {
    const ids = ofType('AWS::SecretsManager::Secret').map(([id]) => id);
    for (const [, g] of groups()) {
      const userData = userDataOf(g);
      expect(userData).toContain('\\"secrets\\":{\\"apiToken\\":\\"');
      expect(userData).toContain('\\"syncKey\\":\\"');
      for (const id of ids) expect(userData).toContain(`{\"Ref\":\"${id}\"}`);
    }
  });
});

describe('secret rotation', () => {
  const secrets = () => ofType('AWS::SecretsManager::Secret');
  const rotationFn = () => ofType('AWS::Lambda::Function').find(([, f]) => f.Properties!.Environment?.Variables?.[ROTATION_ENV.slotGroups])!;

  it('rotates both secrets on the configured schedule with one function, not at deploy, each tagged with the deployment and which secret it is', () => {
    const [fnId, fn] = rotationFn();
    expect(fn.Properties!.Runtime).toBe('nodejs24.x');
    expect(fn.Properties!.Environment.Variables[ROTATION_ENV.slotGroups]).toBe([0, 1].map((i) => slotGroupName(s.config.deploymentId, i)).join(','));
    const schedules = ofType('AWS::SecretsManager::RotationSchedule');
    expect(schedules).toHaveLength(2);
    const kinds = new Set<string>();
    for (const [, sched] of schedules) {
      expect(sched.Properties).toMatchObject({ RotationLambdaARN: { 'Fn::GetAtt': [fnId, 'Arn'] }, RotationRules: { ScheduleExpression: `rate(${s.config.secretRotationDays} days)` }, RotateImmediatelyOnUpdate: false });
      const [, secret] = secrets().find(([id]) => id === sched.Properties!.SecretId.Ref)!;
      const tags = Object.fromEntries(secret.Properties!.Tags.map((t: any) => [t.Key, t.Value]));
      expect(tags[TAG.deployment]).toBe(s.config.deploymentId);
      kinds.add(tags[TAG.secret]);
    }
    expect(kinds).toEqual(new Set(Object.values(SECRET_KIND)));
  });

  it('lets the function write only these two secrets, and read the slot groups and the agents’ reports', () => {
    const [fnId, fn] = rotationFn();
    const roleId = fn.Properties!.Role['Fn::GetAtt'][0];
    const statements = ofType('AWS::IAM::Policy')
      .filter(([, p]) => p.Properties!.Roles.some((r: any) => r.Ref === roleId))
      .flatMap(([, p]) => p.Properties!.PolicyDocument.Statement);
    const actions = statements.flatMap((st: any) => [st.Action].flat());
    expect(new Set(actions)).toEqual(new Set(['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue', 'secretsmanager:PutSecretValue', 'secretsmanager:UpdateSecretVersionStage', 'secretsmanager:GetRandomPassword', 'autoscaling:DescribeAutoScalingGroups', 'cloudwatch:GetMetricData']));
    for (const st of statements.filter((x: any) => [x.Action].flat().includes('secretsmanager:PutSecretValue'))) {
      const ids = JSON.stringify(st.Resource);
      expect(secrets().some(([id]) => ids.includes(id)), JSON.stringify(st.Resource)).toBe(true);
    }
    // Secrets Manager may invoke it (the schedule's permission), nothing else is given it.
    const perms = ofType('AWS::Lambda::Permission').filter(([, p]) => JSON.stringify(p.Properties!.FunctionName).includes(fnId));
    expect(perms.map(([, p]) => p.Properties!.Principal)).toEqual(['secretsmanager.amazonaws.com']);
  });

});

describe('security groups', () => {
  const ingress = () => ofType('AWS::EC2::SecurityGroupIngress').map(([, r]) => r.Properties!);

  it('opens the service ports to the client prefixes', () => {
    const sg = ofType('AWS::EC2::SecurityGroup').find(([, r]) => String(r.Properties!.GroupDescription).includes('load-balancer'))!;
    const rules = sg[1].Properties!.SecurityGroupIngress as any[];
    for (const sp of s.config.servicePorts) {
      expect(rules).toContainEqual(expect.objectContaining({ FromPort: sp.port, ToPort: sp.port, IpProtocol: sp.protocol, CidrIp: s.config.clientCidrs[0] }));
    }
    expect(rules.every((r) => r.FromPort !== PORTS.agentApi)).toBe(true);
  });

  it('opens the agent API only to the EKS nodes and sync/heartbeat only to the peers', () => {
    const api = ingress().filter((r) => r.FromPort === PORTS.agentApi);
    expect(api).toHaveLength(1);
    expect(JSON.stringify(api[0]!.SourceSecurityGroupId)).toContain('ClusterSecurityGroupId');
    for (const [port, proto] of [[PORTS.peerSync, 'tcp'], [PORTS.peerHeartbeat, 'udp']] as const) {
      const rules = ingress().filter((r) => r.FromPort === port);
      expect(rules).toHaveLength(1);
      expect(rules[0]!.IpProtocol).toBe(proto);
      expect(rules[0]!.SourceSecurityGroupId).toEqual(rules[0]!.GroupId);
    }
  });

  it('admits the endpoints’ packets to the VIP by rule (synced flows reach a new loxi-eni mid-stream), from the EKS nodes only', () => {
    for (const proto of ['tcp', 'udp']) {
      const rules = ingress().filter((r) => r.IpProtocol === proto && r.FromPort === 0 && r.ToPort === 65535);
      expect(rules).toHaveLength(1);
      expect(JSON.stringify(rules[0]!.SourceSecurityGroupId)).toContain('ClusterSecurityGroupId');
      expect(rules[0]!.CidrIp).toBeUndefined();
    }
  });

  it('lets the load balancers reach the NodePorts: the nodes’ security group admits the LB group on 30000–32767 (TCP and UDP), nothing wider', () => {
    const toNodes = ingress().filter((r) => JSON.stringify(r.GroupId).includes('ClusterSecurityGroupId'));
    expect(toNodes.map((r) => [r.IpProtocol, r.FromPort, r.ToPort]).sort()).toEqual([
      ['tcp', 30000, 32767],
      ['udp', 30000, 32767],
    ]);
    for (const r of toNodes) {
      expect(JSON.stringify(r.SourceSecurityGroupId)).toMatch(/LbSecuritySg/);
      expect(r.CidrIp).toBeUndefined();
    }
  });
});

describe('network', () => {
  it('creates public LB subnets routed to the internet gateway', () => {
    for (const cidr of s.config.lbSubnetCidrs) {
      s.template.hasResourceProperties('AWS::EC2::Subnet', { CidrBlock: cidr, MapPublicIpOnLaunch: true });
    }
  });

  it('prepares the floating route table (default route to the IGW) without associating it', () => {
    const [rtId] = ofType('AWS::EC2::RouteTable').find(([, r]) => r.Properties!.Tags?.some((t: any) => t.Value === 'floating-route-table'))!;
    s.template.hasResourceProperties('AWS::EC2::Route', { RouteTableId: { Ref: rtId }, DestinationCidrBlock: '0.0.0.0/0', GatewayId: Match.anyValue() });
    const associated = ofType('AWS::EC2::SubnetRouteTableAssociation').some(([, r]) => r.Properties!.RouteTableId?.Ref === rtId);
    expect(associated).toBe(false);
    // The floating subnet is the orchestrator's: CDK never creates a subnet in the cloud CIDR block.
    expect(ofType('AWS::EC2::Subnet').some(([, r]) => r.Properties!.CidrBlock === s.config.cloudCidrBlock)).toBe(false);
  });

  it('does not associate the cloud block when the VPC CIDR already holds it', () => {
    expect(ofType('AWS::EC2::VPCCidrBlock')).toHaveLength(0);
  });
});

describe('failover wiring', () => {
  it('runs the function on nodejs24.x / arm64 with the deployment in its environment', () => {
    s.template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs24.x',
      Architectures: ['arm64'],
      Environment: { Variables: Match.objectLike({ [FUNCTION_ENV.deploymentId]: s.config.deploymentId, [FUNCTION_ENV.vip]: s.config.vip }) },
    });
  });

  it('has per-slot heartbeat and status-check alarms (following the slot, not an instance id): 10 s period, missing data breaching, acting on the function', () => {
    for (const index of [0, 1]) {
      s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        AlarmName: alarmName(s.config.deploymentId, index, ALARM_KIND.heartbeat),
        Period: 10,
        // "Heartbeat missing for 2 of 3 ten-second periods", as the README says (literal: not read from the config under test).
        EvaluationPeriods: 3,
        DatapointsToAlarm: 2,
        TreatMissingData: 'breaching',
        MetricName: 'AgentHeartbeat',
        Dimensions: [{ Name: 'Deployment', Value: s.config.deploymentId }, { Name: 'Slot', Value: String(index) }],
        AlarmActions: [Match.objectLike({ 'Fn::GetAtt': [Match.stringLikeRegexp('^FailoverFn'), 'Arn'] })],
        OKActions: [Match.anyValue()],
      });
      s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        AlarmName: alarmName(s.config.deploymentId, index, ALARM_KIND.statusCheck),
        MetricName: 'StatusCheckFailed',
        Dimensions: [{ Name: 'AutoScalingGroupName', Value: slotGroupName(s.config.deploymentId, index) }],
        TreatMissingData: 'breaching',
      });
    }
    s.template.hasResourceProperties('AWS::Lambda::Permission', { Principal: 'lambda.alarms.cloudwatch.amazonaws.com' });
  });

  it('tells operators when a slot’s services differ from the owner’s for 3 minutes: ServicesMatch per slot, missing data not breaching, acting on the function (ALARM and OK)', () => {
    for (const index of [0, 1]) {
      s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        AlarmName: alarmName(s.config.deploymentId, index, ALARM_KIND.servicesDiffer),
        MetricName: 'ServicesMatch',
        Namespace: 'Loxiha',
        Statistic: 'Minimum',
        Period: 60,
        EvaluationPeriods: 3,
        DatapointsToAlarm: 3,
        Threshold: 1,
        ComparisonOperator: 'LessThanThreshold',
        TreatMissingData: 'notBreaching',
        Dimensions: [{ Name: 'Deployment', Value: s.config.deploymentId }, { Name: 'Slot', Value: String(index) }],
        AlarmActions: [Match.objectLike({ 'Fn::GetAtt': [Match.stringLikeRegexp('^FailoverFn'), 'Arn'] })],
        OKActions: [Match.objectLike({ 'Fn::GetAtt': [Match.stringLikeRegexp('^FailoverFn'), 'Arn'] })],
      });
    }
  });

  it('provisions the lease table, the topic, the dashboard and the reconcile schedule', () => {
    s.template.hasResourceProperties('AWS::DynamoDB::GlobalTable', { KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }] });
    s.template.resourceCountIs('AWS::SNS::Topic', 1);
    s.template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    s.template.hasResourceProperties('AWS::Events::Rule', {
      // The README's "5-minute reconcile" (literal: not read from the config under test).
      ScheduleExpression: 'rate(5 minutes)',
      Targets: [Match.objectLike({ Input: JSON.stringify({ action: 'reconcile', trigger: 'schedule' }) })],
    });
  });

  it('reconciles at every deploy: the lifecycle custom resource carries the synth time, so CloudFormation sends it Update each time', () => {
    const [, lifecycle] = ofType('Custom::LoxihaLifecycle')[0]!;
    const at = Date.parse(lifecycle.Properties!.synthesizedAt);
    expect(Date.now() - at).toBeGreaterThanOrEqual(0);
    expect(Date.now() - at).toBeLessThan(10 * 60_000);
  });

  it('runs the lifecycle custom resource last: after the slots and the floating route table', () => {
    const [, lifecycle] = ofType('Custom::LoxihaLifecycle')[0]!;
    const deps = lifecycle.DependsOn ?? [];
    const groupIds = ofType('AWS::AutoScaling::AutoScalingGroup').map(([id]) => id);
    expect(groupIds).toHaveLength(2);
    for (const id of groupIds) expect(deps).toContain(id);
    const [rtId] = ofType('AWS::EC2::RouteTable').find(([, r]) => r.Properties!.Tags?.some((t: any) => t.Value === 'floating-route-table'))!;
    expect(deps).toContain(rtId);
  });

  it('deletes the schedule and every alarm before the lifecycle teardown runs (they depend on it); the slots’ lifecycle actions outlive the groups', () => {
    const [lifecycleId] = ofType('Custom::LoxihaLifecycle')[0]!;
    const isLifecycleActions = ([, r]: [string, any]) => r.Properties?.EventPattern?.source?.[0] === 'aws.autoscaling';
    const triggers = [...ofType('AWS::Events::Rule').filter((e) => !isLifecycleActions(e)), ...ofType('AWS::CloudWatch::Alarm')];
    expect(triggers.length).toBeGreaterThanOrEqual(5);
    for (const [id, r] of triggers) expect(r.DependsOn ?? [], id).toContain(lifecycleId);
    // The groups go after the teardown and before the rule that hands their instances' terminations to the
    // function (which, torn down, lets them go at once): no instance waits for a hook nobody answers.
    const [ruleId] = ofType('AWS::Events::Rule').find(isLifecycleActions)!;
    for (const [id, g] of ofType('AWS::AutoScaling::AutoScalingGroup')) {
      expect(g.DependsOn, id).toContain(ruleId);
      expect(resources[lifecycleId]!.DependsOn).toContain(id);
    }
  });
});

describe('kube-loxilb', () => {
  it('authenticates to the agents: token fetched through Pod Identity, set in the variables kube-loxilb reads', () => {
    const [tokenId] = ofType('AWS::SecretsManager::Secret').find(([, r]) => /LoxiLB API/.test(r.Properties!.Description))!;
    const pod = kubeLoxilbDeployment(resources).spec.template.spec;
    const [init] = pod.initContainers;
    expect(init.env).toContainEqual({ name: 'SECRET_ARN', value: `\${${tokenId}}` });
    expect(init.command.join(' ')).toContain('aws secretsmanager get-secret-value --secret-id "$SECRET_ARN"');
    const main = pod.containers[0];
    const hosts = [0, 1].map((i) => `${lbInstanceIp(s.config, i).replaceAll('.', '_')}_${PORTS.agentApi}`);
    for (const h of hosts) {
      expect(main.command[2]).toContain(`ACCESS_TOKEN_${h}="$(cat /run/loxiha/token)"`);
      // kube-loxilb refreshes five minutes before the lifetime it believes (every minute here), through the
      // agents' oauth path, with a refresh token the agents accept: a rotated token reaches it without a restart.
      expect(main.command[2]).toContain(`REFRESH_TOKEN_${h}="$(cat /run/loxiha/token)"`);
      expect(main.env).toContainEqual({ name: `EXPIRY_TIME_SECONDS_${h}`, value: '360' });
    }
    expect(main.command[2]).toMatch(/exec \/bin\/kube-loxilb "\$@"$/);
    expect(pod.volumes).toEqual([{ name: 'api-token', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } }]);
    // One ServiceAccount (the Pod Identity one), associated with a role that may read only the token.
    expect(kubernetesObjects(resources).filter((o) => o.kind === 'ServiceAccount' && o.metadata.name === 'kube-loxilb')).toHaveLength(1);
    const [, association] = ofType('AWS::EKS::PodIdentityAssociation')[0]!;
    expect(association.Properties).toMatchObject({ Namespace: 'kube-system', ServiceAccount: 'kube-loxilb' });
    const roleId = association.Properties!.RoleArn['Fn::GetAtt'][0];
    const policies = ofType('AWS::IAM::Policy').filter(([, p]) => p.Properties!.Roles.some((r: any) => r.Ref === roleId));
    const granted = policies.flatMap(([, p]) => p.Properties!.PolicyDocument.Statement);
    expect(granted.flatMap((st: any) => [st.Action].flat()).sort()).toEqual(['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue']);
    expect(granted.map((st: any) => st.Resource)).toEqual([{ Ref: tokenId }]);
  });

  it('gets args resolved to the LB instances, the EIP and the VIP, without role election', () => {
    const args = kubeLoxilbArgs(resources);
    const ips = [lbInstanceIp(s.config, 0), lbInstanceIp(s.config, 1)];
    const [eipId] = ourEip();
    const deployment = kubeLoxilbDeployment(resources);
    expect(deployment.spec.template.spec.hostNetwork).toBe(true);
    expect(args).toEqual([
      `--loxiURL=http://${ips[0]}:${PORTS.agentApi},http://${ips[1]}:${PORTS.agentApi}`,
      `--externalCIDR=\${${eipId}.PublicIp}/32`,
      `--privateCIDR=${s.config.vip}/32`,
      '--setLBMode=2',
    ]);
  });
});

describe('IAM', () => {
  const statements = () =>
    ofType('AWS::IAM::Policy').flatMap(([id, r]) => (r.Properties!.PolicyDocument.Statement as any[]).map((st) => ({ id, ...st })));
  const actionsOf = (st: any): string[] => [st.Action].flat();

  it('has no wildcard actions anywhere', () => {
    for (const st of statements()) {
      for (const a of actionsOf(st)) {
        expect(a, `${st.id}`).not.toBe('*');
        expect(a, `${st.id}`).not.toMatch(/^[a-z0-9-]+:\*$/);
      }
    }
  });

  it('limits the function’s EC2 mutations to this deployment’s tags, the one route table and the one EIP', () => {
    const fnStatements = statements().filter((st) => st.id.startsWith('FailoverFnServiceRoleDefaultPolicy'));
    const mutating = fnStatements.filter((st) => actionsOf(st).some((a) => /^ec2:(Delete|Attach|Detach|Modify|Disassociate)/.test(a)));
    expect(mutating.length).toBeGreaterThan(0);
    const tagged = mutating.filter((x) => x.Sid === 'MutateOwnTaggedResources');
    // The statement must exist under that name: a renamed one would make the loop below check nothing.
    expect(tagged.length).toBeGreaterThan(0);
    for (const st of tagged) {
      expect(st.Condition.StringEquals[`aws:ResourceTag/${TAG.deployment}`]).toBe(s.config.deploymentId);
    }
    const eip = fnStatements.find((st) => st.Sid === 'MoveTheOneEip');
    expect(eip, 'the MoveTheOneEip statement').toBeDefined();
    const [eipId] = ourEip();
    expect(JSON.stringify(eip!.Resource)).toContain(eipId);
    expect(JSON.stringify(eip!.Resource)).toContain('elastic-ip/');
    const unconditioned = fnStatements.filter((st) => !st.Condition && actionsOf(st).some((a) => /^ec2:(Delete|Attach|Detach|Modify)/.test(a)));
    expect(unconditioned).toEqual([]);
  });

  it('gives the agent only heartbeats in its namespace, the fast path, describing ENIs, its readiness signal to this stack, its own log group and a Session Manager channel', () => {
    const agent = statements().filter((st) => st.id.startsWith('LbRoleDefaultPolicy'));
    const actions = [...new Set(agent.flatMap(actionsOf))].sort();
    expect(actions).toEqual(
      [
        'cloudformation:SignalResource',
        'cloudwatch:PutMetricData',
        'ec2:DescribeNetworkInterfaces',
        'lambda:InvokeFunction',
        'logs:CreateLogStream',
        'logs:PutLogEvents',
        's3:GetObject',
        'secretsmanager:DescribeSecret',
        'secretsmanager:GetSecretValue',
        'ssm:UpdateInstanceInformation',
        'ssmmessages:CreateControlChannel',
        'ssmmessages:CreateDataChannel',
        'ssmmessages:OpenControlChannel',
        'ssmmessages:OpenDataChannel',
      ].sort(),
    );
    // Logs into the agents' group only.
    const [agentLogsId] = ofType('AWS::Logs::LogGroup').find(([, r]) => r.Properties!.LogGroupName === `/loxiha/${s.config.deploymentId}/agent`)!;
    expect(JSON.stringify(agent.find((st) => actionsOf(st).includes('logs:PutLogEvents'))!.Resource)).toContain(agentLogsId);
    // No SSH: no key pair, and no rule opens port 22.
    for (const [, t] of ofType('AWS::EC2::LaunchTemplate')) expect(t.Properties!.LaunchTemplateData.KeyName).toBeUndefined();
    expect(JSON.stringify(s.template.toJSON())).not.toMatch(/"FromPort":\s*22\b/);
    expect(agent.find((st) => actionsOf(st).includes('cloudformation:SignalResource'))!.Resource).toEqual({ Ref: 'AWS::StackId' });
    // Secrets: the peer key and the API token, nothing else.
    const secretIds = Object.entries(resources).filter(([, r]) => r.Type === 'AWS::SecretsManager::Secret').map(([id]) => id).sort();
    const read = agent.filter((st) => actionsOf(st).includes('secretsmanager:GetSecretValue')).flatMap((st) => [st.Resource].flat().map((x: any) => x.Ref)).sort();
    expect(read).toEqual(secretIds);
    expect(secretIds).toHaveLength(2);
    expect(agent.find((st) => actionsOf(st).includes('cloudwatch:PutMetricData'))!.Condition).toEqual({ StringEquals: { 'cloudwatch:namespace': 'Loxiha' } });
  });

  it('runs the EKS nodes on an AMI type EKS publishes node images of for the configured Kubernetes version (no Amazon Linux 2 after 1.32)', () => {
    const groups = ofType('AWS::EKS::Nodegroup');
    expect(groups).toHaveLength(1);
    const version = Number(s.config.eks && 'version' in s.config.eks ? s.config.eks.version.split('.')[1] : NaN);
    for (const [, g] of groups) {
      const ami = g.Properties!.AmiType as string;
      // EKS's published node AMI families: AL2_* up to 1.32; AL2023_* and BOTTLEROCKET_* for current versions.
      const published = ami.startsWith('AL2_') ? version <= 32 : ami.startsWith('AL2023_') || ami.startsWith('BOTTLEROCKET_');
      expect(published, `${ami} on Kubernetes 1.${version}`).toBe(true);
      expect(ami).toBe('AL2023_x86_64_STANDARD');
      expect(g.Properties!.ScalingConfig).toEqual({ DesiredSize: 2, MinSize: 2, MaxSize: 2 });
    }
  });

  it('lets the LB instances invoke the agents’ entry of the failover function and nothing else: not the function itself, no other alias or version', () => {
    const aliases = ofType('AWS::Lambda::Alias');
    expect(aliases).toHaveLength(1);
    const [aliasId, alias] = aliases[0]!;
    expect(alias.Properties!.Name).toBe(AGENT_ENTRY_ALIAS);
    const [fnId] = ofType('AWS::Lambda::Function').find(([id]) => id.startsWith('FailoverFn'))!;
    const versionIds = ofType('AWS::Lambda::Version').map(([id]) => id);
    const onFailover = (st: any) => [fnId, aliasId, ...versionIds].some((id) => JSON.stringify(st.Resource).includes(id));
    const invoking = statements().filter((st) => actionsOf(st).some((a) => a.startsWith('lambda:')) && onFailover(st));
    // Of every role in the stack, only the instances' may invoke the failover function, and only through that alias (a Ref to an alias is its ARN),
    // besides CloudFormation's provider framework for the rollout resource (its functions run for CloudFormation only).
    const framework = /^WiringRolloutProviderframework(onEvent|isComplete|onTimeout)ServiceRoleDefaultPolicy$/;
    expect(invoking.map((st) => st.id.replace(/[0-9A-F]{8}$/, '')).filter((id) => !framework.test(id))).toEqual(['LbRoleDefaultPolicy']);
    const lb = invoking.find((st) => st.id.startsWith('LbRoleDefaultPolicy'))!;
    expect(actionsOf(lb)).toEqual(['lambda:InvokeFunction']);
    expect(lb.Resource).toEqual({ Ref: aliasId });
    // The agents are configured to call that alias, not the function.
    const userData = JSON.stringify(ofType('AWS::EC2::LaunchTemplate').map(([, r]) => r.Properties!.LaunchTemplateData.UserData));
    expect(userData).toContain(aliasId);
  });
});

describe('operability: a shell and logs, as deployed', () => {
  it('ships the agent’s JSON lines to the deployment’s log group, a stream per slot and instance, kept logRetentionDays', () => {
    const [, group] = ofType('AWS::Logs::LogGroup').find(([, r]) => r.Properties!.LogGroupName === `/loxiha/${s.config.deploymentId}/agent`)!;
    expect(group.Properties!.RetentionInDays).toBe(30);
    const userData = JSON.stringify(ofType('AWS::EC2::LaunchTemplate').map(([, r]) => r.Properties!.LaunchTemplateData.UserData));
    expect(userData).toContain('StandardOutput=append:/var/log/loxiha/agent.log');
    expect(userData).toContain('amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:/opt/aws/amazon-cloudwatch-agent/etc/loxiha.json');
    expect(userData).toContain('\\"log_stream_name\\":\\"slot0/{instance_id}\\"');
    expect(userData).toContain('\\"log_stream_name\\":\\"slot1/{instance_id}\\"');
    expect(userData).toContain('/etc/logrotate.d/loxiha');
    // The function's logs keep the same retention.
    const fnLogs = ofType('AWS::Logs::LogGroup').filter(([id]) => id.startsWith('FailoverLogs'));
    expect(fnLogs.map(([, r]) => r.Properties!.RetentionInDays)).toEqual([30]);
  });

  it('keeps the EKS control plane’s logs logRetentionDays and removes them at cdk destroy', () => {
    const [, retention] = ofType('Custom::LogRetention')[0]!;
    expect(retention.Properties!.RetentionInDays).toBe(30);
    expect(JSON.stringify(retention.Properties!.LogGroupName)).toMatch(/\/aws\/eks\/.*\/cluster/);
    expect(retention.Properties!.RemovalPolicy).toBe('destroy');
    const other = synthStack({ logRetentionDays: 90 });
    expect(Object.values(other.template.findResources('Custom::LogRetention')).map((r: any) => r.Properties.RetentionInDays)).toEqual([90]);
  });

  it('outputs a Session Manager command per slot (whichever instance serves it) and the agents’ log group', () => {
    const outputs = s.template.toJSON().Outputs as Record<string, { Value: unknown }>;
    for (const i of [0, 1]) {
      expect(JSON.stringify(outputs[`SessionCommandSlot${i}`]!.Value)).toContain(`aws ssm start-session --region us-east-1 --target \\\"$(aws autoscaling describe-auto-scaling-groups --region us-east-1 --auto-scaling-group-names ${slotGroupName(s.config.deploymentId, i)} --query 'AutoScalingGroups[0].Instances[0].InstanceId' --output text)\\\"`);
    }
    const [agentLogsId] = ofType('AWS::Logs::LogGroup').find(([, r]) => r.Properties!.LogGroupName === `/loxiha/${s.config.deploymentId}/agent`)!;
    expect(outputs.AgentLogGroup!.Value).toEqual({ Ref: agentLogsId });
  });
});

describe('day one: access, names, outputs, uninstall', () => {
  it('gives the configured admin principals cluster-admin access entries', () => {
    const alt = synthStack({ adminPrincipalArns: ['arn:aws:iam::111111111111:role/ops', 'arn:aws:iam::111111111111:user/alice'] });
    const entries = Object.values(alt.template.findResources('AWS::EKS::AccessEntry')).map((r: any) => r.Properties);
    for (const arn of ['arn:aws:iam::111111111111:role/ops', 'arn:aws:iam::111111111111:user/alice']) {
      const e = entries.find((x) => x.PrincipalArn === arn);
      expect(e, arn).toBeDefined();
      expect(JSON.stringify(e.AccessPolicies)).toContain('AmazonEKSClusterAdminPolicy');
    }
  });

  it('names things with the deployment id once: alarms, dashboard', () => {
    const alarms = Object.values(resources).filter((r) => r.Type === 'AWS::CloudWatch::Alarm').map((r) => r.Properties!.AlarmName);
    expect(alarms).toContain('loxiha-sim-lb0-heartbeat');
    expect(alarms.every((n: string) => !n.includes('loxiha-loxiha'))).toBe(true);
    expect(Object.values(resources).find((r) => r.Type === 'AWS::CloudWatch::Dashboard')!.Properties!.DashboardName).toBe('loxiha-sim');
    expect(namePrefix('loxiha')).toBe('loxiha');
    expect(namePrefix('prod')).toBe('loxiha-prod');
  });

  it('outputs the exact commands: kubeconfig, status, plan, failover (with the region), the dashboard, the logs, the topic, and what destroy keeps', () => {
    const outputs = s.template.toJSON().Outputs as Record<string, { Value: unknown }>;
    const text = (k: string) => JSON.stringify(outputs[k]?.Value);
    for (const k of ['KubeconfigCommand', 'StatusCommand', 'PlanCommand', 'FailoverCommand', 'DashboardUrl', 'FunctionLogGroup', 'NotificationTopic', 'RetainedOnDestroy']) expect(outputs[k], k).toBeDefined();
    expect(text('KubeconfigCommand')).toContain('aws eks update-kubeconfig --region us-east-1 --name');
    expect(text('StatusCommand')).toContain('aws lambda invoke --region us-east-1 --function-name');
    expect(text('StatusCommand')).toContain('{\\"action\\":\\"status\\"}');
    expect(text('RetainedOnDestroy')).toContain('aws ec2 release-address --region us-east-1 --allocation-id');
    expect(text('RetainedOnDestroy')).toContain('aws logs delete-log-group --region us-east-1 --log-group-name');
  });

  it('keeps the EIP and the flow logs on destroy by default — the EIP found again by the next install of the same deployment id — and removes them when told', () => {
    const flowLogs = (t: any) => Object.values(t.findResources('AWS::Logs::LogGroup')).filter((r: any) => JSON.stringify(r).includes('731') || r.Properties?.RetentionInDays === 30);
    // Kept: no EIP resource of CloudFormation's (it would release or orphan it), the claim (whose Delete keeps the address) instead.
    expect(ofType('AWS::EC2::EIP').filter(([, r]) => r.Properties!.Tags?.some((t: any) => t.Key === TAG.role))).toEqual([]);
    const [, claim] = ourEip();
    expect(claim.Properties).toMatchObject({ DeploymentId: s.config.deploymentId });
    expect(flowLogs(s.template).some((r: any) => r.DeletionPolicy === 'Retain' && r.Properties.RetentionInDays === 731)).toBe(true);
    const alt = synthStack({ uninstall: { retainEip: false, retainFlowLogs: false, flowLogRetentionDays: 30 } });
    const altEip = Object.values(alt.template.findResources('AWS::EC2::EIP')).find((r: any) => r.Properties.Tags?.some((t: any) => t.Key === TAG.role && t.Value === 'eip')) as any;
    expect(altEip.DeletionPolicy).toBe('Delete');
    expect(Object.values(alt.template.findResources('AWS::Logs::LogGroup')).some((r: any) => r.Properties.RetentionInDays === 30 && r.DeletionPolicy === 'Delete')).toBe(true);
    expect(JSON.stringify((alt.template.toJSON().Outputs as any).RetainedOnDestroy.Value)).toContain('removes everything');
  });
});

describe('alternate configurations', () => {
  it('associates the cloud block with the VPC when it lies outside the VPC CIDR', () => {
    const alt = synthStack({ cloudCidrBlock: '100.65.248.0/24', vip: '100.65.248.254' });
    alt.template.hasResourceProperties('AWS::EC2::VPCCidrBlock', { CidrBlock: '100.65.248.0/24' });
  });

  it('finds or allocates the EIP with a function that may only describe addresses and allocate (and tag) ones tagged as this deployment’s', () => {
    const [, claim] = ourEip();
    const fnId = claim.Properties!.ServiceToken['Fn::GetAtt'][0];
    const roleId = resources[fnId]!.Properties!.Role['Fn::GetAtt'][0];
    const statements = ofType('AWS::IAM::Policy')
      .filter(([, p]) => p.Properties!.Roles.some((r: any) => r.Ref === roleId))
      .flatMap(([, p]) => p.Properties!.PolicyDocument.Statement as any[]);
    expect(statements.map((st) => [st.Action].flat()).flat().sort()).toEqual(['ec2:AllocateAddress', 'ec2:CreateTags', 'ec2:DescribeAddresses']);
    expect(statements.find((st) => st.Action === 'ec2:AllocateAddress').Condition).toEqual({ StringEquals: { [`aws:RequestTag/${TAG.deployment}`]: s.config.deploymentId } });
    expect(statements.find((st) => st.Action === 'ec2:CreateTags').Condition).toEqual({ StringEquals: { 'ec2:CreateAction': 'AllocateAddress' } });
  });

  it('uses an existing EIP allocation instead of allocating one', () => {
    const alt = synthStack({ existingEip: { allocationId: 'eipalloc-0123456789abcdef0', publicIp: '100.100.1.1' } });
    const eips = Object.values(alt.template.toJSON().Resources as Resources).filter((r) => (r.Type === 'AWS::EC2::EIP' && r.Properties!.Tags?.some((t: any) => t.Key === TAG.role)) || r.Type === EIP_CLAIM_RESOURCE_TYPE);
    expect(eips).toEqual([]);
    expect(kubeLoxilbArgs(alt.template.toJSON().Resources as Resources)).toContain('--externalCIDR=100.100.1.1/32');
  });
});

/** Resolves the manifest's Fn::Join (GetAtt → ${Id.Attr}) and returns the kube-loxilb container args. */
function kubeLoxilbArgs(res: Resources): string[] {
  return kubeLoxilbDeployment(res).spec.template.spec.containers[0].args;
}

/** Every Kubernetes object the stack applies, with GetAtt/Ref shown as `${Id.Attr}` / `${Id}`. */
function kubernetesObjects(res: Resources): any[] {
  return Object.values(res)
    .filter((r) => r.Type === 'Custom::AWSCDK-EKS-KubernetesResource')
    .flatMap((r) => {
      const manifest = r.Properties!.Manifest;
      const text =
        typeof manifest === 'string'
          ? manifest
          : (manifest['Fn::Join'][1] as any[]).map((p) => (typeof p === 'string' ? p : p.Ref ? `\${${p.Ref}}` : `\${${p['Fn::GetAtt'][0]}.${p['Fn::GetAtt'][1]}}`)).join('');
      return JSON.parse(text) as any[];
    });
}

function kubeLoxilbDeployment(res: Resources): any {
  return kubernetesObjects(res).find((d) => d.kind === 'Deployment' && d.metadata.name === 'kube-loxilb');
}
