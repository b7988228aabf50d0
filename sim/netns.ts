/**
 * Network namespaces made by a test: a switch namespace with a front bridge (clients,
 * LB front legs) and a back bridge (LB back legs, backends). Every name carries the lab's
 * id; stop() kills the lab's processes and deletes its namespaces, also on failure and on
 * process exit. Addresses are all in 100.64.0.0/10.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';


/**
 * AWS's VPC router sends no ICMP redirects. Linux's does by default (the router forwards a
 * backend's reply to the VIP out of the interface it came in on): the backend then caches the LB
 * as its next hop for the VIP and keeps sending there after the VIP's route moves — until the
 * cache expires, minutes later. Set before the router's interfaces exist (they inherit `default`).
 */
export const VPC_ROUTER_SYSCTLS = ['net.ipv4.conf.all.send_redirects=0', 'net.ipv4.conf.default.send_redirects=0'];

export const FRONT = '100.64.1';
export const BACK = '100.64.2';
export const VIP = '100.64.248.254';
/** The floating subnet's router (network + 1), the vpc namespace's end of loxi-eni. */
export const VIP_ROUTER = '100.64.248.1';

/**
 * SIGKILLs every process in the namespace `name`, and returns how many it killed. A process that exits between the
 * listing and its kill (a helper finishing, a child of one already killed) is gone as wanted, not an error.
 */
export function killAllInNamespace(name: string): number {
  let killed = 0;
  for (const pid of sh('ip', ['netns', 'pids', name]).split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
      killed++;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
    }
  }
  return killed;
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 * 1024 * 1024 });
}

export interface Proc {
  child: ChildProcess;
  output: () => string;
  waitFor: (re: RegExp, ms?: number) => Promise<string>;
}

export class Lab {
  readonly id: string;
  readonly namespaces: string[] = [];
  private readonly procs = new Set<ChildProcess>();
  private readonly onExit = () => this.stopSync();
  private links = 0;

  constructor() {
    this.id = randomBytes(3).toString('hex');
    process.once('exit', this.onExit);
  }

  ns(role: string): string {
    return `lx${this.id}-${role}`;
  }

  exec(role: string, cmd: string, args: string[]): string {
    return sh('ip', ['netns', 'exec', this.ns(role), cmd, ...args]);
  }

  /** Makes the namespace for `role` (loopback up); stop() deletes it. */
  addNamespace(role: string): string {
    const name = this.ns(role);
    sh('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  /** Connects `role` to the switch's `bridge` with a veth pair; the inner end is `dev` with `addr`/24. */
  private plug(role: string, bridge: 'front' | 'back', dev: string, addr: string): void {
    const outer = `v${this.id}${this.links++}`;
    sh('ip', ['link', 'add', outer, 'netns', this.ns('sw'), 'type', 'veth', 'peer', 'name', dev, 'netns', this.ns(role)]);
    sh('ip', ['-n', this.ns('sw'), 'link', 'set', outer, 'master', `br-${bridge}`, 'up']);
    sh('ip', ['-n', this.ns(role), 'addr', 'add', `${addr}/24`, 'dev', dev]);
    sh('ip', ['-n', this.ns(role), 'link', 'set', dev, 'up']);
  }

  /**
   * Switch + one client + `lbs` load balancers + `backends` backends.
   * `wiring: 'point-to-point'` (one client and one backend only) links them by veth pairs without
   * the switch: client ↔ each LB ↔ backend, plus client ↔ backend (`direct`) — the layout of the
   * data-path measurements in NOTES.md, where a bridge hop does not weigh on every path.
   */
  build(opts: { lbs: number; backends: number; clients?: number; wiring?: 'switch' | 'point-to-point' }): void {
    if (opts.wiring === 'point-to-point') return this.buildPointToPoint(opts.lbs);
    this.addNamespace('sw');
    for (const b of ['front', 'back']) {
      sh('ip', ['-n', this.ns('sw'), 'link', 'add', `br-${b}`, 'type', 'bridge']);
      sh('ip', ['-n', this.ns('sw'), 'link', 'set', `br-${b}`, 'up']);
    }
    for (let c = 0; c < (opts.clients ?? 1); c++) {
      this.addNamespace(`cl${c}`);
      this.plug(`cl${c}`, 'front', 'eth0', `${FRONT}.${100 + c}`);
    }
    for (let l = 1; l <= opts.lbs; l++) {
      this.addNamespace(`lb${l}`);
      this.plug(`lb${l}`, 'front', 'front', `${FRONT}.${10 + l}`);
      this.plug(`lb${l}`, 'back', 'back', `${BACK}.${10 + l}`);
      sh('ip', ['netns', 'exec', this.ns(`lb${l}`), 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
      sh('ip', ['-n', this.ns(`lb${l}`), 'addr', 'add', `${VIP}/32`, 'dev', 'lo']);
    }
    for (let b = 1; b <= opts.backends; b++) {
      this.addNamespace(`be${b}`);
      this.plug(`be${b}`, 'back', 'eth0', this.backendIp(b));
    }
    this.activate(1);
  }

  /** Links `a`:`devA` (`addrA`/32) and `b`:`devB` (`addrB`/32) by a veth pair with a host route each way. */
  private link(a: string, devA: string, addrA: string, b: string, devB: string, addrB: string): void {
    sh('ip', ['link', 'add', devA, 'netns', this.ns(a), 'type', 'veth', 'peer', 'name', devB, 'netns', this.ns(b)]);
    for (const [role, dev, own, peer] of [
      [a, devA, addrA, addrB],
      [b, devB, addrB, addrA],
    ] as const) {
      sh('ip', ['-n', this.ns(role), 'addr', 'add', `${own}/32`, 'dev', dev]);
      sh('ip', ['-n', this.ns(role), 'link', 'set', dev, 'up']);
      sh('ip', ['-n', this.ns(role), 'route', 'add', `${peer}/32`, 'dev', dev]);
    }
  }

  private buildPointToPoint(lbs: number): void {
    for (const role of ['cl0', 'be1']) this.addNamespace(role);
    for (let l = 1; l <= lbs; l++) {
      this.addNamespace(`lb${l}`);
      this.link('cl0', `lb${l}`, `${FRONT}.100`, `lb${l}`, 'front', `${FRONT}.${10 + l}`);
      this.link(`lb${l}`, 'back', `${BACK}.${10 + l}`, 'be1', `lb${l}`, this.backendIp(1));
      // The rest of the back /24 behind the back leg, as on the switch (probes to absent endpoints go unanswered).
      sh('ip', ['-n', this.ns(`lb${l}`), 'route', 'add', `${BACK}.0/24`, 'dev', 'back']);
      sh('ip', ['netns', 'exec', this.ns(`lb${l}`), 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
      sh('ip', ['-n', this.ns(`lb${l}`), 'addr', 'add', `${VIP}/32`, 'dev', 'lo']);
    }
    this.link('cl0', 'direct', `${BACK}.200`, 'be1', 'direct', this.backendIp(1));
    this.activate(1);
  }

  /**
   * The VPC as AWS wires it, in miniature: a `vpc` router namespace, a client behind it (the
   * internet), the LBs' and backends' primary interfaces on one subnet (the back bridge) whose
   * router is the vpc namespace, and no VIP anywhere until plugEni() hot-plugs "loxi-eni" into an
   * LB: a veth whose LB end carries the VIP in the floating subnet (VIP_SUBNET) and whose vpc end
   * is that subnet's router. The vpc namespace reaches the VIP only through the plugged interface,
   * as AWS delivers to the ENI holding it.
   */
  buildVpc(opts: { lbs: number; backends: number }): void {
    this.addNamespace('sw');
    sh('ip', ['-n', this.ns('sw'), 'link', 'add', 'br-back', 'type', 'bridge']);
    sh('ip', ['-n', this.ns('sw'), 'link', 'set', 'br-back', 'up']);
    this.addNamespace('vpc');
    sh('ip', ['netns', 'exec', this.ns('vpc'), 'sysctl', '-qw', 'net.ipv4.ip_forward=1', ...VPC_ROUTER_SYSCTLS]);
    this.plug('vpc', 'back', 'back', `${BACK}.1`);
    // While no interface holds the VIP, its packets are dropped silently, as AWS does mid-move.
    sh('ip', ['-n', this.ns('vpc'), 'route', 'add', 'blackhole', `${VIP_ROUTER.replace(/\.1$/, '.0')}/24`, 'metric', '100']);
    this.addNamespace('cl0');
    sh('ip', ['link', 'add', 'inet', 'netns', this.ns('vpc'), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.ns('cl0')]);
    sh('ip', ['-n', this.ns('vpc'), 'addr', 'add', `${FRONT}.1/24`, 'dev', 'inet']);
    sh('ip', ['-n', this.ns('vpc'), 'link', 'set', 'inet', 'up']);
    sh('ip', ['-n', this.ns('cl0'), 'addr', 'add', `${FRONT}.100/24`, 'dev', 'eth0']);
    sh('ip', ['-n', this.ns('cl0'), 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', this.ns('cl0'), 'route', 'add', 'default', 'via', `${FRONT}.1`]);
    for (let l = 1; l <= opts.lbs; l++) {
      this.addNamespace(`lb${l}`);
      this.plug(`lb${l}`, 'back', 'back', `${BACK}.${10 + l}`);
      sh('ip', ['-n', this.ns(`lb${l}`), 'route', 'add', 'default', 'via', `${BACK}.1`]);
      sh('ip', ['netns', 'exec', this.ns(`lb${l}`), 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    }
    for (let b = 1; b <= opts.backends; b++) {
      this.addNamespace(`be${b}`);
      this.plug(`be${b}`, 'back', 'eth0', this.backendIp(b));
      sh('ip', ['-n', this.ns(`be${b}`), 'route', 'add', 'default', 'via', `${BACK}.1`]);
    }
  }

  /**
   * Hot-plugs loxi-eni into LB `l`: by default with the VIP/24 on its end and up, as the instance
   * configures a new ENI; `{ configured: false }` leaves it down and bare, as it appears before
   * anything on the host touches it; `mac` gives it the MAC the metadata service names.
   */
  plugEni(l: number, o: { mac?: string; configured?: boolean } = {}): void {
    sh('ip', ['link', 'add', 'eni', 'netns', this.ns('vpc'), 'type', 'veth', 'peer', 'name', 'loxi-eni', ...(o.mac ? ['address', o.mac] : []), 'netns', this.ns(`lb${l}`)]);
    sh('ip', ['-n', this.ns('vpc'), 'addr', 'add', `${VIP_ROUTER}/24`, 'dev', 'eni']);
    sh('ip', ['-n', this.ns('vpc'), 'link', 'set', 'eni', 'up']);
    if (o.configured === false) return;
    sh('ip', ['-n', this.ns(`lb${l}`), 'addr', 'add', `${VIP}/24`, 'dev', 'loxi-eni']);
    sh('ip', ['-n', this.ns(`lb${l}`), 'link', 'set', 'loxi-eni', 'up']);
  }

  /** Detaches loxi-eni from wherever it is (both ends go). */
  unplugEni(): void {
    sh('ip', ['-n', this.ns('vpc'), 'link', 'del', 'eni']);
  }

  backendIp(b: number): string {
    return `${BACK}.${100 + b}`;
  }

  /** Sends the VIP's traffic (clients → VIP, backends → VIP) through LB `l`: what the EIP + loxi-eni move does on AWS. */
  activate(l: number): void {
    for (const ns of this.namespaces) {
      const role = ns.slice(`lx${this.id}-`.length);
      const via = role.startsWith('cl') ? `${FRONT}.${10 + l}` : role.startsWith('be') ? `${BACK}.${10 + l}` : undefined;
      if (via) sh('ip', ['-n', ns, 'route', 'replace', `${VIP}/32`, 'via', via]);
    }
  }

  spawn(role: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Proc {
    const child = spawn('ip', ['netns', 'exec', this.ns(role), cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    this.procs.add(child);
    child.on('exit', () => this.procs.delete(child));
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-200_000)));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-200_000)));
    return {
      child,
      output: () => out,
      waitFor: (re, ms = 15_000) =>
        new Promise((resolve, reject) => {
          const started = Date.now();
          const tick = () => {
            const m = re.exec(out);
            if (m) return resolve(m[0]);
            if (child.exitCode !== null) return reject(new Error(`process exited (${child.exitCode}) before ${re}: ${out.slice(-2000)}`));
            if (Date.now() - started > ms) return reject(new Error(`timed out waiting for ${re}: ${out.slice(-2000)}`));
            setTimeout(tick, 20);
          };
          tick();
        }),
    };
  }

  async kill(p: Proc, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (p.child.exitCode !== null || p.child.signalCode !== null) return;
    const exited = new Promise((r) => p.child.once('exit', r));
    p.child.kill(signal);
    await exited;
  }

  private stopSync(): void {
    for (const c of this.procs) c.kill('SIGKILL');
    for (const ns of this.namespaces) {
      try {
        killAllInNamespace(ns);
      } catch {
        /* already gone */
      }
      try {
        sh('ip', ['netns', 'del', ns]);
      } catch {
        /* already gone */
      }
    }
    this.namespaces.length = 0;
  }

  async stop(): Promise<void> {
    this.stopSync();
    process.removeListener('exit', this.onExit);
  }
}
