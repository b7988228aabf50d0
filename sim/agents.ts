/** Runs real agents, backends and clients inside a Lab's namespaces. */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { AgentConfigInput } from '../agent/config.ts';
import { AGENT_NODE_FLAGS, bundleAgent } from '../lib/agent-bundle.ts';
import { BACK, type Lab, type Proc, VIP } from './netns.ts';

export const ROOT = resolve(import.meta.dirname, '..');
/** The programs the simulation runs in its namespaces (backend, clients, flows, the IMDS stand-in). */
export const PROGRAMS = join(ROOT, 'sim/programs');
export const SERVICE_PORT = 80;
export const BACKEND_PORT = 8080;

/** Where the IMDSv2 stand-in listens inside an LB namespace. */
export const IMDS_PORT = 5001;
/** Credentials for the emulators an agent with an `aws` section talks to (never real AWS). */
const EMULATOR_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' };

/** An agent `aws` section for namespaces: AWS calls to `endpoint` (an emulator or stand-in), IMDS from startImds(). */
export function awsSection(endpoint: string, extra: Partial<NonNullable<AgentConfigInput['aws']>> = {}): NonNullable<AgentConfigInput['aws']> {
  return { region: 'us-east-1', failoverFunctionName: 'loxiha-failover', metricNamespace: 'Loxiha', endpoint, imdsEndpoint: `http://127.0.0.1:${IMDS_PORT}`, ...extra };
}

export class AgentRunner {
  readonly lab: Lab;
  readonly dir: string;
  procs = new Map<string, Proc>();

  /** The agent as it ships: the esbuild bundle the CDK app puts on the instances. */
  readonly agentBundle: string;
  /** The API token every agent requires, as on AWS; `api()` sends it the way kube-loxilb does. */
  readonly token = randomBytes(24).toString('hex');
  readonly tokenFile: string;
  /** The peers' shared key, for agents given `sync: { secretFile: run.syncKeyFile }`. */
  readonly syncKeyFile: string;
  /** Agents with a token file of their own (a rotation rewrites each agent's): `api()` reads the token there. */
  readonly tokenFiles = new Map<number, string>();

  constructor(lab: Lab) {
    this.lab = lab;
    this.dir = mkdtempSync(join(tmpdir(), `loxiha-e2e-${lab.id}-`));
    this.agentBundle = bundleAgent(join(this.dir, 'agent.mjs'));
    this.tokenFile = join(this.dir, 'api-token');
    writeFileSync(this.tokenFile, `${this.token}\n`, { mode: 0o600 });
    this.syncKeyFile = join(this.dir, 'sync-key');
    writeFileSync(this.syncKeyFile, `${randomBytes(24).toString('hex')}\n`, { mode: 0o600 });
  }

  /** An IMDSv2 stand-in on LB `lb`'s own loopback (IMDS_PORT), answering `instanceId`; POST /control/attach|detach moves loxi-eni. */
  async startImds(lb: number, instanceId: string): Promise<Proc> {
    const p = this.lab.spawn(`lb${lb}`, process.execPath, [join(PROGRAMS, 'imds.mjs'), String(IMDS_PORT), instanceId, `${BACK}.${10 + lb}`]);
    await p.waitFor(/imds listening/);
    return p;
  }

  configPath(lb: number): string {
    return join(this.dir, `agent${lb}.json`);
  }

  /** Starts LB `lb`'s agent; `opts.args` adds command-line flags, `opts.env` environment (e.g. PATH with an nft stand-in first). */
  async startAgent(lb: number, extra: Partial<AgentConfigInput> = {}, probeIntervalMs = 300, opts: { args?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<Proc> {
    const cfg: AgentConfigInput = {
      deploymentId: 'loxiha-sim',
      instanceIndex: lb - 1,
      selfIp: `${BACK}.${10 + lb}`,
      peers: [],
      vip: VIP,
      cloudCidrBlock: '100.64.248.0/24',
      initialRole: lb === 1 ? 'MASTER' : 'BACKUP',
      api: { listen: '0.0.0.0', port: 11111, tokenFile: this.tokenFile },
      stateDir: join(this.dir, `state${lb}`),
      nftTable: 'loxiha',
      ...extra,
    };
    writeFileSync(this.configPath(lb), JSON.stringify(cfg));
    const p = this.lab.spawn(`lb${lb}`, process.execPath, [...AGENT_NODE_FLAGS, this.agentBundle, '--config', this.configPath(lb), '--probe-interval-ms', String(probeIntervalMs), ...(opts.args ?? [])], { ...EMULATOR_CREDENTIALS, ...opts.env });
    await p.waitFor(/API listening/);
    this.procs.set(`agent${lb}`, p);
    return p;
  }

  async startBackends(n: number): Promise<void> {
    for (let b = 1; b <= n; b++) {
      const p = this.lab.spawn(`be${b}`, process.execPath, [join(PROGRAMS, 'backend.mjs'), `be${b}`, String(BACKEND_PORT)]);
      await p.waitFor(/udp/);
      this.procs.set(`be${b}`, p);
    }
  }

  /** The token LB `lb`'s agent uses now: the first line of its token file, as the CLI reads it. */
  currentToken(lb: number): string {
    try {
      return readFileSync(this.tokenFiles.get(lb) ?? this.tokenFile, 'utf8').split('\n')[0]!.trim() || this.token;
    } catch {
      return this.token;
    }
  }

  /** Calls an agent's API from its own namespace; the token (its file's current one unless given) goes bare in `Authorization`, as kube-loxilb sends it (null: none). */
  async api(lb: number, method: string, path: string, body?: unknown, given?: string | null): Promise<{ status: number; body: any }> {
    const token = given === undefined ? this.currentToken(lb) : given;
    const args = ['-s', '-o', '-', '-w', '\n%{http_code}', '-X', method, `http://127.0.0.1:11111/netlox/v1${path}`];
    if (body !== undefined) args.push('-H', 'content-type: application/json', '--data-binary', JSON.stringify(body));
    if (token !== null) args.push('-H', `authorization: ${token}`);
    const out = this.lab.exec(`lb${lb}`, 'curl', args);
    const i = out.lastIndexOf('\n');
    const text = out.slice(0, i);
    return { status: Number(out.slice(i + 1)), body: text ? JSON.parse(text) : undefined };
  }

  /** Runs the client fixture in the client namespace and returns its JSON line. */
  client(args: string[]): any {
    const out = this.lab.exec('cl0', process.execPath, [join(PROGRAMS, 'client.mjs'), ...args]);
    return JSON.parse(out.trim().split('\n').pop()!);
  }

  stream(): Proc {
    return this.lab.spawn('cl0', process.execPath, [join(PROGRAMS, 'stream.mjs'), VIP, String(SERVICE_PORT)]);
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function lbEntry(opts: { backends: number[]; weights?: number[]; sel?: number; mode?: 0 | 2; protocol?: 'tcp' | 'udp'; monitor?: boolean; port?: number; name?: string; allowedSources?: string[]; vip?: string }) {
  return {
    serviceArguments: {
      externalIP: '100.100.100.100',
      privateIP: opts.vip ?? VIP,
      port: opts.port ?? SERVICE_PORT,
      protocol: opts.protocol ?? 'tcp',
      sel: opts.sel ?? 0,
      mode: opts.mode ?? 2,
      monitor: opts.monitor ?? false,
      probetype: opts.monitor ? (opts.protocol === 'udp' ? 'udp' : 'tcp') : 'none',
      probeRetries: 2,
      probeTimeout: 1,
      name: opts.name ?? 'default_nginx',
    },
    endpoints: opts.backends.map((b, i) => ({ endpointIP: `${BACK}.${100 + b}`, targetPort: BACKEND_PORT, weight: opts.weights?.[i] ?? 1 })),
    ...(opts.allowedSources ? { allowedSources: opts.allowedSources.map((prefix) => ({ prefix })) } : {}),
  };
}
