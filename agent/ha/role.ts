/**
 * The agent's HA role, from where the VIP lives: MASTER exactly when the VIP is on this instance
 * (on AWS: IMDS lists it on one of this instance's interfaces, loxi-eni being attached here;
 * elsewhere: an interface of this host carries it), BACKUP otherwise. The failover function is the
 * only one that moves the VIP; the agent reports what it sees and sets up the VIP's path
 * (./vip-path.ts) on the interface that carries it.
 */
import { HA_ROLE } from '../../lib/contract.ts';
import type { Imds } from './imds.ts';
import { ipLinks, localVipCarrier, type NotCarrying, type RunIp, vipFromMac, type VipInterface } from './vip-path.ts';

export type Role = typeof HA_ROLE.master | typeof HA_ROLE.backup;

/** One look at where the VIP is: the role, and the local interface carrying it when it is visible yet. */
export interface Observation {
  role: Role;
  iface: VipInterface | undefined;
}

/** On AWS: IMDS decides the role; the interface is the one with the MAC IMDS names (absent while the hot-plug settles). */
export function observeOnAws(imds: Imds, vip: string, run?: RunIp): () => Promise<Observation> {
  return async () => {
    const at = await imds.vipInterface(vip);
    if (!at) return { role: HA_ROLE.backup, iface: undefined };
    const iface = at.subnetCidr ? vipFromMac(vip, at.mac, at.subnetCidr, await ipLinks(run)) : undefined;
    return { role: HA_ROLE.master, iface };
  };
}

/**
 * On AWS with the route strategy: MASTER exactly when a public address (the EIP) is associated with
 * this instance's ingress IP. There is no interface to set up: the VIP's routes point at the primary.
 */
export function observeIngressOnAws(imds: Imds, ingressIp: string): () => Promise<Observation> {
  return async () => {
    const owner = [...(await imds.publicAssociations()).values()].includes(ingressIp);
    return { role: owner ? HA_ROLE.master : HA_ROLE.backup, iface: undefined };
  };
}

/**
 * Away from AWS: the interface carrying the VIP decides both (./vip-path.ts `localVipCarrier`: up,
 * not loopback, /1–/30). An address of the VIP that does not count is reported once per interface
 * and reason (`onNotCarrying`), so an operator who sees BACKUP on a host with the VIP knows why.
 */
export function observeLocally(vip: string, run?: RunIp, onNotCarrying?: (n: NotCarrying) => void): () => Promise<Observation> {
  let told = new Set<string>();
  return async () => {
    const { iface, notCarrying } = localVipCarrier(vip, await ipLinks(run));
    const now = new Set<string>();
    for (const n of notCarrying) {
      const k = `${n.ifname} ${n.why}`;
      if (!told.has(k)) onNotCarrying?.(n);
      now.add(k);
    }
    told = now;
    return { role: iface ? HA_ROLE.master : HA_ROLE.backup, iface };
  };
}

/** Polls where the VIP is; `current` is undefined until the first answer. */
export class RoleWatcher {
  private readonly observe: () => Promise<Observation>;
  private readonly intervalMs: number;
  private readonly onChange: (role: Role, previous: Role | undefined) => void;
  private readonly onError: (e: Error) => void;
  private failing = false;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  current: Role | undefined;
  /** Told of every observation (after onChange on a change): the VIP's path follows it. */
  onObservation: ((o: Observation) => Promise<void> | void) | undefined;

  constructor(o: { observe: () => Promise<Observation>; intervalMs: number; onChange: (role: Role, previous: Role | undefined) => void; onError: (e: Error) => void }) {
    this.observe = o.observe;
    this.onError = o.onError;
    this.intervalMs = o.intervalMs;
    this.onChange = o.onChange;
  }

  start(): void {
    if (this.timer) return;
    void this.check();
    this.timer = setInterval(() => void this.check(), this.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One look now; an error keeps the last known role, is reported once per streak, and is retried on the next tick. */
  async check(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const o = await this.observe();
      this.failing = false;
      if (o.role !== this.current) {
        const previous = this.current;
        this.current = o.role;
        this.onChange(o.role, previous);
      }
      await this.onObservation?.(o);
    } catch (e) {
      if (!this.failing) this.onError(e as Error);
      this.failing = true;
    } finally {
      this.busy = false;
    }
  }
}
