/**
 * The agent: adopts the kernel table it owns, reconciles it with the persisted services,
 * probes endpoints, and serves the LoxiLB-compatible API. Stopping it (or a crash) leaves
 * the nftables table in place, so traffic keeps flowing while it restarts.
 */
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';
import { createApi } from './api/server.ts';
import { type AgentConfig, loadAgentConfig } from './config.ts';
import { listConntrack } from './conntrack.ts';
import { Datapath } from './datapath/controller.ts';
import { Nft } from './datapath/nft.ts';
import { Imds } from './ha/imds.ts';
import type { SyncState } from './ha/heartbeat.ts';
import { fastPathDecision } from './ha/fast-path.ts';
import { SecretRing } from './secret-ring.ts';
import { PeerLink } from './ha/peer-link.ts';
import { ensurePrerequisites, KERNEL_PREREQUISITES, PREREQUISITE_CHECK_MS, type Readiness } from './host/prerequisites.ts';
import { SessionSync, type SessionSyncOptions } from './sync/session-sync.ts';
import { type LedgerView, mergePlan, ServiceLedger } from './services/ledger.ts';
import { SERVICE_MARK_FILTER } from './sync/conntrack-events.ts';
import { hostAnswers, tcpReach } from './net/tcp-connects.ts';
import { listen } from './net/listen.ts';
import type { PeerBeat } from './ha/peer-message.ts';
import { type Observation, observeIngressOnAws, observeLocally, observeOnAws, RoleWatcher } from './ha/role.ts';
import { pathSlotOf, runIp, VipPath } from './ha/vip-path.ts';
import { GroupRoles } from './ha/group-roles.ts';
import { type AgentVipGroup, agentVipGroups, groupAliases, groupDestinationRewrites, groupOfService, servedOnGroupVip } from './ha/vip-groups.ts';
import { groupRouteMark } from './datapath/render.ts';
import { type FastPathRequest, HA_ROLE, SECRET_KIND, type SecretKind } from '../lib/contract.ts';
import { SecretMirror } from './secret-mirror.ts';
import { type AddressAliases, type Service, serviceKey } from './services/model.ts';
import { Prober } from './probes.ts';
import { ServiceRegistry } from './services/registry.ts';
import { StateStore } from './services/store.ts';

/**
 * The second check on a silent peer: a TCP connection to its sync port within this long. Its kernel
 * completes the handshake from the listen queue even while its agent is stalled; a dead agent
 * answers with a reset, a dead instance not at all.
 */
const PEER_CONFIRM_TIMEOUT_MS = 300;

/** How often the agent looks at where the VIP lives: IMDS on AWS (the function moves it in seconds), local addresses elsewhere. */
const ROLE_POLL_MS = 1000;
const LOCAL_ROLE_POLL_MS = 200;
/** How often the secret files (API token, sync key) are looked at: a rotated value is picked up within this. */
const SECRET_RELOAD_MS = 5000;

function log(level: 'info' | 'warn' | 'error', msg: string, extra: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...extra })}\n`);
}

export const AGENT_USAGE = `usage: agent [--config FILE] [--probe-interval-ms N] [--check-interval-ms N]

The loxiha agent: the LoxiLB-compatible API, the in-kernel load balancer (nftables), endpoint
probes, heartbeats and the HA role. Runs as the loxiha-agent systemd service on the LB instances.

  --config FILE            agent configuration (default /etc/loxiha/agent.json)
  --probe-interval-ms N    how often each endpoint is probed (default 2000)
  --check-interval-ms N    how often the kernel table is checked against what was applied (default 5000)
  -h, --help               this text`;

export class UsageError extends Error {}

/** The command line, validated: a UsageError names what is wrong. */
export function parseAgentArgs(argv: string[]) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', default: '/etc/loxiha/agent.json' },
        'probe-interval-ms': { type: 'string', default: '2000' },
        'check-interval-ms': { type: 'string', default: '5000' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  for (const k of ['probe-interval-ms', 'check-interval-ms'] as const) {
    const n = Number(values[k]);
    if (!Number.isInteger(n) || n < 50 || n > 600_000) throw new UsageError(`--${k} must be a whole number of milliseconds between 50 and 600000, got '${values[k]}'`);
  }
  return values;
}

export async function main(values: ReturnType<typeof parseAgentArgs>): Promise<{ stop: () => Promise<void> }> {
  const config = loadAgentConfig(values.config!);
  // Ready only while the kernel forwards as an LB must: checked now and every few seconds, set back when it drifted.
  let readiness = await ensurePrerequisites();
  const sayReadiness = (r: Readiness, before?: Readiness) => {
    if (r.set.length) log('warn', 'kernel settings had drifted; set back', { set: r.set });
    if (!r.ready) log('error', 'not ready: the kernel is not set as a load balancer needs', { notReady: r.notReady });
    else if (!before?.ready) log('info', 'ready: kernel prerequisites hold', { checked: KERNEL_PREREQUISITES.map((p) => p.key) });
  };
  sayReadiness(readiness);
  const prerequisiteTimer = setInterval(() => {
    void ensurePrerequisites().then((r) => {
      sayReadiness(r, readiness);
      readiness = r;
    });
  }, PREREQUISITE_CHECK_MS);
  prerequisiteTimer.unref();
  const nft = new Nft(config.nftTable);
  const flowtables = await nft.flowtablesSupported();
  if (!flowtables) log('warn', 'this kernel has no nftables flowtables: established flows take the regular path');
  // The VIP groups (one unless the config lists more): each served on its VIP, its flows routed by its own mark.
  const groups = agentVipGroups(config);
  // Route strategy: clients' packets arrive at this instance's ingress IP (per group), served as the VIP's.
  const aliases: AddressAliases = groupAliases(groups, config.strategy);
  const routeMarkOf = groups.length > 1 ? (s: Service) => {
    const g = groupOfService(s, groups);
    return g.position === 0 ? undefined : groupRouteMark(g.position);
  } : undefined;
  const datapath = new Datapath(nft, { table: config.nftTable, hashSeed: config.hashSeed, flowtableDevices: flowtables && config.dataInterfaces.length ? config.dataInterfaces : undefined, aliases, ...(routeMarkOf ? { routeMarkOf } : {}) });
  datapath.onWarn = (msg, extra) => log('warn', msg, extra);
  const store = new StateStore(config.stateDir);
  const saved = store.load();
  const t0 = performance.now();
  const adoption = await datapath.adopt(saved.services, new Set(saved.down));
  const ms = Math.round(performance.now() - t0);
  log('info', adoption === 'adopted' ? 'adopted the existing nftables table unchanged' : 'applied the services to nftables', { services: saved.services.length, down: saved.down.length, table: config.nftTable, ms });
  const registry = new ServiceRegistry(datapath, store);
  registry.onError = (msg, extra) => log('error', msg, extra);
  // When each service was last changed and which were deleted: how two agents that differ agree again (services/ledger.ts).
  const ledger = new ServiceLedger(config.stateDir);
  registry.onApplied = (changes, stamps) => ledger.record(changes, stamps ? (k) => stamps.get(k) ?? Date.now() : undefined);
  const servicesLedger = {
    view: () => ledger.view(registry.list()),
    merge: async (theirs: LedgerView): Promise<number> => {
      const plan = mergePlan(ledger.view(registry.list()), theirs);
      ledger.remember(plan.forget);
      if (!plan.set.length && !plan.del.length) return 0;
      log('info', 'services: taking the peer’s later changes', { set: plan.set.map((x) => serviceKey(x.service)).slice(0, 20), deleted: plan.del.map((d) => d.key).slice(0, 20), total: plan.set.length + plan.del.length });
      return registry.merge(plan.set, plan.del);
    },
  };

  const prober = new Prober({
    intervalMs: Number(values['probe-interval-ms']),
    onChange: (down) => {
      log('warn', 'endpoint health changed', { down: [...down] });
      registry.setDown(down).catch((e: Error) => log('error', 'could not apply endpoint health', { error: e.message }));
    },
  });
  // Endpoints start from their last verdicts: a restart does not put a dead endpoint back in the slots.
  prober.sync(saved.services, new Set(saved.down));
  // Session sync (started below) checks synced flows against the services and streams while this
  // instance owns the VIP: it hears of service and role changes.
  let syncRef: SessionSync | undefined;
  registry.onChanged = (list) => {
    prober.sync(list);
    syncRef?.servicesChanged();
  };

  // The table is the agent's: checked every few seconds, replaced in full when it is not what was applied.
  const checkMs = Number(values['check-interval-ms']);
  const checker = setInterval(() => {
    datapath.check().catch((e: Error) => log('error', 'could not check or repair the nftables table', { error: e.message }));
  }, checkMs);
  checker.unref();

  // One metadata client (one session token) for the role watcher and the heartbeat's instance id.
  const imds = config.aws ? new Imds(config.aws.imdsEndpoint) : undefined;
  const several = groups.length > 1;
  // A role per group, from where its VIP lives; the agent is MASTER (streams its flows) while it owns any.
  const roles = new GroupRoles(groups, (g) => {
    const watcher = new RoleWatcher({
      observe: imds ? (config.strategy === 'route' ? observeIngressOnAws(imds, g.ingressIp!) : observeOnAws(imds, g.vip)) : observeLocally(g.vip, undefined, (n) => log('warn', 'this host has the VIP but does not count as carrying it', { vip: g.vip, ...n })),
      intervalMs: imds ? ROLE_POLL_MS : LOCAL_ROLE_POLL_MS,
      onChange: (role, previous) => {
        log(previous ? 'warn' : 'info', 'HA role', { role, previous, vip: g.vip, ...(several ? { group: g.name } : {}) });
        syncRef?.setOwner(roles.current === HA_ROLE.master, roles.owned());
      },
      onError: (e) => log('warn', imds ? 'cannot read this instance’s addresses from IMDS; keeping the last role' : 'cannot read this host’s addresses; keeping the last role', { error: e.message, ...(several ? { group: g.name } : {}) }),
    });
    // With the route strategy the VIP's routes point at the primary interface: no interface to set up.
    if (config.strategy === 'eni') watcher.onObservation = vipPathFollower(g, imds !== undefined, several);
    return watcher;
  });
  roles.start();

  /**
   * Ready: the kernel prerequisites hold, and (a backup) it serves the owner's services — the digest
   * the owner sends on the sync stream is ours, and none of its synced flows was refused for want of
   * a service here: an instance kube-loxilb has not filled yet is not where the VIP may go.
   */
  /** How this instance's services compare with the owner's (a backup's view; the owner's always match). */
  const servicesNow = () => ({ foreign: syncRef?.foreignFlows() ?? 0, differ: syncRef?.servicesDiffer() ?? false });
  const readyNow = (): { ready: boolean; notReady: string[] } => {
    const { foreign, differ } = servicesNow();
    const notReady = [
      ...(readiness.ready ? [] : readiness.notReady),
      ...(foreign ? [`${foreign} of the owner's synced flows are for services this instance does not hold: its services differ from the owner's`] : []),
      ...(differ && !foreign ? ["the owner serves other services than this instance: its services differ from the owner's"] : []),
    ];
    return { ready: notReady.length === 0, notReady };
  };
  // On AWS the agent follows the secrets' rotations itself (Secrets Manager → the files the rings read).
  const mirrors = await startSecretMirrors(config);
  // The token file may hold the previous and the next token during a rotation: any opens the API; re-read when it changes.
  const tokens = config.api.tokenFile ? new SecretRing(config.api.tokenFile) : undefined;
  if (tokens && !tokens.current()) throw new Error(`cannot read an API token from ${config.api.tokenFile}: the API is never left open by a missing token file`);
  if (tokens) {
    tokens.onChange = (count) => log('info', 'API token file changed: tokens accepted now', { count });
    tokens.onError = (why) => log('warn', 'API token file not usable; keeping the tokens read before', { why });
    tokens.watch(SECRET_RELOAD_MS);
  }
  if (mirrors.apiToken && tokens) mirrors.apiToken.onWritten = () => tokens.refresh();
  const token = tokens ? () => tokens.accepted() : undefined;
  // When each accepted token last opened a call: a rotation's pending token counts as taken once no caller used another lately.
  const tokenLastUsed = new Map<string, number>();
  /** The pending API token, once this agent accepts it (kube-loxilb's refresh hands it out from then on). */
  const pendingToken = (): string | undefined => {
    const p = mirrors.apiToken?.pending();
    return p && tokens?.accepted().includes(p.value) ? p.value : undefined;
  };
  let pushed: { state: string; at: string } | undefined;
  const server = createApi({
    registry,
    datapath,
    endpointStates: () => prober.states(),
    conntrack: () => listConntrack({ mark: SERVICE_MARK_FILTER }),
    // The role is where the VIP lives (IMDS on AWS, this host's interfaces elsewhere); the configured one until the first look.
    role: () => {
      const r = readyNow();
      const base = { instance: config.instanceName, state: roles.current ?? config.initialRole, vip: config.vip, ready: r.ready ? 1 : 0, ...(r.ready ? {} : { notReady: r.notReady }) };
      const st = peers?.sync?.status();
      // Peer heartbeats refused (a wrong key counts as bad-mac): shown only when there were some.
      const beats = peers?.beatsRejected() ?? {};
      if (Object.keys(beats).length) Object.assign(base, { peerBeatsRejected: beats });
      if (!st) return { ...base, sync: 0, syncState: 'off' };
      return { ...base, sync: st.inSync ? 1 : 0, syncMode: st.mode, syncState: st.inSync ? 'in-sync' : st.peers.map((p) => `${p.ip}:${p.state}`).join(','), syncLagSeconds: Math.round(st.lagSeconds * 1000) / 1000, syncEntries: st.entries, syncResyncs: st.resyncs, syncRejected: st.rejected, ...(st.kernelRefused ? { syncKernelRefused: st.kernelRefused } : {}) };
    },
    ...(several
      ? {
          served: (s: Service) => servedOnGroupVip(s, groups),
          // A row per group: `group/<name>`, its role here, its VIP, whether this instance is in sync for it.
          groupRoles: () => {
            const inSync = peers?.sync?.status().groups ?? {};
            return roles.rows().map((g) => {
              const owned = g.state === HA_ROLE.master;
              return { instance: `group/${g.group}`, state: g.state ?? config.initialRole, vip: g.vip, sync: inSync[g.group] ? 1 : 0, syncMode: peers?.sync ? (owned ? 'sending' : 'receiving') : '', syncState: peers?.sync ? (inSync[g.group] ? 'in-sync' : 'not-in-sync') : 'off' };
            });
          },
        }
      : {}),
    onRolePush: (p) => {
      pushed = { state: p.state, at: new Date().toISOString() };
      log('info', 'ignored a role push: the failover function is the authority on the VIP', { pushed });
    },
    token,
    onAuthorized: (t) => tokenLastUsed.set(t, Date.now()),
    ...(tokens ? { refresh: { newest: () => pendingToken() ?? tokens.current(), lifetimeSeconds: config.api.tokenLifetimeSeconds } } : {}),
    log: (msg, extra) => log('info', msg, extra),
  });
  await new Promise<void>((resolve) => server.listen(config.api.port, config.api.listen, resolve));
  log('info', 'API listening', { listen: config.api.listen, port: config.api.port, auth: token ? 'bearer' : 'none' });

  let instanceId: string | null = null;
  // The key file may hold the current and the previous (or next) key during a rotation: the first is used,
  // any is accepted, for heartbeats and sync sessions alike; re-read when it changes, without a restart.
  const syncKeys = config.sync.secretFile ? new SecretRing(config.sync.secretFile, 32) : undefined;
  if (mirrors.syncKey && syncKeys) mirrors.syncKey.onWritten = () => syncKeys.refresh();
  const peers = await startPeerLink(config, groups, syncKeys, () => ({ role: roles.current ?? config.initialRole, instanceId }), () => registry.list(), aliases, servicesLedger);
  syncRef = peers?.sync;
  // To the function: the kernel prerequisites (a hard gate: never the VIP's place without them) and,
  // apart, whether its services match the owner's (a preference: a survivor that differs is still
  // better than a dead owner). `loxiha get ha` and wait-ready give both as one readiness.
  const syncState = () => {
    const st = peers?.sync?.status();
    const { foreign, differ } = servicesNow();
    const servicesMatch = foreign === 0 && !differ;
    const secrets = secretsHeld(mirrors, {
      apiToken: (v) => pendingToken() === v && [...tokenLastUsed].every(([t, at]) => t === v || Date.now() - at > (config.aws?.secrets?.callersSwitchedAfterMs ?? 0)),
      syncKey: (v) => syncKeys?.accepted().includes(v) ?? false,
    });
    const byGroup = several ? { groups: roles.rows().map((g) => ({ name: g.group, owned: g.state === HA_ROLE.master, inSync: st?.groups?.[g.group] ?? false })) } : {};
    const reported = { ready: readiness.ready, servicesMatch, ...(secrets.length ? { secrets } : {}), ...byGroup };
    // Several groups: in sync only when it is for every group (its own streamed to every peer, every other's received),
    // so that a planned move of any group to this instance waits for its flows.
    const inSync = several && st?.groups ? Object.values(st.groups).every(Boolean) : (st?.inSync ?? false);
    return st ? { inSync, lagSeconds: st.lagSeconds, ...reported } : { inSync: false, ...reported };
  };
  const heartbeat = config.aws && imds ? await startHeartbeat(config.deploymentId, config.instanceIndex, config.aws, imds, (id) => (instanceId = id), syncState) : undefined;
  if (!config.aws) log('info', 'no aws section in the config: no CloudWatch heartbeats (the failover function will not see this agent)');
  // The role may have been seen before sync started: stream now if this instance owns the VIP.
  syncRef?.setOwner((roles.current ?? config.initialRole) === HA_ROLE.master, roles.owned());

  return {
    stop: async () => {
      await heartbeat?.stop();
      await mirrors.stop();
      tokens?.stop();
      peers?.stop();
      roles.stop();
      clearInterval(checker);
      clearInterval(prerequisiteTimer);
      prober.stop();
      await store.close();
      ledger.flush();
      nft.close();
      runIp.stop();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * A group's VIP path follows its role (eni): set up on the interface that carries its VIP while it
 * is here, removed when it leaves. On AWS IMDS says where the VIP is, and a bare hot-plugged ENI needs
 * its address; elsewhere the address is the signal, never the agent's to put back.
 */
function vipPathFollower(g: AgentVipGroup, onAws: boolean, several: boolean): (o: Observation) => Promise<void> {
  const vipPath = new VipPath({ vip: g.vip, manageInterface: onAws, slot: pathSlotOf(g.position) });
  const named = several ? { group: g.name } : {};
  let pathTrouble: string | undefined;
  return async (o) => {
    let trouble: string | undefined;
    try {
      if (o.role === HA_ROLE.master && !o.iface) trouble = 'the VIP is attached to this instance but its interface is not visible yet (or IMDS gives no subnet for it)';
      else if (await vipPath.ensure(o.role === HA_ROLE.master ? o.iface : undefined)) log('info', o.iface && o.role === HA_ROLE.master ? 'VIP path set up: load-balanced flows leave through the VIP’s interface' : 'VIP path removed', { ...o.iface, ...named });
    } catch (e) {
      trouble = `cannot set up the VIP's path: ${(e as Error).message}`;
    }
    if (trouble && trouble !== pathTrouble) log('warn', trouble, { vip: g.vip, ...named });
    pathTrouble = trouble;
  };
}

/** How long the agent's start waits for the first read of the secrets (it goes on with the files as they are after). */
const FIRST_SECRET_READ_MS = 10_000;

type Mirrors = { apiToken?: SecretMirror; syncKey?: SecretMirror; stop: () => Promise<void> };

/**
 * The secrets' mirrors (./secret-mirror.ts), for the secrets the config names, each having read
 * once before the files are first used; none off AWS.
 */
async function startSecretMirrors(config: AgentConfig): Promise<Mirrors> {
  const s = config.aws?.secrets;
  if (!config.aws || !s) return { stop: async () => {} };
  const { SecretsManagerClient } = await import('@aws-sdk/client-secrets-manager');
  // Bounded: an endpoint that does not answer must not hold the agent's start (the files keep what boot wrote).
  const client = new SecretsManagerClient({ region: config.aws.region, endpoint: config.aws.endpoint, maxAttempts: 3, requestHandler: { connectionTimeout: 3000, requestTimeout: 5000 } });
  const make = (kind: SecretKind, secretId: string | undefined, file: string | undefined) => {
    if (!secretId) return undefined;
    if (!file) throw new Error(`aws.secrets names the ${kind} secret but no file holds it (${kind === SECRET_KIND.apiToken ? 'api.tokenFile' : 'sync.secretFile'})`);
    return new SecretMirror({ client, kind, secretId, file, pollMs: s.pollMs, log });
  };
  const apiToken = make(SECRET_KIND.apiToken, s.apiToken, config.api.tokenFile);
  const syncKey = make(SECRET_KIND.syncKey, s.syncKey, config.sync.secretFile);
  await Promise.race([Promise.all([apiToken?.poll(), syncKey?.poll()]), new Promise((r) => setTimeout(r, FIRST_SECRET_READ_MS).unref())]);
  apiToken?.start();
  syncKey?.start();
  return {
    ...(apiToken ? { apiToken } : {}),
    ...(syncKey ? { syncKey } : {}),
    stop: async () => {
      await Promise.all([apiToken?.stop(), syncKey?.stop()]);
      client.destroy();
    },
  };
}

/** What each mirror reports in `SecretHeld`: the pending version once `taken` says so, else the current one. */
function secretsHeld(m: Mirrors, taken: Record<'apiToken' | 'syncKey', (pendingValue: string) => boolean>): { kind: SecretKind; fingerprint: number }[] {
  const out: { kind: SecretKind; fingerprint: number }[] = [];
  const api = m.apiToken?.held(taken.apiToken);
  if (api !== undefined) out.push({ kind: SECRET_KIND.apiToken, fingerprint: api });
  const sync = m.syncKey?.held(taken.syncKey);
  if (sync !== undefined) out.push({ kind: SECRET_KIND.syncKey, fingerprint: sync });
  return out;
}

/**
 * Heartbeats to CloudWatch once the instance id is known from IMDS (retried until it is: the
 * packet path and the API run meanwhile). Each beat carries what session sync says: a planned move
 * waits for the survivor to be in sync.
 */
async function startHeartbeat(deploymentId: string, slot: number, aws: NonNullable<AgentConfig['aws']>, imds: Imds, onInstanceId: (id: string) => void, syncState: () => SyncState): Promise<{ stop: () => Promise<void> }> {
  const { Heartbeat } = await import('./ha/heartbeat.ts');
  const { CloudWatchClient } = await import('@aws-sdk/client-cloudwatch');
  let stopped = false;
  let beat: InstanceType<typeof Heartbeat> | undefined;
  const cloudwatch = new CloudWatchClient({ region: aws.region, endpoint: aws.endpoint, maxAttempts: 2 });
  void (async () => {
    for (let attempt = 0; !stopped; attempt++) {
      try {
        const instanceId = await imds.instanceId();
        if (stopped) return;
        onInstanceId(instanceId);
        beat = new Heartbeat({ cloudwatch, namespace: aws.metricNamespace, deploymentId, instanceId, slot, intervalMs: aws.heartbeatIntervalMs, syncState, log });
        beat.start();
        log('info', 'beating to CloudWatch', { instanceId, namespace: aws.metricNamespace, intervalMs: aws.heartbeatIntervalMs });
        return;
      } catch (e) {
        if (attempt === 0) log('warn', 'instance metadata unavailable; retrying before heartbeats start', { error: (e as Error).message });
        await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** attempt)));
      }
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await beat?.stop();
      cloudwatch.destroy();
    },
  };
}

/**
 * Heartbeats to the peers (UDP, HMAC under the sync key), session sync (TCP, the same key) and, on
 * AWS, the fast path: a BACKUP that stops hearing the MASTER asks the failover function to move the
 * VIP (asynchronous invoke; the function decides). No key, no peer channels: they are never
 * unauthenticated.
 */
async function startPeerLink(config: AgentConfig, groups: readonly AgentVipGroup[], ring: SecretRing | undefined, me: () => { role: PeerBeat['role']; instanceId: string | null }, services: () => Service[], aliases: AddressAliases, ledger: SessionSyncOptions['ledger']): Promise<{ stop: () => void; sync: SessionSync | undefined; beatsRejected: () => Record<string, number> } | undefined> {
  if (config.peers.length === 0) return undefined;
  if (!ring?.current()) {
    log('warn', 'peer heartbeats and session sync off: no sync key of 32+ characters (sync.secretFile); the fast path is off too', { file: config.sync.secretFile });
    return undefined;
  }
  let keyBuffers = ring.accepted().map((k) => Buffer.from(k));
  const keys = () => keyBuffers;
  ring.onChange = (count) => {
    keyBuffers = ring.accepted().map((k) => Buffer.from(k));
    log('info', 'sync key file changed: keys accepted now (the first signs)', { count });
  };
  ring.onError = (why) => log('warn', 'sync key file not usable; keeping the keys read before', { why });
  ring.watch(SECRET_RELOAD_MS);
  const aws = config.aws;
  let invoke: ((request: FastPathRequest) => Promise<void>) | undefined;
  let lambda: { destroy: () => void } | undefined;
  if (aws) {
    const { LambdaClient, InvokeCommand } = await import('@aws-sdk/client-lambda');
    const client = new LambdaClient({ region: aws.region, endpoint: aws.endpoint, maxAttempts: 3 });
    lambda = client;
    invoke = async (request) => {
      const r = await client.send(new InvokeCommand({ FunctionName: aws.failoverFunctionName, InvocationType: 'Event', Payload: Buffer.from(JSON.stringify(request)) }));
      if (r.StatusCode !== 202) throw new Error(`invoke answered ${r.StatusCode}`);
    };
  }
  const rejectedSeen = new Set<string>();
  let stopAnswer = () => {};
  // Session sync listens on the sync port; the peers' second check (a TCP connection) lands there too.
  if (!config.sync.sessions) {
    // Sessions off: the port only answers that check.
    const answer = createServer((socket) => socket.destroy());
    try {
      await listen(answer, config.sync.port, config.selfIp);
      log('warn', 'session sync off (sync.sessions: false): established flows will not survive a failover');
    } catch (e) {
      log('error', 'cannot listen on the sync port; the peers will judge this instance by its heartbeats alone', { error: (e as Error).message, port: config.sync.port });
    }
    stopAnswer = () => answer.close();
  }
  let sync: SessionSync | undefined = !config.sync.sessions ? undefined : new SessionSync({
    keys,
    deploymentId: config.deploymentId,
    self: { index: config.instanceIndex, ip: config.selfIp, port: config.sync.port },
    peers: config.peers,
    services,
    aliases,
    realtimePriority: config.sync.realtimePriority,
    ledger,
    rewriteDestination: groupDestinationRewrites(groups),
    ...(groups.length > 1 ? { groups: { names: groups.map((g) => g.name), ofService: (s: Service) => groupOfService(s, groups).name } } : {}),
    log: (level, msg, extra) => log(level, msg, extra),
  });
  try {
    await sync?.start();
  } catch (e) {
    log('error', 'session sync off: cannot listen on the sync port; the peers will judge this instance by its heartbeats alone', { error: (e as Error).message, port: config.sync.port });
    sync = undefined;
  }
  const link = new PeerLink({
    keys,
    deploymentId: config.deploymentId,
    self: { index: config.instanceIndex, ip: config.selfIp, port: config.sync.heartbeatPort },
    peers: config.peers.map((p) => ({ ...p, port: config.sync.heartbeatPort })),
    intervalMs: config.sync.heartbeatIntervalMs,
    lossAfterMs: config.sync.peerLossAfterMs,
    me,
    onLost: (peer) => {
      const decision = fastPathDecision(peer, me().role, groups.length > 1);
      log('warn', 'peer lost', { peer: peer.index, ip: peer.ip, role: peer.role, instanceId: peer.instanceId, fastPath: decision.invoke ? 'invoking the failover function' : decision.why });
      if (!decision.invoke) return;
      if (!invoke) return log('warn', 'fast path: no aws section, cannot invoke the failover function');
      invoke(decision.request).then(
        () => log('info', 'fast path: failover requested', { ...decision.request }),
        (e: Error) => log('error', 'fast path: invoking the failover function failed; the heartbeat alarm will trigger it', { error: e.message }),
      );
    },
    onBack: (peer) => log('info', 'peer back', { peer: peer.index, role: peer.role }),
    confirmAlive: async (peer) => hostAnswers(await tcpReach(peer.ip, config.sync.port, PEER_CONFIRM_TIMEOUT_MS)),
    onSilentButAlive: (peer) => log('warn', 'peer silent on the heartbeat channel but its host answers (its sync port connects or resets: an agent stalled or restarting); not treating it as lost', { peer: peer.index, ip: peer.ip }),
    onRejected: (reason, from) => {
      if (rejectedSeen.has(`${reason} ${from}`)) return;
      rejectedSeen.add(`${reason} ${from}`);
      log('warn', 'rejected a peer heartbeat', { reason, from });
    },
  });
  try {
    await link.start();
  } catch (e) {
    log('error', 'peer heartbeats off: cannot bind the heartbeat port', { error: (e as Error).message, ip: config.selfIp, port: config.sync.heartbeatPort });
    lambda?.destroy();
    sync?.stop();
    stopAnswer();
    return undefined;
  }
  log('info', 'peer heartbeats on', { peers: config.peers.map((p) => p.ip), intervalMs: config.sync.heartbeatIntervalMs, lossAfterMs: config.sync.peerLossAfterMs });
  return {
    sync,
    beatsRejected: () => Object.fromEntries(link.rejected),
    stop: () => {
      ring.stop();
      link.stop();
      sync?.stop();
      stopAnswer();
      lambda?.destroy();
    },
  };
}

if (import.meta.main) {
  let args: ReturnType<typeof parseAgentArgs>;
  try {
    args = parseAgentArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`error: ${(e as Error).message}\n${AGENT_USAGE}\n`);
    process.exit(2);
  }
  if (args.help) {
    process.stdout.write(`${AGENT_USAGE}\n`);
    process.exit(0);
  }
  main(args).then(
    (agent) => {
      const shutdown = (signal: string) => {
        log('info', 'stopping; the nftables table stays in place', { signal });
        agent.stop().then(() => process.exit(0));
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
    },
    (e: Error) => {
      log('error', 'agent failed to start', { error: e.message });
      process.exit(1);
    },
  );
}
