/**
 * An HTTP proxy in front of moto that answers as AWS really does where moto is lax:
 * latency per call, throttling, NotFound for a while after a create, asynchronous (and
 * optionally stuck) detaches, slow attaches, DependencyViolation / InUse, ClientToken
 * idempotency, duplicate private IPs, an EIP associated with a secondary private address (moto
 * records the primary), a /32 route inside the VPC's CIDR (AWS refuses it), the address filter
 * matching secondary addresses, and a crash that loses a mutation's answer and cuts the caller off. EC2 is altered; the
 * slots' Auto Scaling calls and Secrets Manager's RotateSecret go to their models; other services pass through.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import {
  DescribeNetworkInterfacesCommand,
  DescribeRouteTablesCommand,
  DescribeSubnetsCommand,
  DescribeVpcsCommand,
  DetachNetworkInterfaceCommand,
  EC2Client,
  type Address,
  type AttachmentStatus,
  DescribeAddressesCommand,
  type NetworkInterface,
} from '@aws-sdk/client-ec2';
import { bucketOf, EC2_REQUEST_BUCKETS } from '../lambda/failover/aws/ec2-request-limiter.ts';
import type { Clock } from '../lambda/failover/clock.ts';
import { cidrContains } from '../lib/net/cidr.ts';
import type { SecretRotations } from './secret-rotations.ts';
import type { SlotGroups } from './slot-groups.ts';

/** The proxy's time: simulated (SimClock, tests and benchmarks) or the wall clock (the demo). */
export type ProxyClock = Clock & { advance?(ms: number): void };

/** Runs a Lambda invocation that reached the proxy (the demo's local runtime for the real handler). */
export type InvokeHandler = (call: { functionName: string; qualifier: string | undefined; invocationType: string; payload: unknown }) => Promise<{ status: number; body: string }>;

/** Seen by listeners as each call is answered: what, when it started, how long it took, how it ended. */
export interface CallEvent {
  service: 'ec2' | 'other';
  action: string;
  startedAt: number;
  ms: number;
  status: number;
}

export const MUTATING = new Set([
  'CreateSubnet',
  'DeleteSubnet',
  'AssociateRouteTable',
  'DisassociateRouteTable',
  'CreateNetworkInterface',
  'DeleteNetworkInterface',
  'ModifyNetworkInterfaceAttribute',
  'AttachNetworkInterface',
  'DetachNetworkInterface',
  'AssociateAddress',
  'DisassociateAddress',
  'CreateTags',
  'CreateRoute',
  'ReplaceRoute',
  'DeleteRoute',
]);

export interface Behaviour {
  /** Simulated latency of each call, ms (EC2 actions by name; other services as `other:<x-amz-target>`). */
  latencyMs: (action: string) => number;
  /** Calls per action answered RequestLimitExceeded before it succeeds. */
  throttle: Record<string, number>;
  /** Draws whether an EC2 call (any action) is answered RequestLimitExceeded, on top of `throttle`. */
  throttleDraw: () => boolean;
  /**
   * EC2's request token buckets as AWS documents them (one per action, per account: non-mutating
   * 100 tokens + 20/s, mutating 50 + 5/s): a call finding its bucket empty answers
   * RequestLimitExceeded. `usedByOthers` is the fraction of each bucket that other callers in
   * the account keep drained. Off when unset.
   */
  ec2TokenBuckets?: { usedByOthers: number };
  /** A created subnet/ENI answers NotFound to calls naming it for this long (simulated ms); a function draws it per create. */
  notFoundAfterCreateMs: number | (() => number);
  /** Simulated time a (non-forced) detach takes. */
  detachMs: () => number;
  /** Non-forced detaches never finish. */
  stuckDetach: boolean;
  /** Simulated time a forced detach takes. */
  forceDetachMs: number;
  /** Simulated time an attach stays "attaching". */
  attachMs: number;
  /** After this many mutations (applied by AWS), the caller's connection dies before it sees the answer. */
  crashAfterMutations: number | undefined;
  /**
   * How a crash ends the caller. Unset: every request is cut off until revive() (the caller's SDK
   * retries and gives up). Set: the calls of the client whose user agent contains this text hang
   * for good from the crash on — the answer to the crash's mutation included — as a process killed
   * mid-call makes no further call and no retry (a Lambda timeout); every other client is served.
   */
  freezeAgent?: string;
}

/** Simulated per-call latencies, ms, as measured against AWS (BENCHMARKS.md says where each comes from); others 200 ms. */
export const LATENCY_MS: Record<string, number> = {
  DescribeInstances: 200,
  DescribeInstanceStatus: 150,
  DescribeSubnets: 150,
  DescribeRouteTables: 150,
  DescribeNetworkInterfaces: 150,
  DescribeAddresses: 150,
  DescribeInternetGateways: 150,
  CreateSubnet: 500,
  DeleteSubnet: 400,
  CreateRouteTable: 400,
  CreateRoute: 300,
  ReplaceRoute: 300,
  DeleteRoute: 300,
  AssociateRouteTable: 300,
  CreateNetworkInterface: 600,
  DeleteNetworkInterface: 400,
  ModifyNetworkInterfaceAttribute: 300,
  AttachNetworkInterface: 500,
  DetachNetworkInterface: 300,
  AssignPrivateIpAddresses: 400,
  AssociateAddress: 600,
  'other:DynamoDB_20120810.UpdateItem': 15,
  'other:DynamoDB_20120810.GetItem': 10,
  'other:GraniteServiceVersion20100801.GetMetricData': 150,
  'other:AWSEvents.PutEvents': 50,
  'other:Publish': 60,
};
/** AWS as it behaves on a good day: the latencies above, slow detaches and attaches, NotFound for a second after a create. */
export const REALISTIC_BEHAVIOUR: Partial<Behaviour> = {
  latencyMs: (a) => LATENCY_MS[a] ?? 200,
  forceDetachMs: 2000,
  detachMs: () => 5000,
  attachMs: 2000,
  notFoundAfterCreateMs: 1000,
};

export const DEFAULT_BEHAVIOUR: Behaviour = {
  latencyMs: () => 0,
  throttle: {},
  throttleDraw: () => false,
  notFoundAfterCreateMs: 0,
  detachMs: () => 0,
  stuckDetach: false,
  forceDetachMs: 0,
  attachMs: 0,
  crashAfterMutations: undefined,
  freezeAgent: undefined,
};

interface PendingDetach {
  eniId: string;
  attachmentId: string;
  /** Simulated time at which AWS finishes the detach (Infinity while stuck). */
  readyAt: number;
  forced: boolean;
}

export interface CallRecord {
  action: string;
  at: number;
  status: number;
  /** What a write names that tells VIP groups apart: the EIP's allocation id, the route's destination (a VIP /32), or a new subnet's block. */
  subject?: string;
}

const ERR_FOR_PREFIX: Record<string, string> = {
  subnet: 'InvalidSubnetID.NotFound',
  eni: 'InvalidNetworkInterfaceID.NotFound',
};

/** Removes every `Filter.N` named `name` from an EC2 query (renumbering the rest); returns its values. */
function takeFilter(params: URLSearchParams, name: string): string[] | undefined {
  const filters = new Map<string, { name?: string; values: string[] }>();
  for (const [k, v] of [...params]) {
    const m = /^Filter\.(\d+)\.(Name|Value\.\d+)$/.exec(k);
    if (!m) continue;
    const f = filters.get(m[1]!) ?? { values: [] };
    if (m[2] === 'Name') f.name = v;
    else f.values.push(v);
    filters.set(m[1]!, f);
    params.delete(k);
  }
  let taken: string[] | undefined;
  let n = 1;
  for (const f of filters.values()) {
    if (f.name === name) {
      taken = f.values;
      continue;
    }
    params.set(`Filter.${n}.Name`, f.name ?? '');
    f.values.forEach((v, i) => params.set(`Filter.${n}.Value.${i + 1}`, v));
    n++;
  }
  return taken;
}

/** Applies `f` to each top-level `<item>` of the `<set>` element of an EC2 XML answer (items nest). */
function mapItems(xml: string, set: string, f: (item: string) => string | undefined): string {
  const open = xml.indexOf(`<${set}>`);
  const close = xml.lastIndexOf(`</${set}>`);
  if (open < 0 || close < 0) return xml;
  const body = xml.slice(open + set.length + 2, close);
  const out: string[] = [];
  let depth = 0;
  let start = -1;
  const re = /<item>|<\/item>/g;
  for (let m = re.exec(body); m; m = re.exec(body)) {
    if (m[0] === '<item>') {
      if (depth++ === 0) start = m.index;
    } else if (--depth === 0) {
      const kept = f(body.slice(start, m.index + m[0].length));
      if (kept !== undefined) out.push(kept);
    }
  }
  return `${xml.slice(0, open + set.length + 2)}${out.join('')}${xml.slice(close)}`;
}

/** Keeps the items of `set` for which `keep` holds. */
function keepItems(xml: string, set: string, keep: (item: string) => boolean): string {
  return mapItems(xml, set, (item) => (keep(item) ? item : undefined));
}

/** The Auto Scaling calls the slots' model answers (moto has no lifecycle actions, and its groups are not the slots'). */
const SLOT_GROUP_CALLS = new Set(['CompleteLifecycleAction', 'RecordLifecycleActionHeartbeat', 'DescribeAutoScalingGroups', 'TerminateInstanceInAutoScalingGroup']);

export class AwsProxy {
  readonly endpoint: string;
  behaviour: Behaviour = { ...DEFAULT_BEHAVIOUR };
  calls: CallRecord[] = [];
  /** Lambda invocations (the agents' fast path) go here; unset, they are answered 404 as for an unknown function. */
  onInvoke: InvokeHandler | undefined;
  /** Told of every answered call (the demo's live timeline). */
  onCall: ((c: CallEvent) => void) | undefined;
  /** The slots' Auto Scaling groups (./slot-groups.ts): it answers the lifecycle-action calls moto does not know. */
  slotGroups: SlotGroups | undefined;
  /** Secrets Manager's rotations (./secret-rotations.ts): it answers RotateSecret, which moto does not run. */
  rotations: SecretRotations | undefined;
  /** Set when a crash was injected: every request is cut off until revive(). */
  dead = false;
  /** Set when a crash froze its caller (Behaviour.freezeAgent): that client's calls hang from then on. */
  frozen = false;
  private readonly hung = new Set<ServerResponse>();
  private server: Server;
  private readonly unixServers: Server[] = [];
  private readonly moto: string;
  private readonly clock: ProxyClock;
  private readonly direct: EC2Client;
  private mutations = 0;
  private throttled: Record<string, number> = {};
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  /** Attaches (instance/device index) between their check and moto's answer. */
  private readonly attachingAt = new Set<string>();
  private readonly visibleAt = new Map<string, number>();
  private readonly pendingDetach = new Map<string, PendingDetach>();
  private readonly attachingUntil = new Map<string, number>();
  private readonly tokens = new Map<string, string>();
  /** The private address each EIP was associated with (moto forgets it). */
  private readonly eipTargets = new Map<string, { eniId: string; privateIp: string }>();

  private constructor(server: Server, port: number, moto: string, clock: ProxyClock) {
    this.server = server;
    this.endpoint = `http://127.0.0.1:${port}`;
    this.moto = moto;
    this.clock = clock;
    this.direct = new EC2Client({ region: 'us-east-1', endpoint: moto, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  }

  static async start(moto: string, clock: ProxyClock): Promise<AwsProxy> {
    let proxy!: AwsProxy;
    const server = createServer((req, res) => proxy.serve(req, res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    proxy = new AwsProxy(server, (server.address() as { port: number }).port, moto, clock);
    return proxy;
  }

  /** Also answers on a Unix socket (reachable from network namespaces, which cannot see this loopback). */
  async listenUnix(path: string): Promise<void> {
    const server = createServer((req, res) => this.serve(req, res));
    await new Promise<void>((r) => server.listen(path, r));
    this.unixServers.push(server);
  }

  private serve(req: IncomingMessage, res: ServerResponse): void {
    this.handle(req, res).catch((e) => {
      res.statusCode = 500;
      res.end(String(e));
    });
  }

  /** New behaviour for the next scenario; forgets pending AWS-side work of the previous one. */
  configure(b: Partial<Behaviour>): void {
    this.behaviour = { ...DEFAULT_BEHAVIOUR, ...b };
    this.throttled = {};
    this.buckets.clear();
    this.mutations = 0;
    this.calls = [];
    this.dead = false;
  }

  /** EC2's token bucket for `action` (Behaviour.ec2TokenBuckets): true when the call may pass. */
  private takeBucketToken(action: string): boolean {
    const model = this.behaviour.ec2TokenBuckets;
    if (!model) return true;
    const spec = EC2_REQUEST_BUCKETS[bucketOf(action)];
    const capacity = spec.capacity * (1 - model.usedByOthers);
    const now = this.clock.now();
    const b = this.buckets.get(action) ?? { tokens: capacity, at: now };
    // AWS refills every second; the continuous refill here is the same rate without the steps.
    b.tokens = Math.min(capacity, b.tokens + ((now - b.at) / 1000) * spec.refillPerSecond * (1 - model.usedByOthers));
    b.at = now;
    this.buckets.set(action, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  revive(): void {
    this.dead = false;
    // A frozen caller stays frozen (its process is gone); its hung calls are cut only now, once the test has measured.
    for (const r of this.hung) r.socket?.destroy();
    this.hung.clear();
    this.frozen = false;
    this.behaviour = { ...this.behaviour, crashAfterMutations: undefined };
  }

  /** Applies the detaches AWS has finished by now (simulated time); called on every request. */
  async tick(): Promise<void> {
    const now = this.clock.now();
    for (const p of [...this.pendingDetach.values()]) {
      if (p.readyAt > now) continue;
      this.pendingDetach.delete(p.eniId);
      await this.direct.send(new DetachNetworkInterfaceCommand({ AttachmentId: p.attachmentId, Force: true })).catch(() => undefined);
    }
  }

  /**
   * The network interfaces as AWS would show them now (read from moto directly, no latency or
   * throttling): pending detaches say "detaching", recent attaches "attaching".
   */
  async networkInterfaces(): Promise<NetworkInterface[]> {
    await this.tick();
    const now = this.clock.now();
    const r = await this.direct.send(new DescribeNetworkInterfacesCommand({}));
    return (r.NetworkInterfaces ?? []).map((n) => {
      if (!n.Attachment) return n;
      const id = n.NetworkInterfaceId!;
      const status = this.attachmentOverride(id, now) ?? n.Attachment.Status;
      return { ...n, Attachment: { ...n.Attachment, Status: status as AttachmentStatus } };
    });
  }

  /** The Elastic IPs as AWS would show them (moto's record of the private address corrected). */
  async addressesAsAws(): Promise<Address[]> {
    const r = await this.direct.send(new DescribeAddressesCommand({}));
    return (r.Addresses ?? []).map((a) => {
      const t = this.eipTargets.get(a.AllocationId ?? '');
      return t && a.NetworkInterfaceId === t.eniId ? { ...a, PrivateIpAddress: t.privateIp } : a;
    });
  }

  /** Lets pending (non-stuck) detaches finish: what AWS would have done a while later. */
  async settle(): Promise<void> {
    const finite = [...this.pendingDetach.values()].filter((p) => Number.isFinite(p.readyAt));
    const latest = Math.max(this.clock.now(), ...finite.map((p) => p.readyAt));
    if (!this.clock.advance) throw new Error('settle() needs a simulated clock');
    this.clock.advance(latest - this.clock.now());
    await this.tick();
  }

  async stop(): Promise<void> {
    for (const server of [this.server, ...this.unixServers]) {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
    this.direct.destroy();
  }

  counts(): { total: number; mutations: number; byAction: Record<string, number> } {
    const byAction: Record<string, number> = {};
    for (const c of this.calls) byAction[c.action] = (byAction[c.action] ?? 0) + 1;
    return { total: this.calls.length, mutations: this.calls.filter((c) => MUTATING.has(c.action) && c.status < 300).length, byAction };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    if (this.dead) {
      req.socket.destroy();
      return;
    }
    if (this.frozen && this.behaviour.freezeAgent && String(req.headers['user-agent'] ?? '').includes(this.behaviour.freezeAgent)) {
      this.hung.add(res);
      return;
    }
    // EC2's Query API version; SNS speaks the same form encoding with its own.
    const isEc2 = (req.headers['content-type'] ?? '').includes('x-www-form-urlencoded') && /(^|&)Version=2016-11-15(&|$)/.test(body.toString());
    await this.tick();
    const invoke = /^\/2015-03-31\/functions\/([^/?]+)\/invocations(?:\?(.*))?$/.exec(req.url ?? '');
    // Auto Scaling's Query API (version 2011-01-01): the lifecycle-action and rollout calls go to the slots' model.
    const form = new URLSearchParams(body.toString());
    if (this.slotGroups && form.get('Version') === '2011-01-01' && SLOT_GROUP_CALLS.has(form.get('Action') ?? '')) {
      const started = this.clock.now();
      await this.clock.sleep(this.behaviour.latencyMs(`other:${form.get('Action')}`));
      const r = await this.slotGroups.answer(form);
      this.onCall?.({ service: 'other', action: form.get('Action')!, startedAt: started, ms: this.clock.now() - started, status: r.status });
      res.writeHead(r.status, { 'content-type': 'text/xml' });
      return void res.end(r.body);
    }
    if (this.rotations && req.headers['x-amz-target'] === 'secretsmanager.RotateSecret') {
      const started = this.clock.now();
      const r = this.rotations.answer(body);
      this.onCall?.({ service: 'other', action: 'secretsmanager.RotateSecret', startedAt: started, ms: 0, status: r.status });
      res.writeHead(r.status, { 'content-type': 'application/x-amz-json-1.1' });
      return void res.end(r.body);
    }
    if (req.method === 'POST' && invoke) return this.invoke(decodeURIComponent(invoke[1]!), new URLSearchParams(invoke[2] ?? ''), req, res, body);
    if (!isEc2) {
      // Other services: latency only, keyed by their operation (x-amz-target, e.g. DynamoDB_20120810.UpdateItem).
      const target = String(req.headers['x-amz-target'] ?? new URLSearchParams(body.toString()).get('Action') ?? 'other');
      const started = this.clock.now();
      await this.clock.sleep(this.behaviour.latencyMs(`other:${target}`));
      res.once('finish', () => this.onCall?.({ service: 'other', action: target, startedAt: started, ms: this.clock.now() - started, status: res.statusCode }));
      return this.forward(req, res, body);
    }

    const params = new URLSearchParams(body.toString());
    const action = params.get('Action') ?? '';
    const started = this.clock.now();
    const record = (status: number) => {
      const subject = params.get('AllocationId') ?? params.get('DestinationCidrBlock') ?? params.get('CidrBlock') ?? undefined;
      this.calls.push({ action, at: this.clock.now(), status, ...(subject ? { subject } : {}) });
      this.onCall?.({ service: 'ec2', action, startedAt: started, ms: this.clock.now() - started, status });
    };
    await this.clock.sleep(this.behaviour.latencyMs(action));

    const fail = (status: number, code: string, message: string) => {
      record(status);
      res.statusCode = status;
      res.setHeader('content-type', 'text/xml');
      res.end(`<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>${code}</Code><Message>${message}</Message></Error></Errors><RequestID>proxy</RequestID></Response>`);
    };

    const budget = this.behaviour.throttle[action] ?? 0;
    if ((this.throttled[action] ?? 0) < budget || this.behaviour.throttleDraw() || !this.takeBucketToken(action)) {
      this.throttled[action] = (this.throttled[action] ?? 0) + 1;
      return fail(503, 'RequestLimitExceeded', 'Request limit exceeded.');
    }

    const now = this.clock.now();
    for (const [, v] of params) {
      const until = this.visibleAt.get(v);
      if (until !== undefined && now < until && !action.startsWith('Create')) {
        return fail(400, ERR_FOR_PREFIX[v.split('-')[0]!]!, `The ID '${v}' does not exist`);
      }
    }

    let eipTarget: { eniId: string; privateIp: string } | undefined;
    let attachingSlot: string | undefined;
    let addressFilter: string[] | undefined;
    let forwardBody: string | undefined;
    switch (action) {
      case 'DeleteNetworkInterface': {
        const id = params.get('NetworkInterfaceId')!;
        const eni = await this.eni(id);
        if (eni?.Attachment || this.pendingDetach.has(id)) return fail(400, 'InvalidNetworkInterface.InUse', `Interface ${id} is currently in use.`);
        break;
      }
      case 'DeleteSubnet': {
        const id = params.get('SubnetId')!;
        const r = await this.direct.send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'subnet-id', Values: [id] }] }));
        if (r.NetworkInterfaces?.length) return fail(400, 'DependencyViolation', `The subnet '${id}' has dependencies and cannot be deleted.`);
        break;
      }
      case 'AssociateRouteTable': {
        const subnet = params.get('SubnetId')!;
        const r = await this.direct.send(new DescribeRouteTablesCommand({}));
        const taken = r.RouteTables?.some((t) => t.Associations?.some((a) => a.SubnetId === subnet && !a.Main));
        if (taken) return fail(400, 'Resource.AlreadyAssociated', `the specified association for route table already exists`);
        break;
      }
      case 'AttachNetworkInterface': {
        const id = params.get('NetworkInterfaceId')!;
        const eni = await this.eni(id);
        if (eni?.Attachment || this.pendingDetach.has(id)) return fail(400, 'InvalidParameterValue', `Interface ${id} is already attached.`);
        // moto attaches two interfaces at one device index; AWS refuses the second.
        const instance = params.get('InstanceId')!;
        const index = params.get('DeviceIndex');
        const onIt = await this.direct.send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [instance] }] }));
        // An attach at that index still on its way to moto counts too (AWS decides atomically).
        const slot = `${instance}/${index}`;
        if ((onIt.NetworkInterfaces ?? []).some((n) => String(n.Attachment?.DeviceIndex) === index) || this.attachingAt.has(slot)) {
          return fail(400, 'InvalidParameterValue', `Instance '${instance}' already has an interface attached at device index '${index}'.`);
        }
        this.attachingAt.add(slot);
        attachingSlot = slot;
        break;
      }
      case 'DetachNetworkInterface':
        return this.detach(params, res, record, fail);
      case 'AssociateAddress': {
        // moto ignores PrivateIpAddress (it records the interface's primary address); AWS associates
        // the EIP with the address asked for, which must be one of the interface's.
        const eniId = params.get('NetworkInterfaceId');
        const ip = params.get('PrivateIpAddress');
        if (eniId) {
          const eni = await this.eni(eniId);
          const ips = (eni?.PrivateIpAddresses ?? []).map((a) => a.PrivateIpAddress);
          if (eni && ip && !ips.includes(ip)) return fail(400, 'InvalidParameterValue', `The private IP address ${ip} is not assigned to network interface ${eniId}.`);
          if (eni) eipTarget = { eniId, privateIp: ip ?? eni.PrivateIpAddress! };
        }
        break;
      }
      case 'CreateRoute':
      case 'ReplaceRoute': {
        // moto accepts any route more specific than the VPC's CIDR; AWS refuses one that is not a whole subnet's block (a /32 never is).
        const cidr = params.get('DestinationCidrBlock');
        const table = (await this.direct.send(new DescribeRouteTablesCommand({ RouteTableIds: [params.get('RouteTableId')!] })).catch(() => undefined))?.RouteTables?.[0];
        const vpc = table?.VpcId ? (await this.direct.send(new DescribeVpcsCommand({ VpcIds: [table.VpcId] }))).Vpcs?.[0] : undefined;
        const blocks = (vpc?.CidrBlockAssociationSet ?? []).map((b) => b.CidrBlock!).filter(Boolean);
        // AWS takes a route more specific than the local route only when it is a whole subnet's block.
        const subnets = table?.VpcId ? ((await this.direct.send(new DescribeSubnetsCommand({ Filters: [{ Name: 'vpc-id', Values: [table.VpcId] }] }))).Subnets ?? []) : [];
        const wholeSubnet = subnets.some((sub) => sub.CidrBlock === cidr);
        if (cidr && !wholeSubnet && blocks.some((b) => cidrContains(b, cidr))) {
          return fail(400, 'InvalidParameterValue', `The destination CIDR block ${cidr} is equal to or more specific than one of this VPC's CIDR blocks. This route can target only an interface or an instance.`);
        }
        break;
      }
      case 'DescribeNetworkInterfaces': {
        // moto's addresses.private-ip-address filter matches the primary address only; AWS matches any of them.
        addressFilter = takeFilter(params, 'addresses.private-ip-address');
        if (addressFilter) forwardBody = params.toString();
        break;
      }
      case 'CreateNetworkInterface': {
        const token = params.get('ClientToken');
        const cached = token ? this.tokens.get(token) : undefined;
        if (cached) {
          record(200);
          res.setHeader('content-type', 'text/xml');
          return void res.end(cached);
        }
        const ip = params.get('PrivateIpAddress');
        const subnet = params.get('SubnetId')!;
        if (ip) {
          const r = await this.direct.send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'subnet-id', Values: [subnet] }] }));
          if (r.NetworkInterfaces?.some((n) => n.PrivateIpAddress === ip)) return fail(400, 'InvalidIPAddress.InUse', `Address ${ip} is in use.`);
        }
        break;
      }
    }

    const upstream = await fetch(this.moto + (req.url ?? '/'), { method: req.method, headers: this.headers(req), body: forwardBody ?? body }).finally(() => {
      if (attachingSlot) this.attachingAt.delete(attachingSlot);
    });
    let text = await upstream.text();
    const status = upstream.status;
    if (status < 300) {
      if (action === 'CreateSubnet' || action === 'CreateNetworkInterface') {
        const id = /<(subnetId|networkInterfaceId)>([^<]+)</.exec(text)?.[2];
        const hidden = typeof this.behaviour.notFoundAfterCreateMs === 'function' ? this.behaviour.notFoundAfterCreateMs() : this.behaviour.notFoundAfterCreateMs;
        if (id && hidden > 0) this.visibleAt.set(id, this.clock.now() + hidden);
        const token = params.get('ClientToken');
        if (action === 'CreateNetworkInterface' && token) this.tokens.set(token, text);
      }
      if (action === 'AttachNetworkInterface' && this.behaviour.attachMs > 0) {
        this.attachingUntil.set(params.get('NetworkInterfaceId')!, this.clock.now() + this.behaviour.attachMs);
      }
      if (action === 'DescribeNetworkInterfaces') text = this.rewriteAttachmentStatus(addressFilter ? keepItems(text, 'networkInterfaceSet', (item) => addressFilter!.some((ip) => item.includes(`<privateIpAddress>${ip}</privateIpAddress>`))) : text);
      if (action === 'AssociateAddress' && eipTarget) this.eipTargets.set(params.get('AllocationId') ?? '', eipTarget);
      if (action === 'DescribeAddresses') text = this.rewriteEipPrivateIps(text);
      if (action === 'DescribeInstances' && this.slotGroups) text = this.slotGroups.rewriteLaunchTimes(text);
    }
    record(status);
    if (status < 300 && MUTATING.has(action)) {
      this.mutations++;
      if (this.behaviour.crashAfterMutations === this.mutations) return this.crash(res);
    }
    res.statusCode = status;
    res.setHeader('content-type', upstream.headers.get('content-type') ?? 'text/xml');
    res.end(text);
  }

  /** The injected crash, after a mutation AWS applied: its answer never reaches the caller. */
  private crash(res: ServerResponse): void {
    if (this.behaviour.freezeAgent) {
      this.frozen = true;
      this.hung.add(res);
      return;
    }
    this.dead = true;
    res.socket?.destroy();
  }

  /** Lambda's Invoke API: `name[:qualifier]` or the ARN in the path, or `?Qualifier=`; `Event` invocations are answered 202 at once. */
  private async invoke(name: string, query: URLSearchParams, req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void> {
    // A name, name:qualifier, or an ARN (arn:aws:lambda:region:account:function:name[:qualifier]).
    const parts = name.split(':');
    const [functionName, fromName] = name.startsWith('arn:') ? [parts[6], parts[7]] : [parts[0], parts[1]];
    const qualifier = query.get('Qualifier') ?? fromName;
    const invocationType = String(req.headers['x-amz-invocation-type'] ?? 'RequestResponse');
    const json = (status: number, value: unknown) => {
      res.statusCode = status;
      res.setHeader('content-type', 'application/json');
      if (status >= 400) res.setHeader('x-amzn-errortype', (value as { Type: string }).Type);
      res.end(JSON.stringify(value));
    };
    if (!this.onInvoke) return json(404, { Type: 'ResourceNotFoundException', Message: `Function not found: ${functionName}` });
    let payload: unknown;
    try {
      payload = body.length ? JSON.parse(body.toString()) : {};
    } catch {
      return json(400, { Type: 'InvalidRequestContentException', Message: 'Could not parse request body into json' });
    }
    const call = this.onInvoke({ functionName: functionName!, qualifier, invocationType, payload });
    if (invocationType === 'Event') {
      call.catch(() => undefined);
      res.statusCode = 202;
      return void res.end();
    }
    const r = await call;
    res.statusCode = r.status;
    res.setHeader('content-type', 'application/json');
    res.end(r.body);
  }

  private async detach(params: URLSearchParams, res: ServerResponse, record: (s: number) => void, fail: (s: number, c: string, m: string) => void): Promise<void> {
    const attachmentId = params.get('AttachmentId')!;
    const force = params.get('Force') === 'true';
    const r = await this.direct.send(new DescribeNetworkInterfacesCommand({}));
    const eni = r.NetworkInterfaces?.find((n) => n.Attachment?.AttachmentId === attachmentId);
    if (!eni) return fail(400, 'InvalidAttachmentID.NotFound', `Attachment ${attachmentId} does not exist`);
    const id = eni.NetworkInterfaceId!;
    const b = this.behaviour;
    const now = this.clock.now();
    let p = this.pendingDetach.get(id);
    if (!p) {
      p = { eniId: id, attachmentId, forced: force, readyAt: force ? now + b.forceDetachMs : b.stuckDetach ? Infinity : now + b.detachMs() };
      this.pendingDetach.set(id, p);
    } else if (force && !p.forced) {
      p.forced = true;
      p.readyAt = Math.min(p.readyAt, now + b.forceDetachMs);
    }
    record(200);
    this.mutations++;
    if (b.crashAfterMutations === this.mutations) return this.crash(res);
    res.setHeader('content-type', 'text/xml');
    res.end('<?xml version="1.0" encoding="UTF-8"?><DetachNetworkInterfaceResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>proxy</requestId><return>true</return></DetachNetworkInterfaceResponse>');
  }

  /** Each EIP shows the private address it was associated with, as long as it is on that interface. */
  private rewriteEipPrivateIps(xml: string): string {
    return mapItems(xml, 'addressesSet', (item) => {
      const alloc = /<allocationId>([^<]+)<\/allocationId>/.exec(item)?.[1];
      const t = alloc ? this.eipTargets.get(alloc) : undefined;
      if (!t || !item.includes(`<networkInterfaceId>${t.eniId}</networkInterfaceId>`)) return item;
      return item.replace(/<privateIpAddress>[^<]*<\/privateIpAddress>/, `<privateIpAddress>${t.privateIp}</privateIpAddress>`);
    });
  }

  /** What AWS would say of an attachment still in progress: a pending detach, a recent attach; undefined otherwise. */
  private attachmentOverride(id: string, now: number): 'detaching' | 'attaching' | undefined {
    if (this.pendingDetach.has(id)) return 'detaching';
    const until = this.attachingUntil.get(id);
    if (until === undefined) return undefined;
    if (now < until) return 'attaching';
    this.attachingUntil.delete(id);
    return undefined;
  }

  /** ENIs whose detach is pending show "detaching"; recently attached ones show "attaching". */
  private rewriteAttachmentStatus(xml: string): string {
    const now = this.clock.now();
    return mapItems(xml, 'networkInterfaceSet', (item) => {
      const id = /<networkInterfaceId>([^<]+)<\/networkInterfaceId>/.exec(item)?.[1];
      const to = id ? this.attachmentOverride(id, now) : undefined;
      return to ? item.replace(/(<attachment>(?:(?!<\/attachment>).)*?)<status>attached<\/status>/s, `$1<status>${to}</status>`) : item;
    });
  }

  private async eni(id: string) {
    try {
      const r = await this.direct.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [id] }));
      return r.NetworkInterfaces?.[0];
    } catch {
      return undefined;
    }
  }

  private headers(req: IncomingMessage): Record<string, string> {
    const h: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'content-length' && k !== 'connection') h[k] = v;
    return h;
  }

  private async forward(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void> {
    const upstream = await fetch(this.moto + (req.url ?? '/'), { method: req.method, headers: this.headers(req), body: req.method === 'GET' || req.method === 'HEAD' ? undefined : body });
    res.statusCode = upstream.status;
    upstream.headers.forEach((v, k) => {
      if (k !== 'content-length' && k !== 'transfer-encoding' && k !== 'content-encoding' && k !== 'connection') res.setHeader(k, v);
    });
    res.end(Buffer.from(await upstream.arrayBuffer()));
  }
}
