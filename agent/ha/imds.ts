/**
 * Instance metadata, IMDSv2 only (the launch templates require it): a session token from
 * `PUT /latest/api/token`, then reads with the token header. The token is reused until shortly
 * before it expires, and fetched again once if a read answers 401 (expired early).
 */
import { request } from 'node:http';

const TOKEN_TTL_SECONDS = 21_600;
const TIMEOUT_MS = 2_000;

interface Answer {
  status: number;
  body: string;
}

/** One request with node:http (not fetch: the agent keeps undici, and its memory, out of the process). */
function call(url: string, method: 'GET' | 'PUT', headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, timeout: TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
        if (body.length > 65_536) req.destroy(new ImdsError('IMDS answer too large'));
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new ImdsError(`IMDS did not answer within ${TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}

export class ImdsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImdsError';
  }
}

const MACS = '/latest/meta-data/network/interfaces/macs/';

export class Imds {
  private readonly base: string;
  private token: { value: string; until: number } | undefined;

  /** `base`: the metadata endpoint, overridden only by tests and the local simulation. */
  constructor(base = 'http://169.254.169.254') {
    this.base = base.replace(/\/$/, '');
  }

  async instanceId(): Promise<string> {
    const id = (await this.get('/latest/meta-data/instance-id')).trim();
    if (!/^i-[0-9a-f]{8,17}$/.test(id)) throw new ImdsError(`IMDS answered an instance id that is not one: ${JSON.stringify(id.slice(0, 40))}`);
    return id;
  }

  /**
   * The interface IMDS lists the VIP on (loxi-eni attached here), by MAC, with its subnet's CIDR
   * (undefined when IMDS does not give it); undefined when no interface of this instance has the VIP.
   */
  async vipInterface(vip: string): Promise<{ mac: string; subnetCidr: string | undefined } | undefined> {
    for (const mac of await this.macs()) {
      const ips = (await this.get(`${MACS}${mac}/local-ipv4s`)).split('\n').map((x) => x.trim());
      if (!ips.includes(vip)) continue;
      const cidr = await this.get(`${MACS}${mac}/subnet-ipv4-cidr-block`).catch(() => undefined);
      return { mac, subnetCidr: cidr?.trim() || undefined };
    }
    return undefined;
  }

  /**
   * The public addresses associated with this instance's interfaces and the private address each
   * maps to (IMDS `ipv4-associations`): where the EIP points, on this instance.
   */
  async publicAssociations(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const mac of await this.macs()) {
      // An interface without public associations answers 404.
      const publics = await this.get(`${MACS}${mac}/ipv4-associations/`).catch((e: Error) => {
        if (/HTTP 404/.test(e.message)) return '';
        throw e;
      });
      for (const pub of publics.split('\n').map((l) => l.trim().replace(/\/$/, '')).filter((l) => /^\d+\.\d+\.\d+\.\d+$/.test(l))) {
        out.set(pub, (await this.get(`${MACS}${mac}/ipv4-associations/${pub}`)).trim());
      }
    }
    return out;
  }

  /** The MACs of this instance's interfaces. */
  private async macs(): Promise<string[]> {
    return (await this.get(MACS))
      .split('\n')
      .map((l) => l.trim().replace(/\/$/, ''))
      .filter((m) => /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(m));
  }

  /**
   * One path's answer. Reads of a path already under way share its answer: each VIP group's role
   * watcher looks at the same interfaces at the same tick, and one look serves them all.
   */
  get(path: string): Promise<string> {
    const running = this.inflight.get(path);
    if (running) return running;
    const answer = this.fetch(path).finally(() => this.inflight.delete(path));
    this.inflight.set(path, answer);
    return answer;
  }

  private readonly inflight = new Map<string, Promise<string>>();

  private async fetch(path: string): Promise<string> {
    let r = await this.read(path, await this.session(false));
    if (r.status === 401) r = await this.read(path, await this.session(true));
    if (r.status !== 200) throw new ImdsError(`IMDS GET ${path}: HTTP ${r.status}`);
    return r.body;
  }

  private read(path: string, token: string): Promise<Answer> {
    return call(`${this.base}${path}`, 'GET', { 'x-aws-ec2-metadata-token': token });
  }

  private async session(renew: boolean): Promise<string> {
    if (!renew && this.token && Date.now() < this.token.until) return this.token.value;
    const r = await call(`${this.base}/latest/api/token`, 'PUT', { 'x-aws-ec2-metadata-token-ttl-seconds': String(TOKEN_TTL_SECONDS) });
    if (r.status !== 200) throw new ImdsError(`IMDS token: HTTP ${r.status}`);
    const value = r.body.trim();
    if (!value) throw new ImdsError('IMDS token: empty answer');
    this.token = { value, until: Date.now() + (TOKEN_TTL_SECONDS - 60) * 1000 };
    return value;
  }
}
