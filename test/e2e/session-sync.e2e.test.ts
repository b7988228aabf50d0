/**
 * Every flow survives a failover: two LBs running the shipped agent, three backends, a client
 * behind a router namespace standing in for the VPC. The VIP moves as the ENI move does: the
 * interface carrying it disappears from one LB and a new one appears in the other. Long-lived TCP
 * flows (some opened a moment before the move), UDP flows and a stream of fresh connections run
 * through the VIP while it moves. With session sync, every flow goes on with its backend and no
 * reset; without it, flows are lost (so this test can fail).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentRunner, awsSection, IMDS_PORT, lbEntry } from '../../sim/agents.ts';
import { haOf, lostFlows, moveUnderTraffic, sleep, until, whyLost } from '../../sim/flows.ts';
import { BACK, Lab, VIP } from '../../sim/netns.ts';
import { netnsAvailable } from '../harness/prerequisites.ts';

describe.skipIf(!netnsAvailable)('session sync: flows survive the VIP moving between LBs', () => {
  let lab: Lab;
  let run: AgentRunner;

  const startAgents = async (sync: boolean) => {
    for (const lb of [1, 2]) {
      await run.startAgent(lb, { peers: [{ index: 2 - lb, ip: `${BACK}.${10 + (3 - lb)}` }], sync: sync ? { secretFile: run.syncKeyFile } : {} }, 300);
      for (const protocol of ['tcp', 'udp'] as const) expect((await run.api(lb, 'POST', '/config/loadbalancer', lbEntry({ backends: [1, 2, 3], protocol }))).status).toBe(200);
    }
  };
  const stopAgents = async () => {
    for (const lb of [1, 2]) await lab.kill(run.procs.get(`agent${lb}`)!);
  };
  const ha = (lb: number) => haOf(run, lb);

  beforeAll(async () => {
    lab = new Lab();
    lab.buildVpc({ lbs: 2, backends: 3 });
    run = new AgentRunner(lab);
    await run.startBackends(3);
    lab.plugEni(1);
    await startAgents(true);
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
    run?.cleanup();
  });

  it('follows the interface: the LB holding it is MASTER and routes the flows through it; the peer is in sync', async () => {
    await until('lb1 MASTER, lb2 BACKUP', async () => (await ha(1)).state === 'MASTER' && (await ha(2)).state === 'BACKUP');
    await until('the backup in sync', async () => (await ha(2)).sync === 1);
    expect(await ha(1)).toMatchObject({ syncMode: 'sending', sync: 1 });
    expect(await ha(2)).toMatchObject({ syncMode: 'receiving', syncState: 'in-sync' });
    const rules = lab.exec('lb1', 'ip', ['rule', 'show']);
    expect(rules).toMatch(/fwmark 0x40000000\/0x40000000 lookup 7410/);
    expect(lab.exec('lb1', 'ip', ['route', 'show', 'table', '7410'])).toMatch(/default via 100\.64\.248\.1 dev loxi-eni/);
    expect(lab.exec('lb2', 'ip', ['rule', 'show'])).not.toMatch(/lookup 7410/);
  });

  it('streams a TCP connection as three changes (new, handshake done, end), not every state change', async () => {
    // conntrack -E prints nothing once subscribed: its socket appears among the namespace's
    // netfilter netlink sockets with event groups (/proc/net/netlink: protocol 12, groups ≠ 0).
    const subscribed = () => lab.exec('lb1', 'cat', ['/proc/net/netlink']).split('\n').filter((l) => { const f = l.trim().split(/\s+/); return f[1] === '12' && /^[0-9a-f]{8}$/.test(f[3] ?? '') && f[3] !== '00000000'; }).length;
    const before = subscribed();
    const events = lab.spawn('lb1', 'conntrack', ['-E', '-p', 'tcp', '-d', VIP, '--dport', '80']);
    await until('conntrack -E subscribed', () => subscribed() > before);
    expect(run.client(['tcp', VIP, '80', '1']).results[0]).toMatch(/^be\d/);
    const kindsSoFar = () => events.output().split('\n').map((l) => /^\s*\[(\w+)\]/.exec(l)?.[1]).filter(Boolean);
    await until('the new flow and its handshake seen', () => kindsSoFar().length >= 2);
    await sleep(500); // and nothing more while the connection sits in TIME_WAIT
    await lab.kill(events);
    // The end comes after TIME_WAIT; before it, the creation and the completed handshake only.
    const kinds = events.output().split('\n').map((l) => /^\s*\[(\w+)\]/.exec(l)?.[1]).filter(Boolean);
    expect(kinds).toEqual(['NEW', 'UPDATE']);
  });

  it('keeps every TCP and UDP flow, with its backend and no reset, when the VIP moves; fresh connections resume', async () => {
    const r = await moveUnderTraffic(lab, run, 2);
    const lost = lostFlows(r);
    expect(lost.map((f) => `${f.kind} ${f.id}: ${whyLost(f)}`)).toEqual([]);
    for (const f of r.flows) expect(f.maxGapMs).toBeLessThan(3000);
    expect(r.fresh.ok).toBeGreaterThan(20);
    console.log(JSON.stringify({ flowsKept: r.flows.length - lost.length, flowsTotal: r.flows.length, maxPauseMs: Math.max(...r.flows.map((f) => f.maxGapMs)), freshFailed: r.fresh.failed }));
    // The old owner's path is gone, the new owner's is up; the synced table now streams the other way.
    expect(lab.exec('lb1', 'ip', ['rule', 'show'])).not.toMatch(/lookup 7410/);
    expect(lab.exec('lb2', 'ip', ['rule', 'show'])).toMatch(/lookup 7410/);
    await until('lb1 in sync as the new backup', async () => (await ha(1)).sync === 1 && (await ha(1)).syncMode === 'receiving');
  }, 60_000);

  it('fails back the same way, keeping every flow', async () => {
    const r = await moveUnderTraffic(lab, run, 1);
    expect(lostFlows(r).map((f) => `${f.kind} ${f.id}: ${whyLost(f)}`)).toEqual([]);
  }, 60_000);

  it('a backup without a service the owner serves is not ready, nor in sync; once it gets the service the owner resyncs to it', async () => {
    const owner = (await ha(1)).state === 'MASTER' ? 1 : 2;
    const backup = 3 - owner;
    const only = lbEntry({ backends: [1, 2, 3], port: 81, name: 'on-the-owner-only' });
    expect((await run.api(owner, 'POST', '/config/loadbalancer', only)).status).toBe(200);
    const resyncsBefore = (await ha(backup)).syncResyncs;
    const differs = async (why: RegExp) => {
      const b = await ha(backup);
      return b.ready === 0 && b.sync === 0 && why.test((b.notReady ?? []).join('; '));
    };
    // The owner's frames carry the digest of its services: the backup sees at once that its own differ.
    await until('the backup says the owner serves other services', () => differs(/the owner serves other services than this instance/));
    // A connection through it: the owner streams its flow, which the backup has no service for.
    expect(run.client(['tcp', VIP, '81', '1']).results[0]).toMatch(/^be\d/);
    await until('the backup counts the owner’s flows it refused', () => differs(/synced flows are for services this instance does not hold/));
    // kube-loxilb installs it there too (as it does on an instance that comes back): the owner resends its table.
    expect((await run.api(backup, 'POST', '/config/loadbalancer', only)).status).toBe(200);
    await until('the backup ready and in sync again, after a resync', async () => {
      const b = await ha(backup);
      return b.ready === 1 && b.sync === 1 && b.syncResyncs > resyncsBefore;
    });
    for (const lb of [owner, backup]) expect((await run.api(lb, 'DELETE', '/config/loadbalancer/externalipaddress/100.100.100.100/port/81/protocol/tcp')).status).toBe(200);
  }, 60_000);

  it('without session sync, the same move loses flows (the test can fail)', async () => {
    await stopAgents();
    for (const lb of [1, 2]) lab.exec(`lb${lb}`, 'conntrack', ['-F']);
    await startAgents(false);
    const r = await moveUnderTraffic(lab, run, 2);
    const lost = lostFlows(r);
    expect(lost.length).toBeGreaterThan(0);
    console.log(JSON.stringify({ withoutSync: { flowsKept: r.flows.length - lost.length, flowsTotal: r.flows.length } }));
  }, 90_000);
});

describe.skipIf(!netnsAvailable)('the VIP’s path on AWS: a bare hot-plugged interface, found by the MAC IMDS names', () => {
  const MAC = '0e:5a:00:00:00:42';
  let lab: Lab;
  let run: AgentRunner;

  beforeAll(async () => {
    lab = new Lab();
    lab.buildVpc({ lbs: 1, backends: 1 });
    run = new AgentRunner(lab);
    await run.startImds(1, 'i-0aaaaaaaaaaaaaaa1');
    // CloudWatch is an address nothing answers on: heartbeats fail and retry; the role comes from IMDS.
    await run.startAgent(1, { aws: awsSection('http://127.0.0.1:9') });
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
    run?.cleanup();
  });

  it('brings the interface up, adds the VIP, routes the flows through it; removes exactly that when it leaves', async () => {
    const ha = () => haOf(run, 1);
    await until('BACKUP', async () => (await ha()).state === 'BACKUP');
    lab.plugEni(1, { mac: MAC, configured: false });
    lab.exec('lb1', 'curl', ['-sf', '-X', 'POST', `http://127.0.0.1:${IMDS_PORT}/control/attach?vip=${VIP}&mac=${MAC}&cidr=100.64.248.0/24`]);
    await until('MASTER with its path', async () => (await ha()).state === 'MASTER' && /lookup 7410/.test(lab.exec('lb1', 'ip', ['rule', 'show'])));
    const link = lab.exec('lb1', 'ip', ['-o', 'addr', 'show', 'dev', 'loxi-eni']);
    expect(link).toContain(`inet ${VIP}/24`);
    expect(lab.exec('lb1', 'ip', ['-o', 'link', 'show', 'dev', 'loxi-eni'])).toMatch(/state UP|,UP/);
    expect(lab.exec('lb1', 'ip', ['route', 'show', 'table', '7410'])).toMatch(/default via 100\.64\.248\.1 dev loxi-eni/);
    expect(lab.exec('lb1', 'cat', ['/proc/sys/net/ipv4/conf/loxi-eni/rp_filter']).trim()).toBe('2');
    // A rule deleted by hand is put back.
    lab.exec('lb1', 'ip', ['rule', 'del', 'priority', '7410']);
    await until('the rule back', async () => /lookup 7410/.test(lab.exec('lb1', 'ip', ['rule', 'show'])));
    lab.exec('lb1', 'curl', ['-sf', '-X', 'POST', `http://127.0.0.1:${IMDS_PORT}/control/detach`]);
    lab.unplugEni();
    await until('BACKUP, path gone', async () => (await ha()).state === 'BACKUP' && !/lookup 7410/.test(lab.exec('lb1', 'ip', ['rule', 'show'])));
    expect(lab.exec('lb1', 'ip', ['route', 'show', 'table', '7410'])).toBe('');
  }, 60_000);
});
