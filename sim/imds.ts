/**
 * The instance metadata service (IMDSv2) of one simulated LB instance, answering from the
 * emulator's state: the instance id, and per attached network interface its MAC, private
 * addresses and subnet block — what the agent reads to find its role and loxi-eni. Served on a
 * Unix socket; a forwarder in the host's namespace makes it reachable there as an HTTP endpoint.
 * Requests without a session token get 401, as IMDSv2 answers.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';

export interface MetadataInterface {
  mac: string;
  privateIps: string[];
  subnetCidr: string;
  /** Public addresses associated with this interface's private ones (IMDS `ipv4-associations`). */
  ipv4Associations?: Record<string, string>;
}

export interface InstanceMetadata {
  instanceId: string;
  availabilityZone: string;
  interfaces: MetadataInterface[];
}

const TOKEN_TTL_HEADER = 'x-aws-ec2-metadata-token-ttl-seconds';

export async function serveImds(socketPath: string, metadata: () => InstanceMetadata | undefined): Promise<Server> {
  const tokens = new Map<string, number>();
  const server = createServer((req, res) => {
    const text = (status: number, body = '') => res.writeHead(status, { 'content-type': 'text/plain' }).end(body);
    if (req.method === 'PUT' && req.url === '/latest/api/token') {
      const ttl = Number(req.headers[TOKEN_TTL_HEADER]);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return text(400);
      const token = randomBytes(24).toString('base64url');
      tokens.set(token, Date.now() + ttl * 1000);
      return text(200, token);
    }
    const token = String(req.headers['x-aws-ec2-metadata-token'] ?? '');
    if (req.method !== 'GET' || !((tokens.get(token) ?? 0) > Date.now())) return text(401);
    const md = metadata();
    if (!md) return text(404);
    const path = (req.url ?? '').replace(/^\/latest\/meta-data\//, '');
    if (path === 'instance-id') return text(200, md.instanceId);
    if (path === 'placement/availability-zone') return text(200, md.availabilityZone);
    if (path === 'network/interfaces/macs/') return text(200, md.interfaces.map((i) => `${i.mac}/`).join('\n'));
    const a = /^network\/interfaces\/macs\/([0-9a-f:]+)\/ipv4-associations\/([\d.]*)$/.exec(path);
    const assoc = a ? md.interfaces.find((i) => i.mac === a[1])?.ipv4Associations : undefined;
    if (a && assoc && !a[2] && Object.keys(assoc).length) return text(200, Object.keys(assoc).join('\n'));
    if (a && assoc && a[2] && assoc[a[2]]) return text(200, assoc[a[2]]);
    const m = /^network\/interfaces\/macs\/([0-9a-f:]+)\/(local-ipv4s|subnet-ipv4-cidr-block)$/.exec(path);
    const itf = m ? md.interfaces.find((i) => i.mac === m[1]) : undefined;
    if (m && itf) return text(200, m[2] === 'local-ipv4s' ? itf.privateIps.join('\n') : itf.subnetCidr);
    return text(404);
  });
  await new Promise<void>((r) => server.listen(socketPath, r));
  return server;
}
