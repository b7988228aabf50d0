/**
 * The agent's composition root: adopts the kernel table it owns, reconciles it with the persisted
 * services, probes endpoints, serves the LoxiLB-compatible API, and wires the roles (one per VIP
 * group), heartbeats, peer link and session sync (./wiring/). Stopping it (or a crash) leaves the
 * nftables table in place, so traffic keeps flowing while it restarts.
 */
import { parseArgs } from 'node:util';
import { createApi } from './api/server.ts';
import { loadAgentConfig } from './config.ts';
import { listConntrack } from './conntrack.ts';
import { Datapath } from './datapath/controller.ts';
import { Nft } from './datapath/nft.ts';
import { Imds } from './ha/imds.ts';
import { SecretRing } from './secret-ring.ts';
import { ensurePrerequisites, KERNEL_PREREQUISITES, PREREQUISITE_CHECK_MS, type Readiness } from './host/prerequisites.ts';
import type { SessionSync } from './sync/session-sync.ts';
import { type LedgerView, mergePlan, ServiceLedger } from './services/ledger.ts';
import { SERVICE_MARK_FILTER } from './sync/conntrack-events.ts';
import { observeIngressOnAws, observeLocally, observeOnAws, RoleWatcher } from './ha/role.ts';
import { runIp } from './ha/vip-path.ts';
import { GroupRoles } from './ha/group-roles.ts';
import { agentVipGroups, groupAliases, groupOfService, servedOnGroupVip } from './ha/vip-groups.ts';
import { groupRouteMark } from './datapath/render.ts';
import { HA_ROLE } from '../lib/contract.ts';
import { type AddressAliases, type Service, serviceKey } from './services/model.ts';
import { Prober } from './probes.ts';
import { ServiceRegistry } from './services/registry.ts';
import { StateStore } from './services/store.ts';
import { log } from './log.ts';
import { startHeartbeat } from './wiring/heartbeat.ts';
import { startPeerLink } from './wiring/peer-link.ts';
import { SECRET_RELOAD_MS, secretsHeld, startSecretMirrors } from './wiring/secrets.ts';
import { vipPathFollower } from './wiring/vip-path-follower.ts';

/** How often the agent looks at where the VIP lives: IMDS on AWS (the function moves it in seconds), local addresses elsewhere. */
const ROLE_POLL_MS = 1000;
const LOCAL_ROLE_POLL_MS = 200;


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
  const several = groups.length > 1;
  // Route strategy: clients' packets arrive at this instance's ingress IP (per group), served as the VIP's.
  const aliases: AddressAliases = groupAliases(groups, config.strategy);
  const routeMarkOf = several ? (s: Service) => {
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
  /** How this instance's services compare with the owner's (a backup's view, and with several groups every agent's: an owner of one receives the others'). */
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
