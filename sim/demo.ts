/**
 * The whole multi-AZ failover on one machine (`npm run demo`): AWS from the emulator behind the
 * behaviour layer, seeded as `cdk deploy` leaves it (sim profile); the VPC in namespaces that
 * follow the emulator; the shipped agent bundle on two LB hosts; the failover function's bundle in
 * a local Lambda runtime; real traffic through the EIP; then an LB dies (or is moved away from, as
 * for maintenance) and the run measures what a client saw.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { EC2Client, StartInstancesCommand, StopInstancesCommand } from '@aws-sdk/client-ec2';
import { RotateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { systemClock } from '../lambda/failover/clock.ts';
import { functionEnv, HA_ROLE, ROLLOUT_RESOURCE_TYPE, ROTATION_ENV, SECRET_KIND, type SecretKind, slotGroupName, TAG } from '../lib/contract.ts';
import { agentConfigFor } from '../lib/topology.ts';
import { AgentRunner, BACKEND_PORT, PROGRAMS } from './agents.ts';
import { AlarmEvaluator } from './alarm-evaluator.ts';
import { AwsMirror } from './aws-mirror.ts';
import { AwsProxy, MUTATING, REALISTIC_BEHAVIOUR } from './aws-proxy.ts';
import { FailoverRuntime, type RuntimeLine } from './failover-runtime.ts';
import { finalReport, type FlowsReport, haOf, lostFlows, sleep, whyLost } from './flows.ts';
import { serveImds } from './imds.ts';
import { startMoto, type Moto } from './moto.ts';
import { killAllInNamespace, Lab, type Proc } from './netns.ts';
import { renderReport } from './report-html.ts';
import { SecretRotations } from './secret-rotations.ts';
import type { SlotGroups } from './slot-groups.ts';
import { Timeline } from './timeline.ts';
import { NODES, SimVpc } from './vpc.ts';
import { CREDENTIALS, FAILOVER_FUNCTION_ARN, SIM_EIP, SIM_OVERLAY_VIP, simGroupEip, World } from './world.ts';

export interface DemoOptions {
  /**
   * `unplanned`: lb0 dies. `planned`: a manual move to lb1, as for maintenance of lb0. `terminate`:
   * slot `terminate`'s Auto Scaling group replaces its instance (self-healing, as after a failed
   * status check or an operator's terminate-instance-in-auto-scaling-group). `upgrade`: a deploy
   * changed the slots' launch template; the rollout resource replaces both slots' instances.
   * `reboot`: lb`reboot` reboots (same instance, same disk; its kernel state and runtime sysctls gone).
   * `rotate`: both secrets rotated under traffic — at once, again at once, and while lb1's agent is down.
   */
  mode: 'unplanned' | 'planned' | 'terminate' | 'upgrade' | 'reboot' | 'rotate';
  /** With `terminate`: the slot whose instance is replaced. */
  terminate?: 0 | 1;
  /** With `reboot`: the LB that reboots. */
  reboot?: 0 | 1;
  /** Afterwards, move the VIP back to lb0 (revived first when it died). */
  failback: boolean;
  /** Session sync on (the default) or off, to see what is lost without it. */
  sync: boolean;
  /** AWS without latencies (the behaviour layer off). */
  fast: boolean;
  /** How the VIP moves (the deployment's `strategy`). */
  strategy: 'eni' | 'route';
  /** Where the HTML report goes. */
  reportPath: string;
  print: (line: string) => void;
  /** Availability zones (an LB host each): 2 (default) or 3. */
  azs?: 2 | 3;
  /**
   * VIP groups (default 1): each its VIP and EIP, owned by one host, with traffic of its own. With
   * more than one the run is an AZ outage: lb0's zone lost, its group moves, the others go on.
   */
  groups?: number;
}

/** One VIP group's figures in a run with several (`--groups`). */
export interface GroupResult {
  group: string;
  eip: string;
  ownerBefore: number | null;
  ownerAfter: number | null;
  moved: boolean;
  flowsKept: number;
  flowsTotal: number;
  /** The longest silence of any of its established flows. */
  maxPauseMs: number;
  newConnectionsFailed: number;
}

export interface DemoResult {
  failoverSeconds: number | null;
  detectSeconds: number | null;
  flowsKept: number;
  flowsTotal: number;
  maxPauseMs: number;
  requestsFailed: number;
  /** From the failure to the first reply through the survivor. */
  trafficResumedSeconds: number | null;
  /** Which trigger reached the function first (fast path, alarm, manual). */
  firstTrigger: string | null;
  failbackSeconds?: number | null;
  mode: string;
  strategy: string;
  sync: boolean;
  awsBehaviour: 'realistic' | 'fast';
  /** With `terminate`: the figures of the replacement, as the day-two JSON lines give them. */
  scenario?: 'terminate' | 'upgrade' | 'reboot' | 'rotate';
  /** With `rotate`: kube-loxilb's calls (stand-ins on both agents) not answered 200. */
  apiCallsFailed?: number;
  /** With `rotate`: sync sessions and peer heartbeats refused by either agent (a key one did not accept). */
  syncBreaks?: number;
  /** With `rotate`: a backup asking to move the VIP because it stopped hearing the owner. */
  fastPathTriggers?: number;
  /** With `rotate`: rotations that ran to the end (AWSCURRENT moved), of `rotationsStarted`. */
  rotationsDone?: number;
  rotationsStarted?: number;
  /** With `rotate`: the API token from before the rotations, refused after them. */
  oldTokenRefused?: boolean;
  /** With `reboot`: what the function answered a move to the rebooting LB before it was back and ready. */
  moveWhileNotReady?: string;
  slot?: number;
  /** Alarms that went to ALARM after the scenario's start. */
  alarmsFired?: number;
  vipMoves?: number;
  newConnectionsFailed?: number;
  slotsReplaced?: number;
  seconds?: number;
  instances?: { before: string; after: string } | { before: string[]; after: string[] };
  /** With several groups: each group's figures, and the longest pause of a group whose owner lived. */
  groups?: GroupResult[];
  unmovedGroupsMaxPauseMs?: number;
  azs?: number;
}

const PORT = 80;
/** With several groups, a group whose owner lived "did not pause" when none of its flows went silent this long (a move takes seconds). */
const UNMOVED_GROUP_PAUSE_BOUND_MS = 1000;
const BACKENDS = 3;
const AWS_PORT_IN_HOST = 4566;
const IMDS_PORT_IN_HOST = 5001;
/** `rotate`: how often the agents look at the secrets' labels (30 s on AWS). */
const SECRET_POLL_MS = 2000;
/** `rotate`: the pending token counts as taken once no call used another for this long (20 s on AWS). */
const CALLERS_SWITCHED_MS = 4000;
/** `rotate`: the token lifetime the agents give kube-loxilb; it refreshes 300 s before the end, so every 5 s here (every minute on AWS). */
const KUBE_LOXILB_LIFETIME_SECONDS = 305;

interface RunState {
  zero?: number;
  /** Where the move under way takes the VIP. */
  moveTo?: number;
  eipMovedAt?: number;
  firstTrigger?: { at: number; what: string };
  /** Lifecycle runs that moved the VIP. */
  vipMoves?: number;
  alarmsFired?: number;
  /** With several groups: the host that was lost (its groups move wherever the placement puts them). */
  lost?: number;
  /** The instance the function last recorded as lost by its peer (the fast path). */
  peerLostReported?: string;
  /** The rollout's last reason said in the timeline (each said once). */
  rolloutSaid?: string;
  fastPathTriggers?: number;
}

export class Demo {
  private readonly o: DemoOptions;
  readonly timeline: Timeline;
  private readonly cleanups: (() => void | Promise<void>)[] = [];
  private readonly dir: string;
  private lab!: Lab;
  private moto!: Moto;
  private proxy!: AwsProxy;
  private world!: World;
  private vpc!: SimVpc;
  private mirror!: AwsMirror;
  private runtime!: FailoverRuntime;
  private run!: AgentRunner;
  private evaluator!: AlarmEvaluator;
  private state: RunState = {};
  private stopped = false;
  /** With `rotate`: the secrets the agents follow. */
  private secretArns: Record<SecretKind, string> | undefined;

  constructor(o: DemoOptions) {
    this.o = o;
    this.timeline = new Timeline(o.print);
    this.dir = mkdtempSync(join(tmpdir(), 'loxiha-demo-'));
    this.cleanups.push(() => rmSync(this.dir, { recursive: true, force: true }));
  }

  private say(line: string): void {
    this.o.print(line);
  }

  /** Stops and removes everything the run made, by id; safe to call twice and from a signal handler. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const c of this.cleanups.reverse()) {
      try {
        await c();
      } catch {
        /* the rest still goes */
      }
    }
  }

  async runScenario(): Promise<{ result: DemoResult; reportPath: string; ok: boolean }> {
    await this.startAws();
    await this.startNetwork();
    await this.startFunction();
    await this.startAgents();
    await this.place();
    await this.configureServices();
    if (this.groupCount > 1) return this.azOutageScenario();
    const flows = await this.startTraffic();
    if (this.o.mode === 'terminate') return this.terminateScenario(flows);
    if (this.o.mode === 'upgrade') return this.upgradeScenario(flows);
    if (this.o.mode === 'reboot') return this.rebootScenario(flows);
    if (this.o.mode === 'rotate') return this.rotateScenario(flows);
    if (this.o.mode === 'unplanned') await this.killLb0();
    else this.plannedMove(1, 'maintenance of lb0');
    await this.waitForSurvivor(1);
    await sleep(3000);
    let failbackSeconds: number | null | undefined;
    if (this.o.failback) failbackSeconds = await this.failBack();
    const report = await finalReport(this.lab, flows);
    const result = this.result(report, failbackSeconds);
    this.printSummary(result, report);
    const reportPath = this.writeReport(result, report);
    return { result, reportPath, ok: result.flowsTotal > 0 && result.flowsKept === result.flowsTotal };
  }

  // ---- AWS --------------------------------------------------------------------------------

  private async startAws(): Promise<void> {
    this.moto = await startMoto();
    this.cleanups.push(() => this.moto.stop());
    this.proxy = await AwsProxy.start(this.moto.endpoint, systemClock);
    this.cleanups.push(() => this.proxy.stop());
    this.proxy.configure(this.o.fast ? {} : REALISTIC_BEHAVIOUR);
    await this.proxy.listenUnix(join(this.dir, 'aws.sock'));
    const zones = this.o.azs === 3 ? { availabilityZones: ['us-east-1a', 'us-east-1b', 'us-east-1c'], lbSubnetCidrs: ['100.64.218.0/24', '100.64.228.0/24', '100.64.238.0/24'] } : {};
    this.world = new World(this.moto.endpoint, { ...(this.o.strategy === 'route' ? { strategy: 'route', vip: SIM_OVERLAY_VIP } : {}), ...zones });
    this.cleanups.push(() => this.world.destroy());
    // Replacing an instance needs the slots as the stack makes them (an interface of the slot's own).
    // Several eni groups: an instance type that attaches enough loxi-enis for a survivor to hold two groups (c5.xlarge: 4 interfaces).
    await this.world.seed({ slots: this.o.mode === 'terminate' || this.o.mode === 'upgrade' || this.o.mode === 'rotate', ...(this.groupCount > 1 && this.o.strategy === 'eni' ? { instanceType: 'c5.xlarge' } : {}) });
    if (this.groupCount > 1) await this.world.addGroups(this.groupCount - 1);
    const route = this.o.strategy === 'route';
    const groups = this.groupCount > 1 ? `${this.groupCount} VIP groups (EIPs ${this.eips().join(', ')})` : `EIP ${SIM_EIP}`;
    this.timeline.mark('setup', `AWS emulator on ${this.moto.endpoint} behind the behaviour layer (${this.o.fast ? 'fast: no latencies' : 'realistic latencies, slow detach and attach, NotFound after create'}); deployment seeded from the sim profile (strategy ${this.o.strategy}): VPC, LB subnets in ${this.world.config.availabilityZones.join(', ')}, ${this.world.instances.length} LB instances${route ? ` with their ingress IPs, route tables for the overlay VIP${this.groupCount > 1 ? 's' : ''}` : ''}, ${groups}, heartbeat and status-check alarms, lease table, topic`);
    this.proxy.onCall = (c) => {
      if (c.service !== 'ec2') return;
      if (c.status === 503) this.timeline.mark('ec2', `${c.action} throttled`, { at: c.startedAt, ms: c.ms });
      else if (MUTATING.has(c.action) && c.action !== 'CreateTags') this.timeline.mark('ec2', `${c.action}${c.status >= 300 ? ` → ${c.status}` : ''}`, { at: c.startedAt, ms: c.ms });
    };
  }

  // ---- the VPC ------------------------------------------------------------------------------

  private async startNetwork(): Promise<void> {
    this.lab = new Lab();
    this.cleanups.push(() => this.lab.stop());
    const blocks = this.world.settings.groups?.map((g) => g.cloudCidrBlock ?? this.world.settings.cloudCidrBlock!);
    this.vpc = new SimVpc(this.lab, this.world.config, SIM_EIP, BACKENDS, { groups: this.groupCount, ...(blocks && this.o.strategy === 'eni' ? { blocks } : {}) });
    this.vpc.build();
    const ec2 = new EC2Client({ region: 'us-east-1', endpoint: this.moto.endpoint, credentials: CREDENTIALS });
    this.cleanups.push(() => ec2.destroy());
    const s = this.world.settings;
    this.mirror = new AwsMirror({
      proxy: this.proxy,
      ec2,
      vpc: this.vpc,
      deploymentId: this.world.config.deploymentId,
      eipAllocationId: s.groups ? s.groups.map((g) => g.eipAllocationId) : s.eipAllocationId,
      instances: this.world.instances,
      ...(s.strategy === 'route' ? { vipRoute: (s.groups ?? [s]).map((g) => ({ vip: g.vip, routeTableId: s.routeTableIds!.at(-1)! })) } : {}),
    });
    this.mirror.onEvent = (e) => {
      const of = (g: number) => (this.groupCount > 1 ? ` of group ${s.groups![g]!.name}` : '');
      if (e.kind === 'eni-plugged') this.timeline.mark('eni', `loxi-eni${of(e.group)} (${e.eniId}) appears on lb${e.host} as a new interface`);
      else if (e.kind === 'eni-unplugged') this.timeline.mark('eni', `loxi-eni${of(e.group)} (${e.eniId}) leaves lb${e.host}`);
      else if (e.kind === 'vip-route') this.timeline.mark('eip', e.host === undefined ? `the VPC's route to the VIP ${e.vip} goes nowhere` : `the VPC routes the VIP ${e.vip} to lb${e.host}`);
      else {
        // The first time, after the failure, that the (moved group's) EIP reaches an interface again: the failover as a client sees it.
        const arrived = this.state.moveTo !== undefined ? e.host === this.state.moveTo : e.host !== undefined && e.host !== this.state.lost;
        if (e.eniId && e.publicIp === SIM_EIP && this.state.zero !== undefined && this.state.eipMovedAt === undefined && arrived) this.state.eipMovedAt = Date.now();
        const on = e.eniId && s.strategy === 'eni' ? `lb${e.host}'s loxi-eni` : `lb${e.host}'s ingress IP`;
        this.timeline.mark('eip', e.eniId ? `internet gateway maps EIP ${e.publicIp} → ${e.privateIp} on ${on}` : `EIP ${e.publicIp} maps nowhere: its packets are dropped`);
      }
    };
    this.mirror.onError = (e) => this.say(`  (mirror: ${e.message})`);
    await this.mirror.start();
    this.cleanups.push(() => this.mirror.stop());
    for (let i = 0; i < this.vpc.hosts; i++) {
      const server = await serveImds(join(this.dir, `imds-lb${i}.sock`), () => this.mirror.metadata(i));
      this.cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
      await this.startForwarder(i);
    }
    this.timeline.mark('setup', `network (namespaces lx${this.lab.id}-*): client ("the internet") → VPC router (internet gateway, security groups per ENI) → lb0 in ${this.world.config.lbSubnetCidrs[0]}, lb1 in ${this.world.config.lbSubnetCidrs[1]}; ${BACKENDS} backends in the nodes' subnet ${NODES.cidr}; IMDSv2 per host from the emulator's state`);
  }

  /** The host's loopback ports for the AWS endpoint and its IMDS, forwarded to this process. */
  private async startForwarder(i: number): Promise<void> {
    const p = this.lab.spawn(SimVpc.host(i), process.execPath, [join(PROGRAMS, 'ns-forward.mjs'), `${AWS_PORT_IN_HOST}=${join(this.dir, 'aws.sock')}`, `${IMDS_PORT_IN_HOST}=${join(this.dir, `imds-lb${i}.sock`)}`]);
    await p.waitFor(/forwarding/);
  }

  // ---- the failover function ---------------------------------------------------------------

  private async startFunction(): Promise<void> {
    const s = this.world.settings;
    this.runtime = await FailoverRuntime.start({
      dir: join(this.dir, 'function'),
      functionArn: FAILOVER_FUNCTION_ARN,
      timeoutSeconds: 180,
      env: {
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
        LOXIHA_AWS_ENDPOINT: this.proxy.endpoint,
        POWERTOOLS_SERVICE_NAME: 'loxiha-failover',
        POWERTOOLS_METRICS_NAMESPACE: 'Loxiha',
        ...functionEnv(s),
      },
    });
    this.cleanups.push(() => this.runtime.stop());
    this.runtime.onLine = (l) => this.onRuntimeLine(l);
    this.proxy.onInvoke = async (call) => {
      const r = await this.runtime.invoke(call.payload, call.qualifier).catch((e: Error) => ({ errorType: 'ServiceException', errorMessage: e.message }));
      return { status: 200, body: JSON.stringify('result' in r ? r.result : r) };
    };
    this.timeline.mark('setup', "failover function: its bundle as cdk synth stages it, in a local Lambda runtime; the agents' fast path and the alarms invoke it through the emulator's Lambda API");
  }

  private onRuntimeLine(l: RuntimeLine): void {
    const at = typeof l.at === 'number' ? l.at : Date.now();
    const after = this.state.zero !== undefined && at >= this.state.zero;
    const payload = l.payload as Record<string, unknown> | undefined;
    const answer = l.runtime === 'end' && typeof l.result === 'object' && l.result !== null ? (l.result as Record<string, unknown>) : undefined;
    // The provider framework's polls of the rollout: said through their steps, once each, not per poll.
    if (payload?.ResourceType === ROLLOUT_RESOURCE_TYPE || (answer && 'PhysicalResourceId' in answer)) return;
    if (l.message === 'rollout step') {
      const step = l.step as { kind: string; reason: string };
      if (step.reason !== this.state.rolloutSaid) this.timeline.mark(step.kind === 'replace' ? 'failure' : 'done', `rollout (${step.kind}): ${step.reason}`, { at });
      this.state.rolloutSaid = step.reason;
      return;
    }
    if (l.runtime === 'start') {
      const p = l.payload as Record<string, unknown>;
      const lifecycle = p.source === 'aws.autoscaling' ? (p.detail as { LifecycleTransition: string; EC2InstanceId: string; AutoScalingGroupName: string }) : undefined;
      const what = lifecycle
        ? `Auto Scaling lifecycle action (EventBridge): ${lifecycle.LifecycleTransition.replace('autoscaling:EC2_INSTANCE_', '').toLowerCase()} ${lifecycle.EC2InstanceId} of ${lifecycle.AutoScalingGroupName}`
        : 'alarmData' in p
          ? `alarm ${(p.alarmData as { alarmName: string; state: { value: string } }).alarmName} → ${(p.alarmData as { state: { value: string } }).state.value}`
          : p.reason === 'peer-heartbeat-lost'
            ? `fast path: ${this.vpc.hosts === 2 ? `lb${1 - this.indexOf(String(p.from))}'s agent` : 'a peer'} lost lb${this.indexOf(String(p.from))} (${String(p.from)})`
            : p.reason === 'peer-backup-lost'
              ? `fast path: ${this.vpc.hosts === 2 ? `lb${1 - this.indexOf(String(p.from))}'s agent (the owner)` : 'an owner'} lost its backup lb${this.indexOf(String(p.from))} (${String(p.from)})`
            : 'RequestType' in p
              ? `CloudFormation ${String(p.RequestType)} (placement)`
              : `manual ${JSON.stringify(p)}`;
      if (after && p.reason === 'peer-heartbeat-lost') this.state.fastPathTriggers = (this.state.fastPathTriggers ?? 0) + 1;
      if (after && !('RequestType' in p)) {
        if (!this.state.firstTrigger && !what.endsWith('→ OK')) this.state.firstTrigger = { at, what };
        this.timeline.mark('detection', `function invoked: ${what}`, { at });
      } else if (!after) this.timeline.mark('setup', `function invoked: ${what}`, { at });
    } else if (l.runtime === 'end' || l.runtime === 'error') {
      const r = (l.result ?? {}) as Record<string, unknown>;
      if ((r.peerLost as { instanceId?: string } | undefined)?.instanceId) this.state.peerLostReported = String((r.peerLost as { instanceId: string }).instanceId);
      // A lifecycle run's move, or a run of the orchestrator that moved (fast path, alarm, manual).
      if (after && ((r.move as { moved?: boolean } | undefined)?.moved || r.moved === true)) this.state.vipMoves = (this.state.vipMoves ?? 0) + 1;
      // Several groups: each group's run that moved its VIP.
      if (after && Array.isArray(r.groups)) this.state.vipMoves = (this.state.vipMoves ?? 0) + (r.groups as { result?: { moved?: boolean } }[]).filter((g) => g.result?.moved === true).length;
      const text = l.runtime === 'error' ? `function failed: ${String(l.errorMessage)}` : `function: ${String(r.outcome)}${r.owner ? `, VIP on lb${this.indexOf(String(r.owner))}` : ''}${r.reason ? ` (${String(r.reason)})` : ''}`;
      this.timeline.mark(after ? 'done' : 'setup', text, { at });
    } else if (l.message === 'moving the VIP' && after) {
      this.timeline.mark('lease', `lease taken, epoch ${String(l.epoch)}: moving the VIP ${l.from ? `from lb${this.indexOf(String(l.from))} ` : ''}to lb${this.indexOf(String(l.to))} (${String(l.reason)})`, { at: Date.parse(String(l.timestamp)) || at });
    } else if (typeof l.message === 'string' && l.message.startsWith('slot instance') && after) {
      this.timeline.mark('done', `SNS + EventBridge: ${l.message} (slot ${String(l.slot)}, ${String(l.instanceId)}: ${String(l.why)})`, { at });
    } else if (l.level === 'ERROR') this.say(`  function error: ${String(l.message)}${l.error ? ` ${JSON.stringify(l.error).slice(0, 300)}` : ''}`);
  }

  /** An asynchronous invocation (as alarms and manual `--invocation-type Event` calls are): not awaited, failures said. */
  private fire(payload: unknown): void {
    this.runtime.invoke(payload).catch((e: Error) => {
      if (!this.stopped) this.say(`  (invocation failed: ${e.message})`);
    });
  }

  private indexOf(instanceId: string): number {
    return this.world.instances.find((i) => i.id === instanceId)?.index ?? -1;
  }

  // ---- agents -------------------------------------------------------------------------------

  private async startAgents(): Promise<void> {
    this.run = new AgentRunner(this.lab);
    this.cleanups.push(() => this.run.cleanup());
    if (this.o.mode === 'rotate') {
      // The stack's two secrets, holding what the agents start with; the agents follow them from then on.
      this.secretArns = await this.world.seedSecrets({ [SECRET_KIND.apiToken]: this.run.token, [SECRET_KIND.syncKey]: readFileSync(this.run.syncKeyFile, 'utf8').trim() });
      this.timeline.mark('setup', `secrets: the API token and the sync key in Secrets Manager (tagged ${TAG.secret}), followed by each agent every ${SECRET_POLL_MS / 1000} s`);
    }
    await this.run.startBackends(BACKENDS);
    for (let i = 0; i < this.vpc.hosts; i++) await this.startAgent(i);
    const cw = new CloudWatchClient({ region: 'us-east-1', endpoint: this.moto.endpoint, credentials: CREDENTIALS });
    this.cleanups.push(() => cw.destroy());
    this.evaluator = new AlarmEvaluator(cw, FAILOVER_FUNCTION_ARN, (event) => this.fire(event));
    this.evaluator.onChange = (name, value, previous) => {
      if (this.state.zero === undefined) return;
      if (value === 'ALARM') this.state.alarmsFired = (this.state.alarmsFired ?? 0) + 1;
      this.timeline.mark('detection', `alarm ${name}: ${previous} → ${value} (evaluated from the heartbeat data in the emulator)`);
    };
    this.evaluator.onError = (e) => this.say(`  (alarm evaluation: ${e.message})`);
    // EC2 publishes each running instance's status check every minute (moto does not): the status-check alarms see it.
    const status = () => void this.world.publishStatusChecks(Date.now()).catch((e: Error) => this.say(`  (status checks: ${e.message})`));
    status();
    const statusTimer = setInterval(status, 60_000);
    this.cleanups.push(() => clearInterval(statusTimer));
    await this.evaluator.start();
    this.cleanups.push(() => this.evaluator.stop());
    this.timeline.mark('setup', `agents (the shipped bundle) on ${Array.from({ length: this.vpc.hosts }, (_, i) => `lb${i}`).join(', ')}: beating to CloudWatch, peer heartbeats, session sync ${this.o.sync ? 'on' : 'OFF (--no-sync)'}`);
  }

  /** LB `i`'s own copies of the secret files (made once: a restarted agent finds what its mirror wrote). */
  private ownSecretFiles(i: number): { token: string; key: string } {
    const token = join(this.dir, `api-token-lb${i}`);
    const key = join(this.dir, `sync-key-lb${i}`);
    if (!existsSync(token)) copyFileSync(this.run.tokenFile, token);
    if (!existsSync(key)) copyFileSync(this.run.syncKeyFile, key);
    this.run.tokenFiles.set(i, token);
    return { token, key };
  }

  private async startAgent(i: number, stateDirName = `state-lb${i}`): Promise<void> {
    const cfg = agentConfigFor(this.world.config, i, {
      region: 'us-east-1',
      failoverFunctionName: `${FAILOVER_FUNCTION_ARN}:agents`,
      endpoint: `http://127.0.0.1:${AWS_PORT_IN_HOST}`,
      imdsEndpoint: `http://127.0.0.1:${IMDS_PORT_IN_HOST}`,
    }, (this.world.settings.groups ?? []).map((g, k) => ({ name: g.name, vip: g.vip, publicIp: simGroupEip(k) })));
    // Following the secrets, each agent has files of its own, as each instance does (kept across its restarts, as a disk).
    const files = this.secretArns ? this.ownSecretFiles(i) : { token: this.run.tokenFile, key: this.run.syncKeyFile };
    const p = await this.run.startAgent(i, {
      ...cfg,
      initialRole: HA_ROLE.notDefined,
      api: { ...cfg.api, tokenFile: files.token, ...(this.secretArns ? { tokenLifetimeSeconds: KUBE_LOXILB_LIFETIME_SECONDS } : {}) },
      sync: { ...cfg.sync, secretFile: files.key, sessions: this.o.sync },
      ...(this.secretArns
        ? { aws: { ...cfg.aws!, secrets: { apiToken: this.secretArns[SECRET_KIND.apiToken], syncKey: this.secretArns[SECRET_KIND.syncKey], pollMs: SECRET_POLL_MS, callersSwitchedAfterMs: CALLERS_SWITCHED_MS } } }
        : {}),
      stateDir: join(this.dir, stateDirName),
    });
    await p.waitFor(/beating to CloudWatch/, 30_000);
  }

  // ---- placement, services, traffic ------------------------------------------------------------

  /** What the stack's lifecycle resource does at the end of `cdk deploy`: a CloudFormation Create. */
  private async place(): Promise<void> {
    let answer: unknown;
    const server: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        answer = JSON.parse(body);
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/cfn-response`;
      const r = await this.runtime.invoke({
        RequestType: 'Create',
        ServiceToken: FAILOVER_FUNCTION_ARN,
        ResponseURL: url,
        StackId: 'arn:aws:cloudformation:us-east-1:123456789012:stack/loxiha-sim/1',
        RequestId: 'placement',
        LogicalResourceId: 'Lifecycle',
        ResourceType: 'Custom::LoxihaLifecycle',
        ResourceProperties: { ServiceToken: FAILOVER_FUNCTION_ARN },
      });
      const status = (answer as { Status?: string } | undefined)?.Status;
      if (status !== 'SUCCESS') throw new Error(`placement failed: CloudFormation was told ${status ?? 'nothing'} (${JSON.stringify(r).slice(0, 500)})`);
    } finally {
      server.close();
    }
    if (this.groupCount > 1) {
      await this.until('every VIP group owned by one LB', async () => [...(await this.groupOwners()).values()].every((hosts) => hosts.length === 1), 60_000);
      const owners = await this.groupOwners();
      this.timeline.mark('setup', `placement done: ${[...owners].map(([g, h]) => `group ${g} on lb${h[0]}`).join(', ')} (the EIP on its ingress IP, its VIP routed to it)`);
      return;
    }
    await this.until('lb0 MASTER and lb1 BACKUP', async () => (await this.ha(0)).state === HA_ROLE.master && (await this.ha(1)).state === HA_ROLE.backup, 60_000);
    this.timeline.mark('setup', `placement done: ${this.o.strategy === 'eni' ? 'loxi-eni on lb0, EIP associated' : "EIP on lb0's ingress IP, the VIP routed to lb0"}; lb0 is MASTER, lb1 BACKUP`);
  }

  private ha(i: number): Promise<Record<string, unknown>> {
    return haOf(this.run, i);
  }

  private get groupCount(): number {
    return this.o.groups ?? 1;
  }

  /** Each VIP group's EIP, the default group's first. */
  private eips(): string[] {
    return Array.from({ length: this.groupCount }, (_, k) => simGroupEip(k));
  }

  /** LB `i`'s row per VIP group (`get ha`: `group/<name>`, its role there, in sync for it). */
  private async groupRows(i: number): Promise<{ group: string; state: string; sync: number }[]> {
    const attr = (await this.run.api(i, 'GET', '/config/cistate/all')).body.Attr as { instance: string; state: string; sync: number }[];
    return attr.filter((a) => a.instance.startsWith('group/')).map((a) => ({ group: a.instance.slice('group/'.length), state: a.state, sync: a.sync }));
  }

  /** Which live LBs say MASTER for each group (one each once placed), in the groups' order. */
  private async groupOwners(): Promise<Map<string, number[]>> {
    const owners = new Map<string, number[]>((this.world.settings.groups ?? []).map((g) => [g.name, []]));
    for (let i = 0; i < this.vpc.hosts; i++) {
      if (i === this.state.lost) continue;
      for (const r of await this.groupRows(i)) if (r.state === HA_ROLE.master) owners.get(r.group)?.push(i);
    }
    return owners;
  }

  /**
   * An availability zone lost with several VIP groups (`--groups`): each group has its own traffic
   * (long-lived TCP and UDP flows, fresh connections through its EIP); lb0's zone goes dark; the
   * function moves the group lb0 held — wherever the placement puts it — and the groups whose owner
   * lives must not pause. Ok when every established flow of every group is kept and no surviving
   * group paused for a second.
   */
  private async azOutageScenario(): Promise<{ result: DemoResult; reportPath: string; ok: boolean }> {
    const before = await this.groupOwners();
    const names = [...before.keys()];
    const traffic = new Map<string, Proc>();
    for (const [k, g] of names.entries()) traffic.set(g, await this.flowClient(simGroupEip(k)));
    for (const p of traffic.values()) p.child.stdin!.write('tcp 4\nudp 2\nfresh\n');
    await sleep(2000);
    for (const p of traffic.values()) p.child.stdin!.write('tcp 2\n');
    await sleep(700);
    this.timeline.mark('setup', `traffic through each group's EIP: 6 long-lived TCP flows (2 opened 0.7 s ago), 2 UDP flows, a new TCP connection every 50 ms — ${names.length} groups at once`);
    const lost = 0;
    const movers = names.filter((g) => before.get(g)![0] === lost);
    this.state.lost = lost;
    this.state.zero = Date.now();
    killAllInNamespace(this.lab.ns(SimVpc.host(lost)));
    this.mirror.markDead(lost);
    this.timeline.mark('failure', `zone ${this.world.config.availabilityZones[lost]} lost: lb${lost} dies (its agent and every process killed, its links dark); it owned ${movers.map((g) => `group ${g}`).join(', ') || 'no group'}`, { at: this.state.zero });
    await this.world.ec2.send(new StopInstancesCommand({ InstanceIds: [this.world.id(lost)], Force: true }));
    await this.until('every group owned by a live LB', async () => [...(await this.groupOwners()).values()].every((hosts) => hosts.length === 1), 120_000);
    const after = await this.groupOwners();
    for (const g of movers) this.timeline.mark('role', `group ${g} is on lb${after.get(g)![0]} now: ${this.o.strategy === 'eni' ? 'its agent found the group\'s loxi-eni by its MAC through IMDS and routes the group\'s flows through it' : 'its agent sees the group\'s EIP on its ingress IP through IMDS'}`);
    await sleep(3000);
    const reports = new Map<string, FlowsReport>();
    for (const [g, p] of traffic) reports.set(g, await finalReport(this.lab, p));
    const groups: GroupResult[] = names.map((g, k) => {
      const r = reports.get(g)!;
      const lostOnes = new Set(lostFlows(r));
      const kept = r.flows.filter((f) => !lostOnes.has(f));
      return {
        group: g,
        eip: simGroupEip(k),
        ownerBefore: before.get(g)![0] ?? null,
        ownerAfter: after.get(g)![0] ?? null,
        moved: movers.includes(g),
        flowsKept: kept.length,
        flowsTotal: r.flows.length,
        maxPauseMs: r.flows.length ? Math.max(...r.flows.map((f) => f.maxGapMs)) : 0,
        newConnectionsFailed: r.fresh.failed,
      };
    });
    // The figures of the move as a client of the moved group saw it; the flows of every group.
    const moved = reports.get(movers[0] ?? names[0]!)!;
    const all: FlowsReport = { flows: [...reports.values()].flatMap((r) => r.flows), fresh: { ...moved.fresh, failed: groups.reduce((n, g) => n + g.newConnectionsFailed, 0) }, series: moved.series };
    const base = this.result(all, undefined);
    const unmoved = groups.filter((g) => !g.moved);
    const result: DemoResult = { ...base, azs: this.vpc.hosts, groups, unmovedGroupsMaxPauseMs: unmoved.length ? Math.max(...unmoved.map((g) => g.maxPauseMs)) : 0, vipMoves: this.state.vipMoves ?? 0 };
    this.printSummary(result, all);
    for (const g of groups) this.say(`  group ${g.group.padEnd(8)} ${g.eip.padEnd(16)} lb${g.ownerBefore} → lb${g.ownerAfter}${g.moved ? ' (moved)' : '          '}  flows kept ${g.flowsKept}/${g.flowsTotal} · largest pause ${g.maxPauseMs} ms · new connections failed ${g.newConnectionsFailed}`);
    const reportPath = this.writeReport(result, all);
    const ok = groups.every((g) => g.flowsTotal > 0 && g.flowsKept === g.flowsTotal) && (result.unmovedGroupsMaxPauseMs ?? 0) < UNMOVED_GROUP_PAUSE_BOUND_MS;
    return { result, reportPath, ok };
  }

  /** kube-loxilb's calls: the same LoadBalancer service to every instance. */
  private async configureServices(): Promise<void> {
    for (let i = 0; i < this.vpc.hosts; i++) await this.configureServicesOn(i);
    if (this.groupCount > 1) {
      if (this.o.sync) await this.until('every LB in sync for every group', async () => (await Promise.all(Array.from({ length: this.vpc.hosts }, (_, i) => this.groupRows(i)))).every((rows) => rows.every((r) => r.sync === 1)), 60_000);
      this.timeline.mark('setup', `services: TCP and UDP :${PORT} on each group's EIP (${this.eips().join(', ')}) → ${BACKENDS} backends, POSTed to every agent as kube-loxilb does — each from its group's pool, with its one privateIP ${this.world.config.vip}${this.o.sync ? '; every LB in sync for every group' : ''}`);
      return;
    }
    if (this.o.sync) await this.until('lb1 in sync', async () => (await this.ha(1)).sync === 1, 30_000);
    this.timeline.mark('setup', `services: TCP and UDP ${SIM_EIP}:${PORT} → ${BACKENDS} backends, POSTed to both agents as kube-loxilb does${this.o.sync ? '; lb1 in sync' : ''}`);
  }

  /** kube-loxilb's calls to one instance: the TCP and UDP services. */
  private async configureServicesOn(i: number): Promise<void> {
    for (const eip of this.eips()) {
      for (const protocol of ['tcp', 'udp'] as const) {
        const r = await this.run.api(i, 'POST', '/config/loadbalancer', this.serviceBody(protocol, eip));
        if (r.status !== 200) throw new Error(`lb${i} refused the ${protocol} service on ${eip}: ${r.status} ${JSON.stringify(r.body)}`);
      }
    }
  }

  /**
   * The LoadBalancer service as kube-loxilb POSTs it: the external IP from its pool (a group's EIP),
   * and its one --privateCIDR as privateIP whatever the pool.
   */
  private serviceBody(protocol: 'tcp' | 'udp', eip = SIM_EIP) {
    return {
      serviceArguments: { externalIP: eip, privateIP: this.world.config.vip, port: PORT, protocol, sel: 0, mode: 2, monitor: false, probetype: 'none', name: `default_demo-${eip === SIM_EIP ? '' : `${eip}-`}${protocol}` },
      endpoints: Array.from({ length: BACKENDS }, (_, b) => ({ endpointIP: NODES.ip(b + 1), targetPort: BACKEND_PORT, weight: 1 })),
    };
  }

  /** The flow client in "the internet", aimed at `eip`, ready for commands (ended with the run). */
  private async flowClient(eip: string): Promise<Proc> {
    const flows = this.lab.spawn('cl0', process.execPath, [join(PROGRAMS, 'flows.mjs'), eip, String(PORT)]);
    this.cleanups.push(() => void flows.child.kill('SIGKILL'));
    await flows.waitFor(/flows ready/);
    return flows;
  }

  private async startTraffic(): Promise<Proc> {
    const flows = await this.flowClient(SIM_EIP);
    flows.child.stdin!.write('tcp 6\nudp 4\nfresh\n');
    await sleep(2000);
    flows.child.stdin!.write('tcp 3\n');
    await sleep(700);
    this.timeline.mark('setup', 'traffic through the EIP: 9 long-lived TCP flows (3 opened 0.7 s ago), 4 UDP flows, a new TCP connection every 50 ms');
    return flows;
  }

  // ---- the failure and the move ------------------------------------------------------------------

  private async killLb0(): Promise<void> {
    killAllInNamespace(this.lab.ns(SimVpc.host(0)));
    this.mirror.markDead(0);
    this.state.moveTo = 1;
    this.state.zero = Date.now();
    this.timeline.mark('failure', 'lb0 dies: its agent and every process on it killed, its links dark', { at: this.state.zero });
    await this.world.ec2.send(new StopInstancesCommand({ InstanceIds: [this.world.id(0)], Force: true }));
    this.timeline.mark('failure', `EC2 says ${this.world.id(0)} is stopped`);
  }

  private plannedMove(to: number, reason: string): void {
    this.state.moveTo = to;
    this.state.zero = Date.now();
    this.timeline.mark('failure', `planned move to lb${to} (${reason}): a manual invocation`, { at: this.state.zero });
    this.fire({ action: 'failover', to: this.world.id(to), reason });
  }

  private async waitForSurvivor(to: number): Promise<void> {
    await this.until(`lb${to} MASTER`, async () => (await this.ha(to)).state === HA_ROLE.master, 120_000);
    const how = this.o.strategy === 'eni' ? 'found loxi-eni by its MAC through IMDS, brought it up, routed the flows through it' : "sees the EIP on its ingress IP through IMDS";
    this.timeline.mark('role', `lb${to}'s agent is MASTER: ${how}${this.o.sync ? ', and streams its sessions to the peer' : ''}`);
  }

  /** lb0 back (restarted if it died), in sync, then a planned move back to it. Returns seconds from the move to the EIP on lb0. */
  private async failBack(): Promise<number | null> {
    if (this.o.mode === 'unplanned') {
      await this.world.ec2.send(new StartInstancesCommand({ InstanceIds: [this.world.id(0)] }));
      this.mirror.markAlive(0);
      await this.startForwarder(0);
      await this.startAgent(0);
      this.timeline.mark('role', 'lb0 is back (instance started, agent restarted)');
    }
    await this.until('lb0 BACKUP', async () => (await this.ha(0)).state === HA_ROLE.backup, 60_000);
    if (this.o.sync) await this.until('lb0 in sync', async () => (await this.ha(0)).sync === 1, 60_000);
    const at = Date.now();
    const before = this.state.eipMovedAt;
    this.state.eipMovedAt = undefined;
    this.state.moveTo = 0;
    this.timeline.mark('failure', 'failback: planned move back to lb0 (a manual invocation)', { at });
    this.fire({ action: 'failover', to: this.world.id(0), reason: 'failback' });
    await this.until('lb0 MASTER again', async () => (await this.ha(0)).state === HA_ROLE.master, 120_000);
    this.timeline.mark('role', "lb0's agent is MASTER again");
    await sleep(3000);
    const moved = this.state.eipMovedAt as number | undefined;
    this.state.eipMovedAt = before;
    return moved ? Math.round((moved - at) / 10) / 100 : null;
  }

  private async until(what: string, f: () => Promise<boolean>, ms: number): Promise<void> {
    const end = Date.now() + ms;
    for (;;) {
      try {
        if (await f()) return;
      } catch {
        /* not answering yet */
      }
      if (Date.now() > end) {
        const states = await Promise.all([0, 1].map((i) => this.ha(i).then((h) => `lb${i} ${JSON.stringify(h)}`, (e: Error) => `lb${i} API: ${e.message.split('\n')[0]}`)));
        throw new Error(`timed out after ${ms / 1000} s waiting for ${what}; ${states.join('; ')}`);
      }
      await sleep(100);
    }
  }

  // ---- self-healing: a slot's group replaces its instance ---------------------------------------

  /**
   * The slot's Auto Scaling group replaces its instance (the AWS-behaviour layer's model of it,
   * sim/slot-groups.ts): the terminating action goes to the function (EventBridge), which moves the
   * VIP off it first if it holds it; the instance goes — its host's processes killed and its kernel
   * state wiped, as a new instance has none; the replacement launches, the function attaches the
   * slot's interface, its agent starts empty and gets the services as kube-loxilb reinstalls them
   * on an LB that comes back, then resyncs from the owner.
   */
  private async terminateScenario(flows: Proc): Promise<{ result: DemoResult; reportPath: string; ok: boolean }> {
    const slot = this.o.terminate ?? 1;
    const before = this.world.id(slot);
    const wasOwner = (await this.ha(slot)).state === HA_ROLE.master;
    let inService = false;
    const groups = this.slotGroups((i, id) => {
      this.timeline.mark('role', `${id} is in service in slot ${i}, with the slot's interface and address`);
      inService = true;
    });
    this.state.moveTo = 1 - slot;
    this.state.zero = Date.now();
    this.timeline.mark('failure', `slot ${slot}'s Auto Scaling group replaces ${before} (lb${slot}, ${wasOwner ? 'the VIP owner' : 'the backup'}), as after a failed status check`, { at: this.state.zero });
    groups.replace(slot);
    await this.until(`slot ${slot}'s replacement in service`, async () => inService, 180_000);
    // The world's instance list follows the group: the slot's instance is the replacement now.
    const after = this.world.id(slot);
    if (wasOwner) await this.waitForSurvivor(1 - slot);
    await this.bringUpReplacement(slot, after);
    return this.conclude(flows, this.secondsSinceZero(), { scenario: 'terminate', slot, slotsReplaced: 1, instances: { before, after } });
  }

  /**
   * A deploy changed the slots' launch template (a new agent build, AMI or instance type): CloudFormation
   * updates the groups and then the rollout resource, whose provider framework calls the function —
   * onEvent, then isComplete until done (every 15 s on AWS, every 2 s here). The function replaces the
   * backup's slot first and the owner's last; each replacement is a new instance (its host's state
   * wiped, a new agent) that kube-loxilb gives the services as it does any LB that comes back.
   */
  private async upgradeScenario(flows: Proc): Promise<{ result: DemoResult; reportPath: string; ok: boolean }> {
    const before = [this.world.id(0), this.world.id(1)];
    const ownerSlot = (await this.ha(0)).state === HA_ROLE.master ? 0 : 1;
    const comingUp: Promise<void>[] = [];
    const groups = this.slotGroups((i, id) => {
      this.timeline.mark('role', `${id} is in service in slot ${i} (launch template version 2), with the slot's interface and address`);
      comingUp.push(this.bringUpReplacement(i, id));
    });
    this.state.moveTo = 1 - ownerSlot;
    this.state.zero = Date.now();
    for (const slot of [0, 1]) groups.setTemplate(slot, '2');
    this.timeline.mark('failure', `cdk deploy changed the slots' launch template (version 1 → 2): CloudFormation updates both groups, then the rollout resource; the VIP is on lb${ownerSlot}`, { at: this.state.zero });
    const request = {
      RequestType: 'Update',
      ServiceToken: 'arn:aws:lambda:us-east-1:123456789012:function:provider-framework-onEvent',
      ResponseURL: 'https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/demo',
      StackId: 'arn:aws:cloudformation:us-east-1:123456789012:stack/loxiha-sim/demo',
      RequestId: 'demo-rollout',
      LogicalResourceId: 'WiringRollout',
      ResourceType: ROLLOUT_RESOURCE_TYPE,
      PhysicalResourceId: `loxiha-rollout-${this.world.config.deploymentId}`,
      ResourceProperties: { ServiceToken: 'x', templates: ['lt-slot0:2', 'lt-slot1:2'] },
      OldResourceProperties: { ServiceToken: 'x', templates: ['lt-slot0:1', 'lt-slot1:1'] },
    };
    const started = await this.runtime.invoke(request);
    if (started.errorMessage) throw new Error(`rollout onEvent failed: ${started.errorMessage}`);
    const polled = { ...request, ...(started.result as Record<string, unknown>) };
    const deadline = Date.now() + 300_000;
    for (;;) {
      const r = await this.runtime.invoke(polled);
      if (r.errorMessage) throw new Error(`the rollout failed (CloudFormation would roll the deploy back): ${r.errorMessage}`);
      if ((r.result as { IsComplete?: boolean }).IsComplete) break;
      if (Date.now() > deadline) throw new Error(`the rollout did not complete in 300 s: ${this.state.rolloutSaid}`);
      await sleep(2000);
    }
    await Promise.all(comingUp);
    const after = [this.world.id(0), this.world.id(1)];
    this.timeline.mark('done', `rollout complete (IsComplete: CloudFormation's update finishes): slots on ${after.join(', ')}, the VIP on lb${1 - ownerSlot}`);
    return this.conclude(flows, this.secondsSinceZero(), { scenario: 'upgrade', slotsReplaced: [0, 1].filter((i) => before[i] !== after[i]).length, instances: { before, after } });
  }

  /**
   * lb`reboot` reboots: the same instance (EC2 says running throughout) and the same disk (its agent's
   * state), but every process gone and its kernel's LB state and runtime settings wiped — forwarding
   * off again, as a reboot leaves a kernel whose setting was never persisted. The VIP leaves it (the
   * peer's fast path) when it held it; a move back while it boots is refused; once up, its agent sets
   * its prerequisites again and it is ready, the backup, in sync.
   */
  private async rebootScenario(flows: Proc): Promise<{ result: DemoResult; reportPath: string; ok: boolean }> {
    const slot = this.o.reboot ?? 0;
    const id = this.world.id(slot);
    const host = SimVpc.host(slot);
    const wasOwner = (await this.ha(slot)).state === HA_ROLE.master;
    this.state.moveTo = 1 - slot;
    this.state.zero = Date.now();
    this.timeline.mark('failure', `lb${slot} (${id}, ${wasOwner ? 'the VIP owner' : 'the backup'}) reboots: dark while it restarts, its processes gone, its kernel's LB state wiped, net.ipv4.ip_forward back to 0; EC2 says running throughout`, { at: this.state.zero });
    // A rebooting kernel answers nothing: its links are dark until it is up again.
    this.mirror.markDead(slot);
    await this.takeDownHost(slot);
    this.lab.exec(host, 'sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
    if (wasOwner) await this.waitForSurvivor(1 - slot);
    // Nobody can know before its peer does (≈ 0.5–1 s of silence, the host answering nothing): the function hears it from the peer.
    await this.until(`the function told that lb${slot} is lost`, async () => this.state.peerLostReported === id, 30_000);
    // While it boots: a move back to it (an operator, a failback) is refused — it is not beating, not ready.
    const early = await this.runtime.invoke({ action: 'failover', to: id, reason: 'move back while it reboots' });
    const answer = (early.result ?? {}) as { outcome?: string; reason?: string };
    const moveWhileNotReady = early.errorMessage ? `error: ${early.errorMessage}` : `${answer.outcome}: ${answer.reason}`;
    this.timeline.mark('done', `a move to lb${slot} while it reboots: ${moveWhileNotReady}`);
    await sleep(2000);
    this.mirror.markAlive(slot);
    await this.startForwarder(slot);
    await this.startAgent(slot);
    this.timeline.mark('role', `lb${slot} booted; its agent starts from its saved state (same disk) and sets its kernel prerequisites again`);
    await this.untilBackupAgain(slot);
    const forwarding = this.lab.exec(host, 'sysctl', ['-n', 'net.ipv4.ip_forward']).trim();
    this.timeline.mark('role', `lb${slot} (${id}) is ready as the backup (net.ipv4.ip_forward = ${forwarding})${this.o.sync ? ', its sessions in sync with the owner' : ''}`);
    // Ok only if it forwards again and the move to it while it rebooted was refused.
    return this.conclude(flows, this.secondsSinceZero(), { scenario: 'reboot', slot, moveWhileNotReady }, forwarding === '1' && answer.outcome !== 'converged');
  }

  /**
   * Both secrets rotated under traffic, as `aws secretsmanager rotate-secret` (or the schedule) does:
   * the rotation function (its bundle, in a local runtime) creates each pending value, waits until
   * both agents hold it — and, for the API token, until kube-loxilb (a stand-in making its calls,
   * refreshing its token as it does) uses it — then makes it current. Three rounds: both secrets at
   * once, again at once, and while lb1's agent is down (the rotation waits for it to come back).
   */
  private async rotateScenario(flows: Proc): Promise<{ result: DemoResult; reportPath: string; ok: boolean }> {
    const arns = this.secretArns!;
    const kindOf = (arn: string) => (arn === arns[SECRET_KIND.apiToken] ? 'API token' : 'sync key');
    this.slotGroups(() => {});
    const rotation = await FailoverRuntime.start({
      dir: join(this.dir, 'rotation'),
      entry: 'lambda/rotation/handler.ts',
      functionArn: 'arn:aws:lambda:us-east-1:123456789012:function:loxiha-sim-rotation',
      timeoutSeconds: 300,
      env: {
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
        LOXIHA_AWS_ENDPOINT: this.proxy.endpoint,
        [ROTATION_ENV.deploymentId]: this.world.config.deploymentId,
        [ROTATION_ENV.slotGroups]: [0, 1].map((i) => slotGroupName(this.world.config.deploymentId, i)).join(','),
        [ROTATION_ENV.confirmTimeoutSeconds]: '240',
        [ROTATION_ENV.confirmPollSeconds]: '1',
      },
    });
    this.cleanups.push(() => rotation.stop());
    rotation.onLine = (l) => {
      if (l.message === 'waiting for the LB instances to take the pending value') this.timeline.mark('lease', `rotation (${l.kind === SECRET_KIND.apiToken ? 'API token' : 'sync key'}): waiting for ${(l.waitingFor as { id: string }[]).map((w) => `lb${this.indexOf(w.id)}`).join(', ')} to take the pending value`);
      else if (l.level === 'ERROR') this.say(`  rotation function error: ${String(l.message)}`);
    };
    const rotations = new SecretRotations((event) => rotation.invoke(event));
    rotations.onStep = (arn, step, r) => {
      if (step === 'createSecret' || step === 'finishSecret' || !r.ok) this.timeline.mark(r.ok ? 'done' : 'failure', `rotation (${kindOf(arn)}): ${step} — ${r.message}`);
    };
    this.proxy.rotations = rotations;
    this.cleanups.push(() => void (this.proxy.rotations = undefined));

    // kube-loxilb's calls to each agent: a health check every 2 s, the service again every 6 s, its token refreshed through the agent.
    const serviceFile = join(this.dir, 'kube-loxilb-service.json');
    writeFileSync(serviceFile, JSON.stringify(this.serviceBody('tcp')));
    const standIns = [0, 1].map((i) => {
      const p = this.lab.spawn(SimVpc.host(i), process.execPath, [join(PROGRAMS, 'kube-loxilb.mjs'), 'http://127.0.0.1:11111', this.run.tokenFiles.get(i)!, String(KUBE_LOXILB_LIFETIME_SECONDS), serviceFile, '600']);
      this.cleanups.push(() => void p.child.kill('SIGKILL'));
      return p;
    });
    await Promise.all(standIns.map((p) => p.waitFor(/"kube-loxilb":"ready"/)));
    const oldToken = this.run.currentToken(0);
    const rejected = async (i: number) => {
      const h = await this.ha(i);
      const sync = Object.entries((h.syncRejected ?? {}) as Record<string, number>).filter(([k]) => k !== 'kernel-refused').reduce((n, [, v]) => n + v, 0);
      return sync + Object.values((h.peerBeatsRejected ?? {}) as Record<string, number>).reduce((n, v) => n + v, 0);
    };
    const before = [await rejected(0), await rejected(1)];
    const sm = new SecretsManagerClient({ region: 'us-east-1', endpoint: this.proxy.endpoint, credentials: CREDENTIALS });
    this.cleanups.push(() => sm.destroy());
    const rotateBoth = async (why: string) => {
      this.timeline.mark('failure', `rotate-secret on both secrets (${why})`);
      for (const arn of Object.values(arns)) await sm.send(new RotateSecretCommand({ SecretId: arn }));
    };
    this.state.moveTo = 0;
    this.state.zero = Date.now();
    this.timeline.mark('failure', 'rotations begin: traffic through lb0, kube-loxilb calling both agents', { at: this.state.zero });
    await rotateBoth('round 1');
    await rotations.idle();
    await rotateBoth('round 2, at once after the first');
    await rotations.idle();
    // Round 3: lb1's agent down (stopped, as for a restart); kube-loxilb's calls to it wait, as its health check would.
    const lb1Before = await rejected(1);
    standIns[1]!.child.stdin!.write('pause\n');
    await this.lab.kill(this.run.procs.get('agent1')!);
    this.timeline.mark('failure', "lb1's agent stops (a restart); rotations start while it is down");
    await rotateBoth('round 3, lb1 down');
    await sleep(4000);
    await this.startAgent(1);
    standIns[1]!.child.stdin!.write('resume\n');
    this.timeline.mark('role', "lb1's agent is back: it reads every labelled version at start, and confirms");
    await rotations.idle();
    await this.untilBackupAgain(1);
    const seconds = this.secondsSinceZero();
    // What kube-loxilb saw, and whether the token from before is refused now (two rotations later).
    const counts = await Promise.all(
      standIns.map(async (p) => {
        p.child.stdin!.write('quit\n');
        const line = await p.waitFor(/\{"calls":\d+,"failed":\d+,"refreshes":\d+,"refreshFailed":\d+\}/, 10_000);
        return JSON.parse(line) as { calls: number; failed: number; refreshes: number; refreshFailed: number };
      }),
    );
    const apiCallsFailed = counts.reduce((n, c) => n + c.failed, 0);
    const syncBreaks = (await rejected(0)) - before[0]! + (lb1Before - before[1]!) + (await rejected(1));
    const oldTokenRefused = (await this.run.api(0, 'GET', '/config/loadbalancer/all', undefined, oldToken)).status === 401;
    const outcomes = rotations.outcomes;
    this.timeline.mark('done', `rotations: ${outcomes.filter((o) => o.ok).length}/${outcomes.length} done; kube-loxilb made ${counts.reduce((n, c) => n + c.calls, 0)} calls (${apiCallsFailed} failed), refreshed its token ${counts.reduce((n, c) => n + c.refreshes, 0)} times; the token from before is ${oldTokenRefused ? 'refused' : 'STILL ACCEPTED'}`);
    const own: Partial<DemoResult> = {
      scenario: 'rotate',
      apiCallsFailed,
      syncBreaks,
      fastPathTriggers: this.state.fastPathTriggers ?? 0,
      rotationsDone: outcomes.filter((o) => o.ok).length,
      rotationsStarted: outcomes.length,
      oldTokenRefused,
    };
    const clean = apiCallsFailed === 0 && syncBreaks === 0 && own.fastPathTriggers === 0 && own.rotationsDone === 6 && oldTokenRefused && (this.state.vipMoves ?? 0) === 0;
    return this.conclude(flows, seconds, own, clean);
  }

  /** A slot's new instance boots: the host's forwarders, the agent (fresh state), the services from kube-loxilb; ready as the backup. */
  private async bringUpReplacement(i: number, id: string): Promise<void> {
    await this.startForwarder(i);
    await this.startAgent(i, `state-lb${i}-${id}`);
    await this.configureServicesOn(i);
    this.timeline.mark('setup', `kube-loxilb installs the services on lb${i} (${id}), as it does on any LB it sees come back`);
    await this.untilBackupAgain(i);
    this.timeline.mark('role', `lb${i} (${id}) is the backup again: ready${this.o.sync ? ', its sessions in sync with the owner' : ''}`);
  }

  /** Until lb`i`'s agent says it is the backup, ready, and (with sync) in sync with the owner. */
  private untilBackupAgain(i: number): Promise<void> {
    return this.until(`lb${i} ready${this.o.sync ? ' and in sync' : ''}`, async () => {
      const h = await this.ha(i);
      return h.ready === 1 && h.state === HA_ROLE.backup && (!this.o.sync || h.sync === 1);
    }, 90_000);
  }

  /**
   * The slots' Auto Scaling groups (the AWS-behaviour layer's model) wired to this run: their
   * lifecycle actions delivered to the function as EventBridge would, a terminated instance's host
   * taken down, `onInService` told of each new instance in service.
   */
  private slotGroups(onInService: (slot: number, instanceId: string) => void): SlotGroups {
    const groups = this.world.slotGroups(
      systemClock,
      (event) => {
        void this.runtime.invoke(event).catch((e: Error) => this.say(`  (lifecycle delivery: ${e.message})`));
      },
      300_000,
      {
        onTerminated: async (i, id) => {
          await this.takeDownHost(i);
          this.timeline.mark('failure', `EC2 terminates ${id}: lb${i}'s processes gone, its kernel state wiped (a new instance has none)`);
        },
        onInService,
      },
    );
    this.proxy.slotGroups = groups;
    this.cleanups.push(() => void (this.proxy.slotGroups = undefined));
    return groups;
  }

  private secondsSinceZero(): number {
    return Math.round((Date.now() - this.state.zero!) / 10) / 100;
  }

  /**
   * A day-two scenario's end: the flows' settled report, the JSON line's figures (those every day-two
   * scenario gives, then the scenario's own), the summary and the HTML report. Ok when every
   * established flow was kept, and `alsoOk`.
   */
  private async conclude(flows: Proc, seconds: number, own: Partial<DemoResult>, alsoOk = true): Promise<{ result: DemoResult; reportPath: string; ok: boolean }> {
    await sleep(3000);
    const report = await finalReport(this.lab, flows);
    const base = this.result(report, undefined);
    const result: DemoResult = {
      ...base,
      vipMoves: this.state.vipMoves ?? 0,
      newConnectionsFailed: base.requestsFailed,
      alarmsFired: this.state.alarmsFired ?? 0,
      seconds,
      ...own,
    };
    this.printSummary(result, report);
    const reportPath = this.writeReport(result, report);
    return { result, reportPath, ok: result.flowsTotal > 0 && result.flowsKept === result.flowsTotal && alsoOk };
  }

  /** An instance gone: every process on its host killed, its kernel's LB state wiped. */
  private async takeDownHost(i: number): Promise<void> {
    killAllInNamespace(this.lab.ns(SimVpc.host(i)));
    const host = SimVpc.host(i);
    this.lab.exec(host, 'nft', ['flush', 'ruleset']);
    this.lab.exec(host, 'conntrack', ['-F']);
    for (let n = 0; n < 8; n++) {
      try {
        this.lab.exec(host, 'ip', ['rule', 'del', 'lookup', '7410']);
      } catch {
        break;
      }
    }
    try {
      this.lab.exec(host, 'ip', ['route', 'flush', 'table', '7410']);
    } catch {
      /* no such table: the backup never had the VIP's path */
    }
  }

  // ---- results ----------------------------------------------------------------------------------

  private result(r: FlowsReport, failbackSeconds: number | null | undefined): DemoResult {
    const zero = this.state.zero!;
    const lostOnes = new Set(lostFlows(r));
    const kept = r.flows.filter((f) => !lostOnes.has(f));
    const afterMove = this.state.eipMovedAt ?? zero;
    const firstThrough = r.series.find((b) => b.t >= afterMove && b.ok + b.replies > 0);
    if (firstThrough && this.o.mode !== 'rotate') this.timeline.mark('traffic', `first packets through ${this.state.moveTo !== undefined ? `lb${this.state.moveTo}` : 'the survivor'} after the move (replies and new connections)`, { at: firstThrough.t });
    const resumed = kept.map((f) => f.maxGapEndAt).filter((t): t is number => t !== null && t > zero);
    if (kept.length) this.timeline.mark('sessions', `${kept.length} of ${r.flows.length} established flows resumed, each on its own backend`, { at: resumed.length ? Math.max(...resumed) : zero });
    if (lostOnes.size) this.timeline.mark('sessions', `${lostOnes.size} established flows lost (${[...new Set([...lostOnes].map((f) => whyLost(f)!.replace(/\d+/g, 'N')))].join('; ')})`);
    const secs = (t: number | undefined) => (t === undefined ? null : Math.round((t - zero) / 10) / 100);
    return {
      failoverSeconds: secs(this.state.eipMovedAt),
      detectSeconds: this.o.mode === 'planned' ? 0 : secs(this.state.firstTrigger?.at),
      flowsKept: kept.length,
      flowsTotal: r.flows.length,
      maxPauseMs: kept.length ? Math.max(...kept.map((f) => f.maxGapMs)) : 0,
      requestsFailed: r.fresh.failed,
      trafficResumedSeconds: secs(firstThrough?.t),
      firstTrigger: this.o.mode === 'planned' ? 'manual' : (this.state.firstTrigger?.what ?? null),
      ...(failbackSeconds !== undefined ? { failbackSeconds } : {}),
      mode: this.o.mode,
      strategy: this.o.strategy,
      sync: this.o.sync,
      awsBehaviour: this.o.fast ? 'fast' : 'realistic',
    };
  }

  private printSummary(result: DemoResult, r: FlowsReport): void {
    this.say('');
    this.say('  phase      first at    until      what');
    for (const row of this.timeline.summary()) this.say(`  ${row.phase.padEnd(9)}  ${`${row.firstS.toFixed(2)} s`.padStart(8)}  ${`${row.lastS.toFixed(2)} s`.padStart(8)}   ${row.label}${row.marks > 1 ? ` (+${row.marks - 1} more)` : ''}`);
    this.say('');
    this.say(`  flows kept ${result.flowsKept}/${result.flowsTotal} · largest pause ${result.maxPauseMs} ms · new connections ok ${r.fresh.ok}, failed ${r.fresh.failed} · security groups dropped ${JSON.stringify(this.vpc.sgDrops())}`);
  }

  private writeReport(result: DemoResult, r: FlowsReport): string {
    mkdirSync(dirname(this.o.reportPath), { recursive: true });
    writeFileSync(
      this.o.reportPath,
      renderReport({
        title: `loxiha demo: ${this.o.mode} failover${this.o.failback ? ' and failback' : ''}${this.o.sync ? '' : ' without session sync'}`,
        scenario: `strategy ${this.o.strategy} · AWS behaviour ${this.o.fast ? 'fast' : 'realistic'} · session sync ${this.o.sync ? 'on' : 'off'}`,
        zero: this.state.zero!,
        marks: this.timeline.marks,
        series: r.series,
        result: result as unknown as Record<string, unknown>,
      }),
    );
    return this.o.reportPath;
  }

  /** For --keep: how to look around while it runs. */
  exploreHints(): string[] {
    const n = (i: number) => this.lab.ns(SimVpc.host(i));
    const cli = join(this.run.dir, 'cli.mjs');
    return [
      `  the AWS emulator: AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test aws --endpoint-url ${this.moto.endpoint} --region us-east-1 ec2 describe-network-interfaces`,
      ...[0, 1].map((i) => `  lb${i}: sudo ip netns exec ${n(i)} ${process.execPath} ${cli} get ha --token-file ${this.run.tokenFile}   (also: get lb, get ct)`),
      `  through the EIP: sudo ip netns exec ${this.lab.ns('cl0')} curl -s http://${SIM_EIP}/`,
      '  Ctrl-C stops everything and removes what the demo made.',
    ];
  }
}
