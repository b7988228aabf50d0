/**
 * The VPC as AWS wires it, in network namespaces: a `vpc` router namespace standing in for the
 * VPC's routers, the internet gateway and the security groups; "the internet" (a client
 * namespace) behind it; one LB host per LB subnet (its primary interface, `ens5`, at the address
 * the CDK app gives the instance); the EKS nodes' subnet with the backends; and loxi-eni, plugged
 * into whichever host the emulator says it is attached to, as a bare interface (`ens6`) carrying
 * the ENI's MAC, which the agent finds through IMDS and configures.
 *
 * - Internet gateway: the EIP is translated (statelessly, 1:1) to the private address it is
 *   associated with, and only for traffic entering and leaving through the interface holding it;
 *   otherwise the EIP's packets are dropped.
 * - Route tables (route strategy): the overlay VIP's /32 to the owner's primary interface.
 * - Security groups: every link to an LB host ("an ENI") admits what lbIngressRules admits, or a
 *   packet whose reverse that same link has carried out (connection tracking per ENI); the rest is
 *   counted and dropped. A flow reaching a new ENI mid-stream passes only where a rule admits it.
 *
 * Addresses come from the sim profile (all in 100.64.0.0/10); nothing leaves the namespaces.
 */
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LoxihaConfig } from '../lib/config.ts';
import { type IngressSource, lbIngressRules } from '../lib/lb-ingress-rules.ts';
import { intToIp, parseCidr } from '../lib/net/cidr.ts';
import { lbIngressIp, lbInstanceIp } from '../lib/topology.ts';
import { type Lab, VPC_ROUTER_SYSCTLS } from './netns.ts';

/** The internet side: the client's subnet. */
export const INTERNET = { router: '100.64.1.1', client: '100.64.1.100', cidr: '100.64.1.0/24' };
/** The EKS nodes' subnet (the backends, "NodePorts"); the nodes' security group is this CIDR here. */
export const NODES = { router: '100.64.2.1', cidr: '100.64.2.0/24', ip: (b: number) => `100.64.2.${100 + b}` };
/** How a hot-plugged ENI appears on an AL2023 instance (the agent finds it by MAC, not by name). */
export const ENI_DEVICE = 'ens6';
export const PRIMARY_DEVICE = 'ens5';

function sh(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The ENI plugged into a host now. */
export interface Plugged {
  eniId: string;
  host: number;
  mac: string;
  /** The VIP group it carries (its position: 0 the default group). */
  group?: number;
}

/** The router's link to group `k`'s loxi-eni, and the device it appears as on its host (ens6 for the default group, as on AL2023). */
export const eniLink = (k: number) => (k === 0 ? 'eni' : `eni${k}`);
export const eniDevice = (k: number) => (k === 0 ? ENI_DEVICE : `ens${6 + k}`);

export class SimVpc {
  readonly lab: Lab;
  readonly config: LoxihaConfig;
  readonly eip: string;
  readonly hosts: number;
  readonly backends: number;
  /** loxi-eni of each VIP group (by position) plugged into a host now. */
  readonly plugs = new Map<number, Plugged>();
  /** The default group's loxi-eni plugged now. */
  get plugged(): Plugged | undefined {
    return this.plugs.get(0);
  }
  /** eni strategy: each group's cloud block (by position), the floating subnet the router reaches through its loxi-eni. */
  readonly blocks: string[];
  /** Each EIP's mapping now (the internet gateway's 1:1 translations): its target, or none. */
  private readonly igw = new Map<string, { privateIp: string; link: string } | undefined>();
  private readonly vipVia = new Map<string, string | undefined>();
  /** Route strategy: how many VIP groups (each host holds an ingress IP per group). */
  readonly groups: number;

  constructor(lab: Lab, config: LoxihaConfig, eip: string, backends: number, o: { groups?: number; blocks?: string[] } = {}) {
    this.lab = lab;
    this.config = config;
    this.eip = eip;
    this.hosts = config.availabilityZones.length;
    this.backends = backends;
    this.groups = o.groups ?? 1;
    this.blocks = o.blocks ?? [config.cloudCidrBlock];
  }

  /** Namespace role of LB host `i` (0-based, the instance index). */
  static host(i: number): string {
    return `lb${i}`;
  }

  /** The router's link to LB host `i`'s primary interface. */
  static primaryLink(i: number): string {
    return `lb${i}p`;
  }

  routerOf(cidr: string): string {
    return intToIp(parseCidr(cidr)!.network + 1);
  }

  build(): void {
    const { lab } = this;
    const vpc = lab.addNamespace('vpc');
    const x = (...a: string[]) => sh(['-n', vpc, ...a]);
    lab.exec('vpc', 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', ...VPC_ROUTER_SYSCTLS]);
    // The internet.
    lab.addNamespace('cl0');
    this.veth('vpc', 'inet', INTERNET.router, 'cl0', 'eth0', INTERNET.client, 24, INTERNET.router);
    // LB hosts, each on its AZ's LB subnet.
    for (let i = 0; i < this.hosts; i++) {
      const cidr = this.config.lbSubnetCidrs[i]!;
      lab.addNamespace(SimVpc.host(i));
      this.veth('vpc', SimVpc.primaryLink(i), this.routerOf(cidr), SimVpc.host(i), PRIMARY_DEVICE, lbInstanceIp(this.config, i), 24, this.routerOf(cidr));
      // Route strategy: the ingress IPs (one per VIP group), secondary addresses AL2023 configures from IMDS.
      if (this.config.strategy === 'route') for (let g = 0; g < this.groups; g++) sh(['-n', lab.ns(SimVpc.host(i)), 'addr', 'add', `${lbIngressIp(this.config, i, g)}/24`, 'dev', PRIMARY_DEVICE]);
      lab.exec(SimVpc.host(i), 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    }
    // The EKS nodes' subnet: a bridge in the router namespace.
    x('link', 'add', 'nodes', 'type', 'bridge');
    x('addr', 'add', `${NODES.router}/24`, 'dev', 'nodes');
    x('link', 'set', 'nodes', 'up');
    for (let b = 1; b <= this.backends; b++) {
      const role = `be${b}`;
      lab.addNamespace(role);
      const outer = `be${b}`;
      sh(['link', 'add', outer, 'netns', vpc, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', lab.ns(role)]);
      x('link', 'set', outer, 'master', 'nodes', 'up');
      sh(['-n', lab.ns(role), 'addr', 'add', `${NODES.ip(b)}/24`, 'dev', 'eth0']);
      sh(['-n', lab.ns(role), 'link', 'set', 'eth0', 'up']);
      sh(['-n', lab.ns(role), 'route', 'add', 'default', 'via', NODES.router]);
    }
    // While no ENI holds the floating subnet's addresses, their packets vanish, as in AWS mid-move.
    if (this.config.strategy === 'eni') for (const block of this.blocks) x('route', 'add', 'blackhole', block, 'metric', '100');
    this.loadRules();
  }

  /** A veth pair between two namespaces with an address on each end; `gw` becomes b's default route. */
  private veth(a: string, devA: string, addrA: string, b: string, devB: string, addrB: string, len: number, gw?: string): void {
    const { lab } = this;
    sh(['link', 'add', devA, 'netns', lab.ns(a), 'type', 'veth', 'peer', 'name', devB, 'netns', lab.ns(b)]);
    sh(['-n', lab.ns(a), 'addr', 'add', `${addrA}/${len}`, 'dev', devA]);
    sh(['-n', lab.ns(b), 'addr', 'add', `${addrB}/${len}`, 'dev', devB]);
    sh(['-n', lab.ns(a), 'link', 'set', devA, 'up']);
    sh(['-n', lab.ns(b), 'link', 'set', devB, 'up']);
    if (gw) sh(['-n', lab.ns(b), 'route', 'add', 'default', 'via', gw]);
  }

  /** The security-group links: every LB host's primary and the plugged ENI. */
  private links(): string[] {
    return [...Array.from({ length: this.hosts }, (_, i) => SimVpc.primaryLink(i)), ...this.blocks.map((_, k) => eniLink(k))];
  }

  /** nft source match for a rule's source. */
  private source(s: IngressSource): string {
    if ('cidr' in s) return `ip saddr ${s.cidr}`;
    if (s.group === 'self') return `ip saddr { ${Array.from({ length: this.hosts }, (_, i) => lbInstanceIp(this.config, i)).join(', ')}, ${this.config.vip} }`;
    return `ip saddr ${NODES.cidr}`;
  }

  /** The router's ruleset: internet gateway (EIP ↔ ENI) and the security groups per link. */
  private loadRules(): void {
    const rules = lbIngressRules(this.config);
    const sets = this.links()
      .map((l) => `  set seen_${l} { type ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service; flags dynamic, timeout; timeout 10m; }`)
      .join('\n');
    // Every link first records what leaves its ENI; then each link's inbound rules (a verdict ends the chain).
    const track = this.links().map((l) => `    iifname "${l}" update @seen_${l} { ip saddr . ip daddr . meta l4proto . th sport . th dport }`);
    const sg = this.links()
      .flatMap((l) => [
        `    oifname "${l}" ip daddr . ip saddr . meta l4proto . th dport . th sport @seen_${l} accept`,
        ...rules.map((r) => `    oifname "${l}" ${this.source(r.source)} ${r.protocol} dport ${r.fromPort === r.toPort ? r.fromPort : `${r.fromPort}-${r.toPort}`} accept`),
        `    oifname "${l}" counter name sg_drop_${l} drop`,
      ])
      .join('\n');
    const counters = this.links().map((l) => `  counter sg_drop_${l} { }`).join('\n');
    const ruleset = `table ip loxiha_vpc {
${sets}
${counters}
  counter igw_drop { }
  chain igw_in {
    type filter hook prerouting priority -300; policy accept;
  }
  chain igw_out {
    type filter hook postrouting priority 100; policy accept;
  }
  chain igw_fwd {
    type filter hook forward priority -10; policy accept;
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
${track.join('\n')}
${sg}
  }
}
`;
    this.nft(ruleset);
  }

  /** Loads an nft script into the router namespace. */
  private nft(script: string): void {
    const path = join(tmpdir(), `loxiha-vpc-${this.lab.id}.nft`);
    writeFileSync(path, script);
    try {
      this.lab.exec('vpc', 'nft', ['-f', path]);
    } finally {
      rmSync(path, { force: true });
    }
  }

  /**
   * Points the internet gateway at the private address the EIP is associated with, on the interface
   * (`link`) that holds it — or nowhere: the EIP's packets are then dropped. Like AWS's, the
   * translation is stateless 1:1 (a re-association takes effect on the next packet of every flow)
   * and applies only to traffic entering and leaving through that interface.
   */
  setIgw(target: { privateIp: string; link: string } | undefined, eip = this.eip): void {
    const same = (a: { privateIp: string; link: string } | undefined, b: typeof a) => a?.privateIp === b?.privateIp && a?.link === b?.link;
    if (this.igw.has(eip) && same(this.igw.get(eip), target)) return;
    this.igw.set(eip, target);
    const t = 'ip loxiha_vpc';
    const lines = [`flush chain ${t} igw_in`, `flush chain ${t} igw_out`, `flush chain ${t} igw_fwd`];
    for (const [address, to] of this.igw) {
      if (to) {
        lines.push(
          `add rule ${t} igw_in iifname "inet" ip daddr ${address} notrack ip daddr set ${to.privateIp}`,
          `add rule ${t} igw_in ip saddr ${to.privateIp} ip daddr ${INTERNET.cidr} notrack`,
          `add rule ${t} igw_fwd oifname "inet" ip saddr ${to.privateIp} iifname "${to.link}" accept`,
          `add rule ${t} igw_out oifname "inet" ip saddr ${to.privateIp} ip saddr set ${address}`,
        );
      } else lines.push(`add rule ${t} igw_in iifname "inet" ip daddr ${address} counter name igw_drop drop`);
    }
    // A private address without a public mapping does not reach the internet (it is dropped, not sent untranslated).
    lines.push(`add rule ${t} igw_fwd oifname "inet" counter name igw_drop drop`);
    this.nft(`${lines.join('\n')}\n`);
  }

  /** The VPC's route to the overlay VIP (route strategy): to host `host`'s primary interface, or a blackhole. */
  setVipRoute(vip: string, host: number | undefined): void {
    const via = host === undefined ? undefined : lbInstanceIp(this.config, host);
    if (this.vipVia.has(vip) && via === this.vipVia.get(vip)) return;
    if (via) sh(['-n', this.lab.ns('vpc'), 'route', 'replace', `${vip}/32`, 'via', via]);
    else sh(['-n', this.lab.ns('vpc'), 'route', 'replace', 'blackhole', `${vip}/32`]);
    this.vipVia.set(vip, via);
  }

  /** Hot-plugs an ENI into host `host` as a bare interface with `mac` (what attaching does). */
  plug(p: Plugged): void {
    const k = p.group ?? 0;
    if (this.plugs.has(k)) this.unplug(k);
    const vpc = this.lab.ns('vpc');
    const link = eniLink(k);
    const block = this.blocks[k]!;
    sh(['link', 'add', link, 'netns', vpc, 'type', 'veth', 'peer', 'name', eniDevice(k), 'address', p.mac, 'netns', this.lab.ns(SimVpc.host(p.host))]);
    sh(['-n', vpc, 'addr', 'add', `${this.routerOf(block)}/${parseCidr(block)!.prefix}`, 'dev', link]);
    sh(['-n', vpc, 'link', 'set', link, 'up']);
    // A new ENI has tracked nothing yet.
    this.lab.exec('vpc', 'nft', ['flush', 'set', 'ip', 'loxiha_vpc', `seen_${link}`]);
    this.plugs.set(k, { ...p, group: k });
  }

  /** Removes group `k`'s plugged ENI from its host (what a finished detach does). */
  unplug(k = 0): void {
    if (!this.plugs.has(k)) return;
    try {
      sh(['-n', this.lab.ns('vpc'), 'link', 'del', eniLink(k)]);
    } catch {
      /* gone with its host */
    }
    this.plugs.delete(k);
  }

  /** The instance dies: its links go dark (the router sees no carrier; packets to it vanish). */
  cut(host: number): void {
    sh(['-n', this.lab.ns('vpc'), 'link', 'set', SimVpc.primaryLink(host), 'down']);
    for (const [k, p] of this.plugs) if (p.host === host) sh(['-n', this.lab.ns('vpc'), 'link', 'set', eniLink(k), 'down']);
  }

  /** The instance is back: its primary link carries again. */
  restore(host: number): void {
    sh(['-n', this.lab.ns('vpc'), 'link', 'set', SimVpc.primaryLink(host), 'up']);
  }

  /** Packets the security groups dropped, per link. */
  sgDrops(): Record<string, number> {
    const out: Record<string, number> = {};
    const text = this.lab.exec('vpc', 'nft', ['list', 'counters', 'table', 'ip', 'loxiha_vpc']);
    for (const m of text.matchAll(/counter (sg_drop_\w+|igw_drop) \{\s*packets (\d+)/g)) out[m[1]!] = Number(m[2]);
    return out;
  }
}
