/**
 * The agent: adopts the kernel table it owns, reconciles it with the persisted services,
 * probes endpoints, and serves the LoxiLB-compatible API. Stopping it (or a crash) leaves
 * the nftables table in place, so traffic keeps flowing while it restarts.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createApi } from './api/server.ts';
import { type AgentConfig, loadAgentConfig } from './config.ts';
import { listConntrack } from './conntrack.ts';
import { Datapath } from './datapath/controller.ts';
import { Nft } from './datapath/nft.ts';
import { Imds } from './ha/imds.ts';
import { RoleWatcher } from './ha/role.ts';
import { Prober } from './probes.ts';
import { ServiceStore } from './services/store.ts';

/** How often the agent looks at where the VIP lives (the function moves it in seconds). */
const ROLE_POLL_MS = 2000;

function log(level: 'info' | 'warn' | 'error', msg: string, extra: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...extra })}\n`);
}

export async function main(argv: string[]): Promise<{ stop: () => Promise<void> }> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string', default: '/etc/loxiha/agent.json' }, 'probe-interval-ms': { type: 'string', default: '2000' } } });
  const config = loadAgentConfig(values.config!);
  const nft = new Nft(config.nftTable);
  const flowtables = await nft.flowtablesSupported();
  if (!flowtables) log('warn', 'this kernel has no nftables flowtables: established flows take the regular path');
  const datapath = new Datapath(nft, { table: config.nftTable, hashSeed: config.hashSeed, flowtableDevices: flowtables && config.dataInterfaces.length ? config.dataInterfaces : undefined });
  datapath.onWarn = (msg, extra) => log('warn', msg, extra);
  const store = new ServiceStore(config.stateDir);
  const services = store.load();
  const t0 = performance.now();
  const adoption = await datapath.adopt(services);
  const ms = Math.round(performance.now() - t0);
  log('info', adoption === 'adopted' ? 'adopted the existing nftables table unchanged' : 'applied the services to nftables', { services: services.length, table: config.nftTable, ms });

  const prober = new Prober({
    intervalMs: Number(values['probe-interval-ms']),
    onChange: (down) => {
      log('warn', 'endpoint health changed', { down: [...down] });
      datapath.setDown(down).catch((e: Error) => log('error', 'could not apply endpoint health', { error: e.message }));
    },
  });
  prober.sync(services);

  const roles = config.aws
    ? new RoleWatcher({
        imds: new Imds(config.aws.imdsEndpoint),
        vip: config.vip,
        intervalMs: ROLE_POLL_MS,
        onChange: (role, previous) => log(previous ? 'warn' : 'info', 'HA role', { role, previous, vip: config.vip }),
        onError: (e) => log('warn', 'cannot read this instance’s addresses from IMDS; keeping the last role', { error: e.message }),
      })
    : undefined;
  roles?.start();

  const token = config.api.tokenFile ? readFileSync(config.api.tokenFile, 'utf8').trim() : undefined;
  let pushed: { state: string; at: string } | undefined;
  const server = createApi({
    datapath,
    persist: (list) => {
      store.save(list);
      prober.sync(list);
    },
    endpointStates: () => prober.states(),
    conntrack: () => listConntrack(),
    // On AWS the role is where the VIP lives (IMDS); without an aws section, or until IMDS answers, the configured one.
    role: () => ({ instance: config.instanceName, state: roles?.current ?? config.initialRole, vip: config.vip, sync: 0 }),
    onRolePush: (p) => {
      pushed = { state: p.state, at: new Date().toISOString() };
      log('info', 'ignored a role push: the failover function is the authority on the VIP', { pushed });
    },
    token,
    log: (msg, extra) => log('info', msg, extra),
  });
  await new Promise<void>((resolve) => server.listen(config.api.port, config.api.listen, resolve));
  log('info', 'API listening', { listen: config.api.listen, port: config.api.port, auth: token ? 'bearer' : 'none' });

  const heartbeat = config.aws ? await startHeartbeat(config.deploymentId, config.aws) : undefined;
  if (!config.aws) log('info', 'no aws section in the config: no CloudWatch heartbeats (the failover function will not see this agent)');

  return {
    stop: async () => {
      await heartbeat?.stop();
      roles?.stop();
      prober.stop();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * Heartbeats to CloudWatch once the instance id is known from IMDS (retried until it is: the
 * packet path and the API run meanwhile). Session sync does not exist yet, so every beat says
 * "not in sync": planned moves, which wait for the survivor to be in sync, then time out rather
 * than move flows that would be reset.
 */
async function startHeartbeat(deploymentId: string, aws: NonNullable<AgentConfig['aws']>): Promise<{ stop: () => Promise<void> }> {
  const { Heartbeat } = await import('./ha/heartbeat.ts');
  const { CloudWatchClient } = await import('@aws-sdk/client-cloudwatch');
  const imds = new Imds(aws.imdsEndpoint);
  let stopped = false;
  let beat: InstanceType<typeof Heartbeat> | undefined;
  const cloudwatch = new CloudWatchClient({ region: aws.region, endpoint: aws.endpoint, maxAttempts: 2 });
  void (async () => {
    for (let attempt = 0; !stopped; attempt++) {
      try {
        const instanceId = await imds.instanceId();
        if (stopped) return;
        beat = new Heartbeat({ cloudwatch, namespace: aws.metricNamespace, deploymentId, instanceId, intervalMs: aws.heartbeatIntervalMs, syncState: () => ({ inSync: false }), log });
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

if (import.meta.main) {
  main(process.argv.slice(2)).then(
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
