/**
 * What the kernel table should hold, kept up to date one service at a time: every element with
 * the services that put it there (shared elements are counted, owned ones belong to one service),
 * a revision hash maintained as elements come and go, and a journal of what a batch of changes
 * touched, from which the diff is built. A change costs what the service holds, not what the
 * table holds.
 */
import { fnv1a } from './slots.ts';
import type { Contribution, Group, IdleTimeout, MapName, Model, SetName } from './render.ts';

type Kind = 'set' | 'map' | 'group' | 'slot' | 'idle';
const SEP = '\u0001';

interface Entry {
  value: string;
  /** Services holding it (shared kinds); owned kinds hold exactly one. */
  count: number;
  owner: string;
}

/** Elements that identify one service: a second service wanting one is a conflict, not a share. */
const OWNED_SETS: ReadonlySet<SetName> = new Set(['service_marks']);

export class ConflictError extends Error {}

/** One element of a contribution, as the ledger keys it. */
interface Item {
  key: string;
  value: string;
  owned: boolean;
}

function items(c: Contribution): Item[] {
  const out: Item[] = [];
  for (const [name, xs] of Object.entries(c.sets) as [SetName, string[]][]) for (const x of xs) out.push({ key: ['set', name, x].join(SEP), value: '', owned: OWNED_SETS.has(name) });
  for (const [name, xs] of Object.entries(c.maps) as [MapName, [string, string][]][]) for (const [k, v] of xs) out.push({ key: ['map', name, k].join(SEP), value: v, owned: true });
  if (c.group) {
    out.push({ key: ['group', '', c.group.name].join(SEP), value: JSON.stringify(c.group.group), owned: false });
    for (const [k, v] of c.slots) out.push({ key: ['slot', c.group.name, k].join(SEP), value: v, owned: true });
  }
  if (c.idle) out.push({ key: ['idle', '', c.idle.name].join(SEP), value: JSON.stringify(c.idle.idle), owned: false });
  return out;
}

/** Two independent 32-bit lanes: a 64-bit order-independent sum over the present elements. */
const lanes = (key: string, value: string): [number, number] => {
  const text = `${key}${SEP}${value}`;
  return [fnv1a(text), fnv1a(text, 0x01000193 ^ 0x5bd1e995)];
};

export class Ledger {
  private readonly entries = new Map<string, Entry>();
  private readonly held = new Map<string, Item[]>();
  /** Before-values of what the current batch touched (undefined: absent before). */
  private journal = new Map<string, string | undefined>();
  private h1 = 0;
  private h2 = 0;
  private readonly flowtableDevices: string[];
  private readonly groupRouting: boolean;

  constructor(base: string, flowtableDevices: string[], groupRouting = false) {
    this.flowtableDevices = flowtableDevices;
    this.groupRouting = groupRouting;
    [this.h1, this.h2] = lanes('base', base);
  }

  get hash(): string {
    return `${(this.h1 >>> 0).toString(16).padStart(8, '0')}${(this.h2 >>> 0).toString(16).padStart(8, '0')}`;
  }

  /** Sets what service `owner` holds (undefined: nothing). Throws ConflictError, changing nothing, when it wants another service's element. */
  put(owner: string, c: Contribution | undefined): void {
    const next = c ? items(c) : [];
    for (const it of next) {
      const e = this.entries.get(it.key);
      if (it.owned && e && e.owner !== owner) throw new ConflictError(conflictMessage(it.key, e.owner));
      if (!it.owned && e && e.value !== it.value) throw new ConflictError(`${it.key.split(SEP).join(' ')} is already defined differently`);
    }
    for (const it of this.held.get(owner) ?? []) this.release(it);
    for (const it of next) this.hold(owner, it);
    if (next.length) this.held.set(owner, next);
    else this.held.delete(owner);
  }

  private touch(key: string): void {
    if (!this.journal.has(key)) this.journal.set(key, this.entries.get(key)?.value);
  }

  private hold(owner: string, it: Item): void {
    const e = this.entries.get(it.key);
    if (e) {
      e.count++;
      return;
    }
    this.touch(it.key);
    this.entries.set(it.key, { value: it.value, count: 1, owner });
    this.mix(it.key, it.value, 1);
  }

  private release(it: Item): void {
    const e = this.entries.get(it.key)!;
    if (--e.count > 0) return;
    this.touch(it.key);
    this.entries.delete(it.key);
    this.mix(it.key, e.value, -1);
  }

  private mix(key: string, value: string, sign: 1 | -1): void {
    const [a, b] = lanes(key, value);
    this.h1 = (this.h1 + sign * a) >>> 0;
    this.h2 = (this.h2 + sign * b) >>> 0;
  }

  /** The whole desired table. */
  model(): Model {
    return this.view(this.entries.keys(), (k) => this.entries.get(k)?.value);
  }

  /** Starts a batch: from here, `delta()` describes what changed. */
  begin(): void {
    this.journal = new Map();
  }

  /** What the batch changed, as two partial models (before, after) over the touched elements only. */
  delta(): { prev: Model; next: Model; changed: boolean } {
    const keys = new Set(this.journal.keys());
    // A slot element belongs to its group's map: the diff needs to know whether the group exists on each side.
    for (const k of this.journal.keys()) {
      const [kind, group] = k.split(SEP) as [Kind, string];
      if (kind === 'slot') keys.add(['group', '', group].join(SEP));
    }
    const beforeValue = (k: string) => (this.journal.has(k) ? this.journal.get(k) : this.entries.get(k)?.value);
    const prev = this.view(keys, beforeValue);
    const next = this.view(keys, (k) => this.entries.get(k)?.value);
    prev.hash = '';
    const changed = [...this.journal].some(([k, v]) => this.entries.get(k)?.value !== v);
    return { prev, next, changed };
  }

  private view(keys: Iterable<string>, value: (k: string) => string | undefined): Model {
    const m: Model = {
      sets: { vips: new Set(), service_marks: new Set(), endpoints: new Set(), ep_stats: new Set(), restricted: new Set(), allowed: new Set() },
      maps: { marks: new Map(), services: new Map(), snat_to: new Map(), timeouts: new Map(), route_marks: new Map() },
      groups: new Map(),
      slots: new Map(),
      idle: new Map(),
      flowtableDevices: this.flowtableDevices,
      groupRouting: this.groupRouting,
      hash: this.hash,
    };
    const slotEntries: [string, string, string][] = [];
    for (const k of keys) {
      const v = value(k);
      if (v === undefined) continue;
      const [kind, name, key] = k.split(SEP) as [Kind, string, string];
      if (kind === 'set') m.sets[name as SetName].add(key);
      else if (kind === 'map') m.maps[name as MapName].set(key, v);
      else if (kind === 'group') m.groups.set(key, JSON.parse(v) as Group);
      else if (kind === 'idle') m.idle.set(key, JSON.parse(v) as IdleTimeout);
      else slotEntries.push([name, key, v]);
    }
    for (const g of m.groups.keys()) m.slots.set(g, new Map());
    for (const [g, k, v] of slotEntries) {
      if (!m.slots.has(g)) m.slots.set(g, new Map());
      m.slots.get(g)!.set(k, v);
    }
    return m;
  }
}

function conflictMessage(key: string, owner: string): string {
  const [kind, name, element] = key.split(SEP);
  const [ip, port, proto] = owner.split('|');
  if (kind === 'set' && name === 'service_marks') return `its service id collides with the service on ${ip}:${port}/${proto}: change its port or address`;
  return `${element} (${name}) is already used by the service on ${ip}:${port}/${proto}`;
}
