import { describe, expect, it } from 'vitest';
import { parseConntrackLine } from '../../agent/conntrack.ts';

describe('conntrack lines', () => {
  it('reads a listing line with both tuples, state, timeout, status, mark and counters', () => {
    const e = parseConntrackLine('ipv4     2 tcp      6 431999 ESTABLISHED src=100.64.1.100 dst=100.64.248.254 sport=40000 dport=80 packets=5 bytes=300 src=100.64.2.101 dst=100.64.248.254 sport=8080 dport=40000 packets=4 bytes=250 [ASSURED] mark=2147488308 use=1');
    expect(e).toEqual({
      protocol: 'tcp', state: 'ESTABLISHED', src: '100.64.1.100', dst: '100.64.248.254', sport: 40000, dport: 80,
      replySrc: '100.64.2.101', replyDst: '100.64.248.254', replySport: 8080, replyDport: 40000,
      mark: 2147488308, timeout: 431999, seenReply: true, assured: true, packets: 5, bytes: 300,
    });
  });

  it('reads a flow not yet answered, a UDP flow, and a line without timeout', () => {
    expect(parseConntrackLine('ipv4     2 tcp      6 120 SYN_SENT src=100.64.1.100 dst=100.64.248.254 sport=40001 dport=80 [UNREPLIED] src=100.64.2.102 dst=100.64.248.254 sport=8080 dport=40001 mark=2147488308')).toMatchObject({ state: 'SYN_SENT', timeout: 120, seenReply: false, assured: false, replySrc: '100.64.2.102' });
    expect(parseConntrackLine('ipv4     2 udp      17 120 src=100.64.1.100 dst=100.64.248.254 sport=5000 dport=53 src=100.64.2.101 dst=100.64.248.254 sport=5353 dport=5000 [ASSURED] mark=2147488309')).toMatchObject({ protocol: 'udp', state: 'ACTIVE', timeout: 120, assured: true, replySport: 5353 });
    const untimed = parseConntrackLine('ipv4     2 tcp      6 src=100.64.1.100 dst=100.64.248.254 sport=40001 dport=80 src=100.64.2.102 dst=100.64.248.254 sport=8080 dport=40001 [ASSURED] mark=2147488308');
    expect(untimed).toMatchObject({ state: 'ACTIVE', mark: 2147488308 });
    expect(untimed!.timeout).toBeUndefined();
  });

  it('ignores what is not an IPv4 entry', () => {
    for (const l of ['', 'conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.', 'ipv6 10 tcp 6 10 src=::1 dst=::1', 'ipv4 2 tcp 6 10 ESTABLISHED']) expect(parseConntrackLine(l)).toBeUndefined();
  });
});
