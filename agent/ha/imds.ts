/**
 * Instance metadata, IMDSv2 only (the launch templates require it): a session token from
 * `PUT /latest/api/token`, then reads with the token header. The token is reused until shortly
 * before it expires, and fetched again once if a read answers 401 (expired early).
 */
const TOKEN_TTL_SECONDS = 21_600;
const TIMEOUT_MS = 2_000;

export class ImdsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImdsError';
  }
}

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

  /** Every private IPv4 address on every interface attached to this instance (loxi-eni's VIP included, when attached). */
  async localIpv4s(): Promise<string[]> {
    const base = '/latest/meta-data/network/interfaces/macs/';
    const macs = (await this.get(base))
      .split('\n')
      .map((l) => l.trim().replace(/\/$/, ''))
      .filter((m) => /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(m));
    const lists = await Promise.all(macs.map((mac) => this.get(`${base}${mac}/local-ipv4s`)));
    return lists.flatMap((l) => l.split('\n').map((x) => x.trim()).filter(Boolean));
  }

  async get(path: string): Promise<string> {
    let r = await this.read(path, await this.session(false));
    if (r.status === 401) r = await this.read(path, await this.session(true));
    if (r.status !== 200) throw new ImdsError(`IMDS GET ${path}: HTTP ${r.status}`);
    return r.text();
  }

  private read(path: string, token: string): Promise<Response> {
    return fetch(`${this.base}${path}`, { headers: { 'x-aws-ec2-metadata-token': token }, signal: AbortSignal.timeout(TIMEOUT_MS) });
  }

  private async session(renew: boolean): Promise<string> {
    if (!renew && this.token && Date.now() < this.token.until) return this.token.value;
    const r = await fetch(`${this.base}/latest/api/token`, {
      method: 'PUT',
      headers: { 'x-aws-ec2-metadata-token-ttl-seconds': String(TOKEN_TTL_SECONDS) },
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    if (r.status !== 200) throw new ImdsError(`IMDS token: HTTP ${r.status}`);
    const value = (await r.text()).trim();
    if (!value) throw new ImdsError('IMDS token: empty answer');
    this.token = { value, until: Date.now() + (TOKEN_TTL_SECONDS - 60) * 1000 };
    return value;
  }
}
