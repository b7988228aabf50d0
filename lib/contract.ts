/**
 * Where the CDK app, the failover function and the agent meet.
 *
 * Everything that two of the three programs must agree on lives here: tag keys,
 * metric names and dimensions, ports, and the schema of the agent's fast-path
 * request. Pure TypeScript (zod and node:crypto only): no aws-cdk-lib, no SDK.
 */
import { createHash } from 'node:crypto';
import * as z from 'zod';

/** Tag keys. Every resource the failover touches carries `deployment`. */
export const TAG = {
  /** Per-deployment id, so two stacks in one account never touch each other's resources. */
  deployment: 'loxiha:deployment',
  /** What the resource is to loxiha (see ROLE). */
  role: 'loxiha:role',
  /** Fencing token of the lease holder that created or last moved the resource. */
  epoch: 'loxiha:epoch',
  /** Stable order of the LB instances (0-based); instance 0 is the preferred owner. */
  instanceIndex: 'loxiha:instance-index',
  /** Name tag, for the console. */
  name: 'Name',
  /**
   * Set by the failover function on an LB instance whose Auto Scaling group is terminating it (the
   * termination lifecycle hook): such an instance is never where the VIP goes, nor where it stays.
   */
  draining: 'loxiha:draining',
  /** On each of the deployment's secrets: which one it is (SECRET_KIND); the rotation function reads it. */
  secret: 'loxiha:secret',
  /**
   * The VIP group a floating resource belongs to (its floating subnet, its loxi-eni). A resource
   * without it belongs to DEFAULT_GROUP: what deployments made before groups existed hold.
   */
  group: 'loxiha:group',
} as const;

/**
 * A VIP group (a VIP, its EIP and its strategy's resources) is the unit the failover function
 * moves and an agent owns. One group unless the config lists several: DEFAULT_GROUP, whose lease
 * and resources are named as before groups existed, so an existing deployment upgrades in place.
 */
export const DEFAULT_GROUP = 'default';
/** A group's name: short, lowercase, usable in tags, lease keys, metric dimensions and kube-loxilb pool names. */
export const GROUP_NAME_PATTERN = /^[a-z][a-z0-9-]{0,30}$/;

/** The group a tagged resource belongs to (untagged: DEFAULT_GROUP). */
export function groupOfTag(value: string | undefined): string {
  return value ?? DEFAULT_GROUP;
}

/** The DynamoDB key of a group's failover lease (DEFAULT_GROUP keeps the key of a deployment without groups). */
export function leaseKeyOf(deploymentId: string, group: string): string {
  return group === DEFAULT_GROUP ? `lease#${deploymentId}` : `lease#${deploymentId}#group#${group}`;
}

/** The deployment's secrets, as the agents, the rotation function and the metrics name them. */
export const SECRET_KIND = {
  /** The token of the agents' LoxiLB API (kube-loxilb → agents). */
  apiToken: 'api-token',
  /** The agents' shared key: peer heartbeats and the session-sync channel. */
  syncKey: 'sync-key',
} as const;
export type SecretKind = (typeof SECRET_KIND)[keyof typeof SECRET_KIND];

/** Secrets Manager's staging labels (AWS's names): a rotation adds PENDING, then moves CURRENT to it (the old one becomes PREVIOUS). */
export const SECRET_STAGE = { current: 'AWSCURRENT', pending: 'AWSPENDING', previous: 'AWSPREVIOUS' } as const;

/**
 * A secret version's fingerprint as the agents report it in `SecretHeld` (a metric value, so a
 * number: 24 bits of SHA-256 of the version id, never of the value).
 */
export function secretVersionFingerprint(versionId: string): number {
  return Number.parseInt(createHash('sha256').update(versionId).digest('hex').slice(0, 6), 16);
}

export const ROLE = {
  lbInstance: 'lb-instance',
  floatingSubnet: 'floating-subnet',
  floatingRouteTable: 'floating-route-table',
  loxiEni: 'loxi-eni',
  eip: 'eip',
  /** A slot's own interface: its fixed address (peers, kube-loxilb; `route`: the ingress IP), attached to whichever instance serves the slot. */
  slotInterface: 'slot-interface',
} as const;

/** Device index at which a slot's interface is attached to the instance serving it. */
export const SLOT_INTERFACE_DEVICE_INDEX = 1;

/**
 * The lifecycle hooks of each slot's Auto Scaling group. Launching: the function attaches the slot's
 * interface and turns source/dest check off before the instance goes in service. Terminating: the
 * function moves the VIP off the instance before it goes.
 */
export const LIFECYCLE_HOOKS = { launching: 'loxiha-launching', terminating: 'loxiha-terminating' } as const;

/** What each lifecycle hook carries as its notification metadata: whose slot it is. */
export const lifecycleHookMetadataSchema = z.object({ deployment: z.string().min(1), slot: z.number().int().min(0).max(15) }).strict();
export type LifecycleHookMetadata = z.infer<typeof lifecycleHookMetadataSchema>;

/**
 * The custom resource whose update replaces the slots' instances after a deploy changed their launch
 * template: one slot at a time, the backup's first, so the VIP moves once (the failover function, as the
 * provider framework's onEvent and isComplete handler).
 */
export const ROLLOUT_RESOURCE_TYPE = 'Custom::LoxihaRollout';

/** How long a slot's new instance has to report ready: its creation (signal) or its rollout step fails after. */
export const SLOT_READY_TIMEOUT_SECONDS = 900;

/** Description put on the floating ENI, as LoxiLB names it. */
export const LOXI_ENI_DESCRIPTION = 'loxi-eni';

/** CloudWatch metrics the agent publishes and the orchestrator and alarms read. */
export const METRICS = {
  namespace: 'Loxiha',
  dimensions: {
    deployment: 'Deployment',
    instanceId: 'InstanceId',
    /** The slot (0-based): `AgentHeartbeat` is also sent per slot, so that an alarm follows the slot across instance replacements. */
    slot: 'Slot',
    /** The secret (SECRET_KIND) a `SecretHeld` datum is about. */
    secret: 'Secret',
    /** The VIP group (several groups): its owner, its in-sync, its moves. */
    group: 'Group',
  },
  /**
   * Several VIP groups: per Deployment + Group, the slot that owns the group, sent by its owner's
   * agent with each beat (Maximum per period: the owner over time), and `SessionSyncInSync` per
   * Deployment + Group from every agent (Minimum: 1 only while every peer is in sync for it).
   */
  groupOwnerSlot: 'GroupOwnerSlot',
  /** 1 per beat, high resolution (StorageResolution 1), every 5 s. */
  heartbeat: 'AgentHeartbeat',
  /** 1 when the agent's session table is in sync with its peer, 0 otherwise. Sent with each beat. */
  sessionsInSync: 'SessionSyncInSync',
  /** Age in seconds of the oldest conntrack change not yet acknowledged by the peer. */
  syncLagSeconds: 'SessionSyncLagSeconds',
  /** 1 while the agent's kernel prerequisites hold (it forwards as an LB must), 0 otherwise. Sent with each beat. */
  agentReady: 'AgentReady',
  /**
   * 1 when the agent serves the owner's services (the owner's digest on the sync stream is its own and
   * none of the owner's synced flows was refused for want of a service), 0 when they differ. The
   * function prefers a survivor that matches, and says so when the only one left does not.
   */
  servicesMatch: 'ServicesMatch',
  /**
   * Per instance and secret (dimension Secret): the fingerprint (secretVersionFingerprint) of the
   * newest version the agent is ready for — the rotation's pending one once the agent accepts it
   * (and, for the API token, once its callers use it), else the current one. The rotation function
   * moves AWSCURRENT only when every in-service instance reports the pending version.
   */
  secretHeld: 'SecretHeld',
  /** Emitted by the failover function (EMF). */
  failoverDuration: 'FailoverDuration',
  failoverPhaseDuration: 'FailoverPhaseDuration',
  failovers: 'Failovers',
  failoverErrors: 'FailoverErrors',
  /** One per invocation of the failover function, whatever it was asked (status and rejected events included). */
  invocations: 'FailoverInvocations',
} as const;

/** The failover function's name in logs and metrics (Powertools' `service` dimension). */
export const FAILOVER_SERVICE_NAME = 'loxiha-failover';

/**
 * The phases a failover's steps belong to: the function emits `FailoverPhaseDuration` per phase,
 * the dashboard graphs each of them.
 */
export const FAILOVER_PHASES = ['observe', 'sync', 'detach', 'subnet', 'eni', 'attach', 'eip', 'route'] as const;
export type FailoverPhase = (typeof FAILOVER_PHASES)[number];
/** The dimension that names the phase on `FailoverPhaseDuration`. */
export const PHASE_DIMENSION = 'phase';

/**
 * How the VIP moves: `eni` re-creates the floating subnet and loxi-eni in the survivor's AZ (LoxiLB's
 * how-to); `route` re-points the EIP to the survivor's ingress IP and the overlay VIP's /32 routes to
 * its interface (nothing created or detached).
 */
export const VIP_STRATEGIES = ['eni', 'route'] as const;

/** What happens when instance 0 is healthy again after a failover: stay (`never`) or move back (`preferred`). */
export const FAILBACK_POLICIES = ['never', 'preferred'] as const;
/** Minimum time between two voluntary moves of the VIP (and healthy time before a failback). */
export const DEFAULT_HOLD_DOWN_SECONDS = 60;

/** A heartbeat older than this is stale (the agent beats every 5 s). */
export const HEARTBEAT_STALE_SECONDS = 30;

export const PORTS = {
  /** LoxiLB-compatible REST API (kube-loxilb talks to it). */
  agentApi: 11111,
  /** Session sync between peers (authenticated). */
  peerSync: 22222,
  /** Peer heartbeat (UDP, authenticated). */
  peerHeartbeat: 22223,
} as const;

/** EventBridge source and detail types of the failover function's events. */
export const EVENTS = {
  source: 'loxiha.failover',
  started: 'Failover Started',
  succeeded: 'Failover Succeeded',
  failed: 'Failover Failed',
  /** A slot's instance is being taken away by its Auto Scaling group: no redundancy until its replacement is ready. */
  slotInstanceTerminating: 'Slot Instance Terminating',
  /** A slot's replacement instance has the slot's interface and goes in service (redundancy back once its agent is ready). */
  slotInstanceLaunched: 'Slot Instance Launched',
  /** A slot's agent has served other services than the owner for minutes (its ServicesMatch alarm): a failover there would lose flows. */
  slotServicesDiffer: 'Slot Services Differ',
  /** The slot's services match the owner's again. */
  slotServicesMatch: 'Slot Services Match',
} as const;

export const ipv4Schema = z.string().regex(/^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/, 'must be an IPv4 address');

/** LoxiLB's HA states, as the agent reports them (`GET /config/cistate/all`, `loxiha get ha`, peer heartbeats). */
export const HA_ROLE = { master: 'MASTER', backup: 'BACKUP', fault: 'FAULT', stop: 'STOP', notDefined: 'NOT_DEFINED' } as const;

export const instanceIdSchema = z.string().regex(/^i-[0-9a-f]{8,17}$/, 'must be an EC2 instance id (i-…)');

/**
 * The agents' own entry to the failover function: an alias only the LB instances' role may invoke,
 * whose invocations the function accepts as fast-path requests and nothing else.
 */
export const AGENT_ENTRY_ALIAS = 'agents';

/** Reasons the fast path gives; a request giving one is a fast-path request and must be one whole. */
export const FAST_PATH_REASONS = ['peer-heartbeat-lost', 'peer-unhealthy', 'peer-backup-lost'] as const;

/**
 * The agents' fast path: the backup's when it loses the owner (`peer-heartbeat-lost`: move the VIP
 * now), the owner's when it loses the backup (`peer-backup-lost`: nothing moves, but the backup is not
 * a place for the VIP until it beats again — its last heartbeat stays fresh for tens of seconds).
 */
export const fastPathRequestSchema = z
  .object({
    action: z.literal('failover'),
    from: instanceIdSchema,
    reason: z.enum(FAST_PATH_REASONS),
  })
  .strict();
export type FastPathRequest = z.infer<typeof fastPathRequestSchema>;

/** Alarm names are built from these so the function can map an alarm back to an instance. */
export const ALARM_KIND = { heartbeat: 'heartbeat', statusCheck: 'status-check', servicesDiffer: 'services-differ' } as const;
export type AlarmKind = (typeof ALARM_KIND)[keyof typeof ALARM_KIND];

/**
 * The prefix of every name a person reads (stack, alarms, dashboard, Name tags): the deployment id
 * once, with "loxiha" in front unless the id already says it (`loxiha`, `loxiha-prod` stay as they
 * are; `prod` becomes `loxiha-prod`).
 */
export function namePrefix(deploymentId: string): string {
  return deploymentId.startsWith('loxiha') ? deploymentId : `loxiha-${deploymentId}`;
}

/** The Name of a VIP group's own resources (its EIP): the prefix, then the group's name unless it is DEFAULT_GROUP. */
export function groupResourceName(deploymentId: string, group: string): string {
  return group === DEFAULT_GROUP ? namePrefix(deploymentId) : `${namePrefix(deploymentId)}-${group}`;
}

/** The Auto Scaling group (of one) that serves slot `slot`: named, so that alarms on EC2's per-group metrics can name it. */
export function slotGroupName(deploymentId: string, slot: number): string {
  return `${namePrefix(deploymentId)}-slot${slot}`;
}

export function alarmName(deploymentId: string, instanceIndex: number, kind: AlarmKind): string {
  return `${namePrefix(deploymentId)}-lb${instanceIndex}-${kind}`;
}

/** Parses an alarm name made by alarmName; undefined when it is not one of this deployment's. */
export function parseAlarmName(
  deploymentId: string,
  name: string,
): { instanceIndex: number; kind: AlarmKind } | undefined {
  const prefix = `${namePrefix(deploymentId)}-lb`;
  if (!name.startsWith(prefix)) return undefined;
  const m = /^(\d+)-(heartbeat|status-check|services-differ)$/.exec(name.slice(prefix.length));
  if (!m) return undefined;
  return { instanceIndex: Number(m[1]), kind: m[2] as AlarmKind };
}

/** Environment of the failover function, set by the CDK app. */
export const FUNCTION_ENV = {
  deploymentId: 'LOXIHA_DEPLOYMENT_ID',
  vpcId: 'LOXIHA_VPC_ID',
  cloudCidrBlock: 'LOXIHA_CLOUD_CIDR_BLOCK',
  vip: 'LOXIHA_VIP',
  eipAllocationId: 'LOXIHA_EIP_ALLOCATION_ID',
  floatingRouteTableId: 'LOXIHA_FLOATING_ROUTE_TABLE_ID',
  strategy: 'LOXIHA_STRATEGY',
  routeTableIds: 'LOXIHA_ROUTE_TABLE_IDS',
  ingressIps: 'LOXIHA_INGRESS_IPS',
  leaseTable: 'LOXIHA_LEASE_TABLE',
  topicArn: 'LOXIHA_TOPIC_ARN',
  eventBusName: 'LOXIHA_EVENT_BUS',
  failback: 'LOXIHA_FAILBACK',
  holdDownSeconds: 'LOXIHA_HOLD_DOWN_SECONDS',
  slotCount: 'LOXIHA_SLOT_COUNT',
  readyTimeoutSeconds: 'LOXIHA_READY_TIMEOUT_SECONDS',
  /** The VIP group the VIP, EIP and floating resources above belong to (unset: DEFAULT_GROUP). */
  group: 'LOXIHA_GROUP',
  /** Several VIP groups, a JSON array of {name, vip, eipAllocationId, preferredSlot?, cloudCidrBlock?, floatingRouteTableId?, ingressIps?}. */
  groups: 'LOXIHA_GROUPS',
} as const;

/** The failover function's environment for these settings (unset values left out). */
export function functionEnv(values: Partial<Record<keyof typeof FUNCTION_ENV, string | number | string[] | object[]>>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, name] of Object.entries(FUNCTION_ENV)) {
    const v = values[key as keyof typeof FUNCTION_ENV];
    if (v === undefined) continue;
    // Lists of strings are comma-separated; lists of objects (the groups) are JSON.
    env[name] = Array.isArray(v) ? (v.every((x) => typeof x === 'string') ? v.join(',') : JSON.stringify(v)) : String(v);
  }
  return env;
}

/** The secret-rotation function's environment (set by the CDK app, read by lambda/rotation). */
export const ROTATION_ENV = {
  deploymentId: 'LOXIHA_DEPLOYMENT_ID',
  /** The slots' Auto Scaling groups, comma-separated: their instances must confirm a pending secret. */
  slotGroups: 'LOXIHA_SLOT_GROUPS',
  /** How long the set step waits for every instance to confirm (bounded by the function's time left). */
  confirmTimeoutSeconds: 'LOXIHA_CONFIRM_TIMEOUT_SECONDS',
  /** How often it looks while waiting. */
  confirmPollSeconds: 'LOXIHA_CONFIRM_POLL_SECONDS',
} as const;

/** The custom resource that finds or allocates the deployment's EIP (uninstall.retainEip). */
export const EIP_CLAIM_RESOURCE_TYPE = 'Custom::LoxihaEip';

/** The rotation function's name in its logs. */
export const ROTATION_SERVICE_NAME = 'loxiha-rotation';

/** Where an LB instance keeps the agent API token (root only, written at boot); the CLI reads it by default. */
export const AGENT_API_TOKEN_FILE = '/etc/loxiha/api-token';

/** Where an LB instance keeps the peers' shared key (peer heartbeats, session sync), root only, written at boot. */
export const SYNC_KEY_FILE = '/etc/loxiha/sync-key';

/**
 * The agent's configuration file (/etc/loxiha/agent.json): written by the CDK app from the
 * deployment's values (and by the tests and the local simulation), read by the agent.
 */
export const agentConfigSchema = z
  .object({
    deploymentId: z.string().min(1),
    /** LoxiLB instance name reported by the API. */
    instanceName: z.string().min(1).default('llb-inst0'),
    instanceIndex: z.number().int().min(0),
    selfIp: ipv4Schema,
    /** The other LB instances: primary IP, and (route strategy) ingress IP. */
    peers: z.array(z.object({ index: z.number().int().min(0), ip: ipv4Schema, ingressIp: ipv4Schema.optional() }).strict()),
    vip: ipv4Schema,
    /**
     * How the VIP reaches this instance (the deployment's strategy). `eni`: loxi-eni carries it; the
     * role follows that interface. `route`: clients' packets arrive at this instance's `ingressIp`
     * (the EIP's association) and are served as the VIP's; the role follows the EIP.
     */
    strategy: z.enum(VIP_STRATEGIES).default('eni'),
    ingressIp: ipv4Schema.optional(),
    cloudCidrBlock: z.string(),
    /** HA role reported without an `aws` section (tests, the packet path alone), or until IMDS first answers. */
    initialRole: z.enum([HA_ROLE.master, HA_ROLE.backup, HA_ROLE.notDefined]).default(HA_ROLE.notDefined),
    api: z
      .object({
        listen: ipv4Schema.default('0.0.0.0'),
        port: z.number().int().min(1).max(65535).default(PORTS.agentApi),
        /** File holding a bearer token; when set every request must carry it. */
        tokenFile: z.string().optional(),
        /**
         * The lifetime the OAuth refresh answer gives kube-loxilb's token (`expires_in`). kube-loxilb
         * refreshes five minutes before it ends, so 360 s has it take the newest token every minute
         * (a rotation's pending one as soon as this agent holds it). Must exceed 300.
         */
        tokenLifetimeSeconds: z.number().int().min(301).max(86_400).default(360),
      })
      .strict()
      .prefault({}),
    sync: z
      .object({
        port: z.number().int().min(1).max(65535).default(PORTS.peerSync),
        heartbeatPort: z.number().int().min(1).max(65535).default(PORTS.peerHeartbeat),
        /** File holding the peers' shared key (on AWS written at boot from Secrets Manager, root only). */
        secretFile: z.string().optional(),
        /**
         * Session sync (conntrack streaming to the peers). Off, established flows break on a
         * failover; peer heartbeats and the fast path stay on (the sync port still answers the
         * peers' liveness check). On by default; off only to see the difference (the demo's --no-sync).
         */
        sessions: z.boolean().default(true),
        /**
         * Peer heartbeat period, and how long without a beat before the peer is suspected (then lost
         * when the TCP check fails too, ≤ 300 ms): the fast path fires about half a second after an
         * agent dies (BENCHMARKS.md).
         */
        heartbeatIntervalMs: z.number().int().min(50).max(5000).default(100),
        /**
         * Once it syncs sessions the agent runs real-time (SCHED_RR at this priority, its helpers
         * too), as conntrackd does by default: the stream's lag at 10,000 new flows/s on a busy host
         * is p99 7–9 ms real-time against 20–50 ms at ordinary priority. 0: nice -10 instead.
         */
        realtimePriority: z.number().int().min(0).max(99).default(10),
        peerLossAfterMs: z.number().int().min(300).max(30_000).default(500),
      })
      .strict()
      .prefault({}),
    aws: z
      .object({
        region: z.string(),
        failoverFunctionName: z.string(),
        metricNamespace: z.string(),
        /** Endpoint override for an AWS emulator (the local simulation); unset on AWS. */
        endpoint: z.url({ protocol: /^https?$/ }).optional(),
        /** Instance metadata endpoint (IMDSv2); overridden only by tests and the simulation. */
        imdsEndpoint: z.url({ protocol: /^https?$/ }).default('http://169.254.169.254'),
        /** How often the agent beats to CloudWatch (the alarms look at 10 s periods). */
        heartbeatIntervalMs: z.number().int().min(1000).max(10_000).default(5000),
        /**
         * The secrets the agent keeps its files in step with (Secrets Manager ARNs): every version with
         * a staging label is written (current first, then pending, then previous), so a rotation is
         * followed without a restart. Unset: the files are what boot wrote.
         */
        secrets: z
          .object({
            apiToken: z.string().startsWith('arn:').optional(),
            syncKey: z.string().startsWith('arn:').optional(),
            /** How often the secrets' labels are looked at (one DescribeSecret each; values are read only when a version is new). */
            pollMs: z.number().int().min(1000).max(300_000).default(30_000),
            /**
             * A rotation's pending API token counts as taken by the callers once none has called with
             * another for this long (kube-loxilb calls every 2 s and refreshes every minute).
             */
            callersSwitchedAfterMs: z.number().int().min(3000).max(600_000).default(20_000),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    /**
     * VIP groups besides the default one (the top-level `vip`, `ingressIp`). Each has its own VIP, the
     * public address kube-loxilb names its services by (its pool's EIP: a service for that address is
     * served on the group's VIP, whatever privateIP kube-loxilb sent, since kube-loxilb has one
     * privateCIDR for every pool) and, with `route`, this instance's ingress IP for it.
     */
    groups: z
      .array(
        z
          .object({
            name: z.string().regex(GROUP_NAME_PATTERN).refine((n) => n !== DEFAULT_GROUP, `"${DEFAULT_GROUP}" is the top-level vip's group`),
            vip: ipv4Schema,
            publicIp: ipv4Schema.optional(),
            ingressIp: ipv4Schema.optional(),
            /** route: each peer's ingress IP for this group, by peer index (synced flows' destinations are rewritten to ours). */
            peerIngressIps: z.record(z.string().regex(/^\d+$/), ipv4Schema).optional(),
          })
          .strict(),
      )
      .max(31)
      .default([]),
    /** The default group's public address (its EIP), when known: kube-loxilb's services for it. */
    publicIp: ipv4Schema.optional(),
    /** Where the services are persisted. */
    stateDir: z.string().default('/var/lib/loxiha'),
    /** nftables table the agent owns (inet family). */
    nftTable: z.string().regex(/^[a-z][a-z0-9_]{0,30}$/).default('loxiha'),
    /** Interfaces carrying load-balanced traffic (flowtable fast path where the kernel has it). */
    dataInterfaces: z.array(z.string().regex(/^[\w.-]{1,15}$/)).default([]),
    /** Seed of the flow hash: identical on every instance so the same flow picks the same endpoint. */
    hashSeed: z.number().int().min(0).max(0xffffffff).default(0x10a1ba),
  })
  .strict()
  .refine((c) => c.strategy !== 'route' || c.ingressIp !== undefined, { path: ['ingressIp'], message: 'strategy "route" needs this instance\'s ingress IP' })
  .superRefine((c, ctx) => {
    const names = new Set<string>();
    const vips = new Set([c.vip]);
    for (const [i, g] of c.groups.entries()) {
      if (names.has(g.name)) ctx.addIssue({ code: 'custom', path: ['groups', i, 'name'], message: `"${g.name}" is already a group's name` });
      if (vips.has(g.vip)) ctx.addIssue({ code: 'custom', path: ['groups', i, 'vip'], message: `${g.vip} is already a group's VIP` });
      if (c.strategy === 'route' && !g.ingressIp) ctx.addIssue({ code: 'custom', path: ['groups', i, 'ingressIp'], message: 'strategy "route" needs this instance\'s ingress IP for each group' });
      if (!g.publicIp) ctx.addIssue({ code: 'custom', path: ['groups', i, 'publicIp'], message: "needed: kube-loxilb names a group's services by its EIP" });
      names.add(g.name);
      vips.add(g.vip);
    }
  });

export type AgentConfig = z.infer<typeof agentConfigSchema>;
export type AgentConfigInput = z.input<typeof agentConfigSchema>;
