/** IPv4 address and CIDR arithmetic on unsigned 32-bit integers. */

export interface Cidr {
  network: number;
  prefix: number;
}

export function ipToInt(ip: string): number | undefined {
  const parts = ip.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parses a.b.c.d/n with zero host bits; undefined otherwise. */
export function parseCidr(cidr: string): Cidr | undefined {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(cidr);
  if (!m) return undefined;
  const network = ipToInt(m[1]!);
  const prefix = Number(m[2]);
  if (network === undefined || prefix > 32) return undefined;
  if (((network & mask(prefix)) >>> 0) !== network) return undefined;
  return { network, prefix };
}

function mustParse(cidr: string): Cidr {
  const c = parseCidr(cidr);
  if (!c) throw new Error(`not a CIDR block: ${cidr}`);
  return c;
}

export function cidrSize(cidr: string): number {
  return 2 ** (32 - mustParse(cidr).prefix);
}

export function cidrContains(cidr: string, ipOrCidr: string): boolean {
  const c = mustParse(cidr);
  const inner = ipOrCidr.includes('/') ? mustParse(ipOrCidr) : { network: ipToInt(ipOrCidr), prefix: 32 };
  if (inner.network === undefined || inner.prefix < c.prefix) return false;
  return ((inner.network & mask(c.prefix)) >>> 0) === c.network;
}

export function cidrsOverlap(a: string, b: string): boolean {
  return cidrContains(a, b) || cidrContains(b, a);
}

/** The five addresses AWS reserves in a subnet: network, +1 router, +2 DNS, +3 future, broadcast. */
export function reservedAddresses(cidr: string): string[] {
  const c = mustParse(cidr);
  const last = c.network + cidrSize(cidr) - 1;
  return [0, 1, 2, 3].map((i) => intToIp(c.network + i)).concat(intToIp(last));
}
