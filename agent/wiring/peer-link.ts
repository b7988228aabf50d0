import { createServer } from 'node:net';
import type { FastPathRequest } from '../../lib/contract.ts';
import type { AgentConfig } from '../config.ts';
import { fastPathDecision } from '../ha/fast-path.ts';
import { PeerLink } from '../ha/peer-link.ts';
import type { PeerBeat } from '../ha/peer-message.ts';
import { type AgentVipGroup, groupDestinationRewrites, groupOfService } from '../ha/vip-groups.ts';
import { log } from '../log.ts';
import { listen } from '../net/listen.ts';
import { hostAnswers, tcpReach } from '../net/tcp-connects.ts';
import type { SecretRing } from '../secret-ring.ts';
import type { AddressAliases, Service } from '../services/model.ts';
import { SessionSync, type SessionSyncOptions } from '../sync/session-sync.ts';
import { SECRET_RELOAD_MS } from './secrets.ts';

/**
 * The second check on a silent peer: a TCP connection to its sync port within this long. Its kernel
 * completes the handshake from the listen queue even while its agent is stalled; a dead agent
 * answers with a reset, a dead instance not at all.
 */
const PEER_CONFIRM_TIMEOUT_MS = 300;

/**
 * Heartbeats to the peers (UDP, HMAC under the sync key), session sync (TCP, the same key) and, on
 * AWS, the fast path: a BACKUP that stops hearing the MASTER asks the failover function to move the
 * VIP (asynchronous invoke; the function decides). No key, no peer channels: they are never
 * unauthenticated.
 */
export async function startPeerLink(config: AgentConfig, groups: readonly AgentVipGroup[], ring: SecretRing | undefined, me: () => { role: PeerBeat['role']; instanceId: string | null }, services: () => Service[], aliases: AddressAliases, ledger: SessionSyncOptions['ledger']): Promise<{ stop: () => void; sync: SessionSync | undefined; beatsRejected: () => Record<string, number> } | undefined> {
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

