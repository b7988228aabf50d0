/** The services the benchmarks load into the agent. */
import type { Service } from '../../agent/services/model.ts';
import { BACK, VIP } from '../../sim/netns.ts';

/** One full-NAT TCP service on the VIP, weight 1 per endpoint, TCP probes when `monitor`. */
export function benchService(i: number, endpoints: { ip: string; port: number }[], port: number, monitor: boolean): Service {
  return {
    name: `bench_${i}`,
    externalIP: '100.100.100.100',
    privateIP: VIP,
    port,
    protocol: 'tcp',
    sel: 0,
    mode: 2,
    monitor,
    probe: { type: monitor ? 'tcp' : 'none', port: 0, req: '', resp: '', retries: 2, timeoutSeconds: 1 },
    inactiveTimeOut: 0,
    block: 0,
    managed: false,
    bgp: false,
    endpoints: endpoints.map((e) => ({ ...e, weight: 1 })),
    allowedSources: [],
    secondaryIPs: [],
  };
}

/** 1,000 services × 8 endpoints, no probes: the apply-time and memory workload. */
export function thousandByEight(): Service[] {
  return Array.from({ length: 1000 }, (_, i) =>
    benchService(i, Array.from({ length: 8 }, (_, k) => ({ ip: `${BACK}.${((i * 8 + k) % 250) + 1}`, port: 30000 + (i % 2000) })), 10000 + i, false),
  );
}

/** The API change made on top of the 1,000 services (POST, then DELETE of the same service). */
export const ONE_MORE = {
  body: {
    serviceArguments: { externalIP: '100.100.100.100', privateIP: VIP, port: 9999, protocol: 'tcp', mode: 2, name: 'one_more' },
    endpoints: [{ endpointIP: `${BACK}.101`, targetPort: 8080, weight: 1 }],
  },
  path: '/config/loadbalancer/externalipaddress/100.100.100.100/port/9999/protocol/tcp',
};
