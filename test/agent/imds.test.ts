import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Imds, ImdsError } from '../../agent/ha/imds.ts';

/** A metadata service that behaves like IMDSv2: reads need a token it issued; tokens can be revoked. */
async function fakeImds(instanceId = 'i-0123456789abcdef0') {
  const tokens = new Set<string>();
  const seen = { puts: 0, unauthorized: 0 };
  let n = 0;
  const server: Server = createServer((req, res) => {
    if (req.method === 'PUT' && req.url === '/latest/api/token') {
      if (!req.headers['x-aws-ec2-metadata-token-ttl-seconds']) return res.writeHead(400).end();
      seen.puts++;
      const t = `token-${++n}`;
      tokens.add(t);
      return res.writeHead(200).end(t);
    }
    if (!tokens.has(String(req.headers['x-aws-ec2-metadata-token']))) {
      seen.unauthorized++;
      return res.writeHead(401).end();
    }
    if (req.url === '/latest/meta-data/instance-id') return res.writeHead(200).end(instanceId);
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, tokens, seen, close: () => new Promise((r) => server.close(r)) };
}

let close: (() => Promise<unknown>) | undefined;
afterEach(async () => {
  await close?.();
  close = undefined;
});

describe('IMDSv2 client', () => {
  it('reads the instance id with a session token, reusing the token', async () => {
    const f = await fakeImds();
    close = f.close;
    const imds = new Imds(f.url);
    expect(await imds.instanceId()).toBe('i-0123456789abcdef0');
    expect(await imds.instanceId()).toBe('i-0123456789abcdef0');
    expect(f.seen.puts).toBe(1);
  });

  it('fetches a new token once when the service no longer accepts the old one', async () => {
    const f = await fakeImds();
    close = f.close;
    const imds = new Imds(f.url);
    await imds.instanceId();
    f.tokens.clear();
    expect(await imds.instanceId()).toBe('i-0123456789abcdef0');
    expect(f.seen).toEqual({ puts: 2, unauthorized: 1 });
  });

  it('refuses an answer that is not an instance id, and a path that does not exist', async () => {
    const f = await fakeImds('<html>captive portal</html>');
    close = f.close;
    const imds = new Imds(f.url);
    await expect(imds.instanceId()).rejects.toBeInstanceOf(ImdsError);
    await expect(imds.get('/latest/meta-data/nothing')).rejects.toThrow(/HTTP 404/);
  });

  it('fails clearly when no metadata service answers', async () => {
    const f = await fakeImds();
    await f.close();
    await expect(new Imds(f.url).instanceId()).rejects.toThrow();
  });
});
