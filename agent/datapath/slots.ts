/**
 * Pure: how endpoints fill the selection slots the kernel indexes.
 *
 * - weighted round-robin: each endpoint gets weight/gcd slots (capped), the kernel's numgen walks them;
 * - consistent hash (Maglev): a fixed-size table filled from per-endpoint permutations derived only
 *   from the endpoint's address, so two instances with the same endpoint set build the same table,
 *   and removing one endpoint only moves the slots it held.
 */
import { type Endpoint, endpointKey } from '../services/model.ts';

/** Size of the consistent-hash table: prime, ≥ 25× the endpoints a service usually has. */
export const MAGLEV_SLOTS = 251;
/** Upper bound on weighted round-robin slots per service. */
export const MAX_RR_SLOTS = 64;

/** Code-unit order: the same on every machine and far cheaper than localeCompare. */
export const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** FNV-1a 32-bit with a salt: stable across processes and machines. */
export function fnv1a(text: string, salt = 0x811c9dc5): number {
  let h = salt >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Endpoints in a canonical order (independent of the order the API received them in). */
export function canonical(endpoints: Endpoint[]): Endpoint[] {
  return [...endpoints].sort((a, b) => cmp(endpointKey(a), endpointKey(b)));
}

export function weightedSlots(endpoints: Endpoint[]): Endpoint[] {
  const eps = canonical(endpoints).filter((e) => e.weight > 0);
  if (!eps.length) return [];
  const g = eps.map((e) => e.weight).reduce(gcd);
  let weights = eps.map((e) => e.weight / g);
  const total = weights.reduce((a, b) => a + b, 0);
  if (total > MAX_RR_SLOTS) weights = weights.map((w) => Math.max(1, Math.round((w * MAX_RR_SLOTS) / total)));
  // Interleave (smooth weighted round-robin) so consecutive new flows spread across endpoints.
  const slots: Endpoint[] = [];
  const current = weights.map(() => 0);
  const sum = weights.reduce((a, b) => a + b, 0);
  for (let n = 0; n < sum; n++) {
    let best = 0;
    for (let i = 0; i < eps.length; i++) {
      current[i]! += weights[i]!;
      if (current[i]! > current[best]!) best = i;
    }
    current[best]! -= sum;
    slots.push(eps[best]!);
  }
  return slots;
}

/** Only the endpoints of the highest weight (LoxiLB's priority selection), round-robin among them. */
export function prioritySlots(endpoints: Endpoint[]): Endpoint[] {
  const eps = canonical(endpoints).filter((e) => e.weight > 0);
  if (!eps.length) return [];
  const top = Math.max(...eps.map((e) => e.weight));
  return eps.filter((e) => e.weight === top);
}

export function maglevSlots(endpoints: Endpoint[], size = MAGLEV_SLOTS): Endpoint[] {
  const eps = canonical(endpoints).filter((e) => e.weight > 0);
  if (!eps.length) return [];
  const perms = eps.map((e) => {
    const key = endpointKey(e);
    return { offset: fnv1a(key, 0x9747b28c) % size, skip: (fnv1a(key, 0x5bd1e995) % (size - 1)) + 1 };
  });
  const minWeight = Math.min(...eps.map((e) => e.weight));
  const turns = eps.map((e) => Math.max(1, Math.round(e.weight / minWeight)));
  const next = eps.map(() => 0);
  const table: (Endpoint | undefined)[] = new Array(size).fill(undefined);
  let filled = 0;
  while (filled < size) {
    for (let i = 0; i < eps.length && filled < size; i++) {
      for (let t = 0; t < turns[i]! && filled < size; t++) {
        let c = (perms[i]!.offset + next[i]! * perms[i]!.skip) % size;
        while (table[c]) {
          next[i]!++;
          c = (perms[i]!.offset + next[i]! * perms[i]!.skip) % size;
        }
        table[c] = eps[i];
        next[i]!++;
        filled++;
      }
    }
  }
  return table as Endpoint[];
}
