/**
 * The VIP's path through this host. On AWS the VIP arrives as a hot-plugged interface (loxi-eni)
 * in the floating subnet; the internet gateway maps the EIP only for packets that enter and leave
 * through it, and security groups track connections per interface. So while the VIP's interface
 * is here, every packet of a load-balanced flow (the ruleset marks them, ROUTE_MARK_BIT) leaves
 * through it — to clients and to endpoints alike — by a policy rule on that mark and a table whose
 * default route is the floating subnet's router (network + 1). The host's own traffic keeps the
 * main table. When the interface leaves, exactly that rule and table go.
 *
 * Amazon Linux 2023's amazon-ec2-net-utils also configures a hot-plugged interface (address by
 * DHCP, its own source-address rules): on AWS the agent lets it, and brings the interface up and
 * adds the address itself when they are missing, so the result is the same with or without it.
 * Away from AWS the interface and its address are the role's signal: the agent never touches them.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import { GROUP_ROUTE_MARK_MASK, groupRouteMark, ROUTE_MARK_BIT } from '../datapath/render.ts';
import { HelperShell } from '../helper-shell.ts';

/** The routing table and rule priority the agent owns for the VIP's path. */
export const VIP_ROUTE_TABLE = 7410;
export const VIP_RULE_PRIORITY = 7410;

/** What a VIP group's path takes on this host: a routing table, a rule priority, and the packet mark (under a mask) the rule matches. */
export interface PathSlot {
  table: number;
  priority: number;
  mark: number;
  mask: number;
}

/**
 * The path of the VIP group at position `position` (vipGroups order: 0 the default group, which
 * keeps the table, priority and mark it had before groups existed); group k ≥ 1: table and
 * priority 7410 + k, its mark from the datapath's route_marks map.
 */
export function pathSlotOf(position: number): PathSlot {
  if (position === 0) return { table: VIP_ROUTE_TABLE, priority: VIP_RULE_PRIORITY, mark: ROUTE_MARK_BIT, mask: ROUTE_MARK_BIT };
  return { table: VIP_ROUTE_TABLE + position, priority: VIP_RULE_PRIORITY + position, mark: groupRouteMark(position), mask: GROUP_ROUTE_MARK_MASK };
}

/** Where the VIP lives on this host: the interface, the VIP's prefix on it, and the subnet's router. */
export interface VipInterface {
  ifname: string;
  prefixLength: number;
  gateway: string;
}

const toInt = (ip: string) => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
const toIp = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');

/** The subnet's router: AWS reserves network + 1 for it. Undefined for a /31 or /32 (no router to name). */
export function subnetRouter(ip: string, prefixLength: number): string | undefined {
  if (prefixLength > 30 || prefixLength < 1) return undefined;
  const mask = (0xffffffff << (32 - prefixLength)) >>> 0;
  return toIp(((toInt(ip) & mask) >>> 0) + 1);
}

interface IpAddrJson {
  ifname: string;
  flags?: string[];
  address?: string;
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

/** Why an address of the VIP on this host does not count as carrying it (away from AWS). */
export interface NotCarrying {
  ifname: string;
  why: string;
}

/** An interface carries traffic only while it is up and has its carrier (a link set down, or whose other end went, does not). */
const isUp = (l: IpAddrJson) => (l.flags ?? []).includes('UP') && (l.flags ?? []).includes('LOWER_UP');

/**
 * Away from AWS (tests, the local simulation): the VIP's interface is the one that carries the VIP
 * as an address — not loopback, up with its carrier, with a prefix of /1–/30 (the VIP's path needs
 * the subnet's router, network + 1, which a /31 or /32 does not name) — as a hot-plugged ENI does
 * once configured. Every other address of the VIP is listed with why it does not count. Pure over
 * `ip -j addr`.
 */
export function localVipCarrier(vip: string, links: IpAddrJson[]): { iface: VipInterface | undefined; notCarrying: NotCarrying[] } {
  const notCarrying: NotCarrying[] = [];
  let iface: VipInterface | undefined;
  for (const l of links) {
    for (const a of l.addr_info ?? []) {
      if (a.family !== 'inet' || a.local !== vip) continue;
      if (l.ifname === 'lo') continue; // the datapath's own alias (route strategy), never the VIP's path
      const gateway = subnetRouter(vip, a.prefixlen);
      if (!gateway) notCarrying.push({ ifname: l.ifname, why: `the VIP is /${a.prefixlen} there: only /1–/30 counts (the VIP's path routes through the subnet's router, network + 1)` });
      else if (!isUp(l)) notCarrying.push({ ifname: l.ifname, why: 'the interface is down (or has no carrier): it carries nothing' });
      else iface ??= { ifname: l.ifname, prefixLength: a.prefixlen, gateway };
    }
  }
  return { iface, notCarrying };
}

/** On AWS: the interface whose MAC IMDS lists with the VIP, and the subnet IMDS gives for it. Pure over `ip -j link`. */
export function vipFromMac(vip: string, mac: string, subnetCidr: string, links: IpAddrJson[]): VipInterface | undefined {
  const link = links.find((l) => l.address?.toLowerCase() === mac.toLowerCase());
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(subnetCidr.trim());
  if (!link || !m || !isIPv4(m[1]!)) return undefined;
  const prefixLength = Number(m[2]);
  const gateway = subnetRouter(vip, prefixLength);
  return gateway ? { ifname: link.ifname, prefixLength, gateway } : undefined;
}

export type RunIp = (args: string[]) => Promise<string>;

/** What one `ip -batch` line may hold: words without spaces, quotes or anything a shell or ip's tokenizer would read apart. */
const IP_WORD = /^[\w.:/-]+$/;

/**
 * `ip` from a helper shell (../helper-shell.ts), one command per `ip -batch` file: the role and the
 * VIP's path look several times a second, and forking the agent for each cost it milliseconds.
 * Output is JSON for the commands that print (`-j`).
 */
export function ipRunner(netns?: string): RunIp & { stop: () => void } {
  let helper: HelperShell | undefined;
  const run = async (args: string[]) => {
    const words = args[0] === '-j' ? args.slice(1) : args;
    if (!words.every((w) => IP_WORD.test(w))) throw new Error(`ip ${args.join(' ')}: refused (not plain words)`);
    helper ??= new HelperShell({ name: 'ip', command: 'ip -j -batch "$f"', netns, stdout: true, timeoutMs: 5000 });
    const r = await helper.run(`${words.join(' ')}\n`);
    if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim().split('\n')[0] || `exit ${r.code}`}`);
    return r.stdout;
  };
  /** Ends the helper shell and removes its folder; a later call starts another. */
  const stop = () => {
    helper?.stop();
    helper = undefined;
  };
  return Object.assign(run, { stop });
}

/** The agent's one `ip` helper (main.ts stops it on the way out). */
export const runIp = ipRunner();

export async function ipLinks(run: RunIp = runIp): Promise<IpAddrJson[]> {
  return JSON.parse((await run(['-j', 'addr', 'show'])) || '[]') as IpAddrJson[];
}

/** Sets up, checks and removes the VIP's path. Every step is idempotent; a restart finds it as it left it. */
export class VipPath {
  private readonly vip: string;
  private readonly run: RunIp;
  private readonly announce: (ifname: string, vip: string) => void;
  private current: VipInterface | undefined;
  /** Known to hold none of the path (checked once after start, or removed since): a BACKUP's looks then cost nothing. */
  private clean = false;
  private readonly manageInterface: boolean;
  private readonly slot: PathSlot;

  /**
   * `manageInterface`: bring the interface up and add the VIP when it lacks it. Right on AWS, where
   * IMDS (not this host's addresses) says the interface holds the VIP and a bare hot-plugged ENI
   * needs both; wrong anywhere else, where the interface and its address *are* the role's signal:
   * an agent that put them back would re-create, against the operator or a failed host, the very
   * thing that makes it MASTER. Off by default.
   */
  constructor(o: { vip: string; run?: RunIp; announce?: (ifname: string, vip: string) => void; manageInterface?: boolean; slot?: PathSlot }) {
    this.vip = o.vip;
    this.slot = o.slot ?? pathSlotOf(0);
    this.run = o.run ?? runIp;
    this.announce = o.announce ?? gratuitousArp;
    this.manageInterface = o.manageInterface ?? false;
  }

  /** Makes the host match `target` (the VIP's interface, or none). Returns whether anything changed. */
  async ensure(target: VipInterface | undefined): Promise<boolean> {
    if (!target && this.clean) return false;
    const { table, priority } = this.slot;
    const rules = JSON.parse((await this.run(['-j', 'rule', 'show', 'priority', String(priority)])) || '[]') as unknown[];
    const routes = JSON.parse((await this.run(['-j', 'route', 'show', 'table', String(table)]).catch(() => '[]')) || '[]') as { dst: string; gateway?: string; dev?: string }[];
    if (!target) {
      if (rules.length) await this.run(['rule', 'del', 'priority', String(priority)]);
      if (routes.length) await this.run(['route', 'flush', 'table', String(table)]);
      this.current = undefined;
      this.clean = true;
      return rules.length > 0 || routes.length > 0;
    }
    this.clean = false;
    const same = this.current && this.current.ifname === target.ifname && this.current.gateway === target.gateway;
    const routeOk = routes.some((r) => r.dst === 'default' && r.gateway === target.gateway && r.dev === target.ifname);
    const links = await ipLinks(this.run);
    const link = links.find((l) => l.ifname === target.ifname);
    const addressOk = link?.addr_info?.some((a) => a.family === 'inet' && a.local === this.vip) ?? false;
    const up = link?.flags?.includes('UP') ?? false;
    if (same && routeOk && rules.length === 1 && ((addressOk && up) || !this.manageInterface)) return false;
    if (this.manageInterface) {
      await this.run(['link', 'set', target.ifname, 'up']);
      if (!addressOk) await this.run(['addr', 'replace', `${this.vip}/${target.prefixLength}`, 'dev', target.ifname]);
    }
    // Replies from endpoints and clients arrive here while the main table points elsewhere: loose reverse-path check.
    await writeFile(`/proc/sys/net/ipv4/conf/${target.ifname}/rp_filter`, '2').catch(() => undefined);
    await this.run(['route', 'replace', 'default', 'via', target.gateway, 'dev', target.ifname, 'table', String(table), 'onlink']);
    if (rules.length !== 1) {
      if (rules.length) await this.run(['rule', 'del', 'priority', String(priority)]);
      const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;
      await this.run(['rule', 'add', 'fwmark', `${hex(this.slot.mark)}/${hex(this.slot.mask)}`, 'lookup', String(table), 'priority', String(priority)]);
    }
    if (!same) this.announce(target.ifname, this.vip);
    this.current = target;
    return true;
  }
}

/** Tells the segment the VIP moved (gratuitous ARP); best effort, in the background. */
function gratuitousArp(ifname: string, vip: string): void {
  execFile('arping', ['-U', '-c', '2', '-I', ifname, vip], { timeout: 5000 }, () => undefined);
}
