// Kubernetes Services, EndpointSlices and the Node as the load balancer's services (src/k8s/serviceTranslate.ts):
// kube-proxy's semantics case by case, the objects the agent cannot use, and the service ids that survive a
// restart. Pure computation: no root, no kernel, no API server.
import test from 'ava';
import {
  K8sEndpoint,
  K8sEndpointSlice,
  K8sNode,
  K8sService,
  KeyedService,
  ServiceIdMap,
  ServiceTranslator,
  TranslateInput,
  translateServices,
} from '../../src/k8s/serviceTranslate';
import { frontendText, hostPort, LbService, tableBackends, validateServices } from '../../src/lb/lbService';
import { resolveAgentOptions } from '../../src/agent/options';
import { UsageError } from '../../src/errors';

const NODE = 'node-a';

function service(name: string, spec: K8sService['spec'] = {}, more: Partial<K8sService> = {}): K8sService {
  return {
    metadata: { name, namespace: 'default', ...(more.metadata ?? {}) },
    spec: {
      type: 'ClusterIP',
      clusterIP: '10.96.0.10',
      ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }],
      ...spec,
    },
    status: more.status,
  };
}

function ep(addr: string, more: Partial<K8sEndpoint> = {}): K8sEndpoint {
  const n = addr.split(/[.:]/).pop();
  return {
    addresses: [addr],
    conditions: { ready: true },
    nodeName: 'node-b',
    targetRef: { kind: 'Pod', namespace: 'default', name: `pod-${n}` },
    ...more,
  };
}

function slice(
  name: string,
  svc: string,
  endpoints: K8sEndpoint[],
  more: Partial<K8sEndpointSlice> = {},
  namespace = 'default',
): K8sEndpointSlice {
  return {
    metadata: { name, namespace, labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    endpoints,
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    ...more,
  };
}

function node(addresses: Array<[string, string]>, zone?: string): K8sNode {
  return {
    metadata: { name: NODE, labels: zone ? { 'topology.kubernetes.io/zone': zone } : {} },
    status: { addresses: addresses.map(([type, address]) => ({ type, address })) },
  };
}

function translate(input: Partial<TranslateInput>) {
  return translateServices({ services: [], slices: [], nodeName: NODE, ...input });
}

/** Frontend text -> the service, for lookups. */
function byFrontend(list: readonly KeyedService[]): Map<string, KeyedService> {
  return new Map(list.map((s) => [frontendText(s.frontend), s]));
}

/** What the table of a frontend holds: backend addr:port, sorted. */
function table(s: KeyedService | undefined): string[] {
  if (!s) return ['(no such frontend)'];
  return tableBackends({ ...s, id: 1 })
    .map((b) => hostPort(b.addr, b.port))
    .sort();
}

function withIds(list: KeyedService[]): LbService[] {
  return new ServiceIdMap().assign(list).services;
}

test('a ClusterIP service with three ready endpoints: one frontend, three active backends named by their pods', (t) => {
  const r = translate({
    services: [service('web')],
    slices: [slice('web-abc', 'web', [ep('10.1.0.1'), ep('10.1.0.2'), ep('10.1.0.3', { nodeName: NODE })])],
  });
  t.deepEqual(r.warnings, []);
  t.is(r.services.length, 1);
  const [s] = r.services;
  t.like(s, {
    key: 'default/web:http cluster-ip 10.96.0.10:80/TCP',
    owner: 'default/web',
    name: 'default/web:http',
    frontend: { addr: '10.96.0.10', port: 80, proto: 'tcp' },
    type: 'ClusterIP',
    algorithm: 'maglev',
    affinityTimeoutS: 0,
    trafficPolicy: 'cluster',
    sourceRanges: [],
    fullNat: false,
  });
  t.deepEqual(s.backends, [
    { addr: '10.1.0.1', port: 8080, state: 'active', weight: 1, local: false, name: 'default/pod-1:8080' },
    { addr: '10.1.0.2', port: 8080, state: 'active', weight: 1, local: false, name: 'default/pod-2:8080' },
    { addr: '10.1.0.3', port: 8080, state: 'active', weight: 1, local: true, name: 'default/pod-3:8080' },
  ]);
  t.notThrows(() => validateServices(withIds(r.services)));
});

test('an endpoint without a targetRef is named by its address; the same names on every node', (t) => {
  const slices = [slice('web-abc', 'web', [{ addresses: ['10.1.0.9'] }, ep('10.1.0.1')])];
  const here = translate({ services: [service('web')], slices });
  const there = translate({ services: [service('web')], slices, nodeName: 'node-b' });
  t.deepEqual(
    here.services[0].backends.map((b) => b.name),
    ['10.1.0.9:8080', 'default/pod-1:8080'],
  );
  t.deepEqual(
    there.services[0].backends.map((b) => b.name),
    here.services[0].backends.map((b) => b.name),
  );
  t.deepEqual(
    there.services[0].backends.map((b) => b.local),
    [false, true],
    'only locality differs',
  );
});

test('multiport and protocols: each port and protocol is a frontend; target ports come from the slice by port name', (t) => {
  const svc = service('multi', {
    ports: [
      { name: 'http', port: 80, protocol: 'TCP', targetPort: 'web' },
      { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 },
      { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 5353 },
    ],
  });
  const s = slice('multi-1', 'multi', [ep('10.1.0.1'), ep('10.1.0.2')], {
    ports: [
      // The service's targetPort 'web' names a container port; the slice has its number under the port's name.
      { name: 'http', port: 9376, protocol: 'TCP' },
      { name: 'dns', port: 5353, protocol: 'UDP' },
      { name: 'dns-tcp', port: 5354, protocol: 'TCP' },
    ],
  });
  const r = translate({ services: [svc], slices: [s] });
  t.deepEqual(r.warnings, []);
  const m = byFrontend(r.services);
  t.deepEqual([...m.keys()].sort(), ['10.96.0.10:53/TCP', '10.96.0.10:53/UDP', '10.96.0.10:80/TCP']);
  t.deepEqual(table(m.get('10.96.0.10:80/TCP')), ['10.1.0.1:9376', '10.1.0.2:9376']);
  t.deepEqual(table(m.get('10.96.0.10:53/UDP')), ['10.1.0.1:5353', '10.1.0.2:5353']);
  t.deepEqual(table(m.get('10.96.0.10:53/TCP')), ['10.1.0.1:5354', '10.1.0.2:5354']);
  t.is(m.get('10.96.0.10:53/UDP')!.name, 'default/multi:dns');
  t.notThrows(() => validateServices(withIds(r.services)));
});

test('an unnamed single port matches the unnamed slice port; a port the slices lack has no backends', (t) => {
  const svc = service('one', { ports: [{ port: 80, targetPort: 8080 }] });
  const r = translate({
    services: [svc, service('other', { clusterIP: '10.96.0.11' })],
    slices: [
      slice('one-1', 'one', [ep('10.1.0.1')], { ports: [{ port: 8080 }] }),
      slice('other-1', 'other', [ep('10.1.0.2')], { ports: [{ name: 'metrics', port: 9090, protocol: 'TCP' }] }),
    ],
  });
  const m = byFrontend(r.services);
  t.deepEqual(table(m.get('10.96.0.10:80/TCP')), ['10.1.0.1:8080']);
  t.is(m.get('10.96.0.10:80/TCP')!.key, 'default/one cluster-ip 10.96.0.10:80/TCP');
  t.deepEqual(m.get('10.96.0.11:80/TCP')!.backends, [], 'no slice port named http');
});

test("slices of one service are merged; an address in two counts once, the ready one preferred; other services' slices are not", (t) => {
  const r = translate({
    services: [service('web')],
    slices: [
      slice('web-a', 'web', [ep('10.1.0.1'), ep('10.1.0.2', { conditions: { ready: false } })]),
      slice('web-b', 'web', [ep('10.1.0.2'), ep('10.1.0.3'), ep('10.1.0.1', { conditions: { ready: false } })]),
      slice('db-a', 'db', [ep('10.2.0.1')]),
      slice('web-x', 'web', [ep('10.3.0.1')], {}, 'other'),
      { ...slice('nolabel', 'web', [ep('10.4.0.1')]), metadata: { name: 'nolabel', namespace: 'default' } },
    ],
  });
  t.deepEqual(r.warnings, []);
  const [s] = r.services;
  t.deepEqual(
    s.backends.map((b) => `${b.addr} ${b.state}`),
    ['10.1.0.1 active', '10.1.0.2 active', '10.1.0.3 active'],
  );
});

test('dual-stack: a frontend per cluster IP, each with the endpoints of its family', (t) => {
  const svc = service('dual', { clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20', 'fd00:96::20'] });
  const r = translate({
    services: [svc],
    slices: [
      slice('dual-v4', 'dual', [ep('10.1.0.1'), ep('10.1.0.2')]),
      slice('dual-v6', 'dual', [ep('fd00:1::1'), ep('FD00:1:0::2')], { addressType: 'IPv6' }),
      slice('dual-fqdn', 'dual', [ep('example.com')], { addressType: 'FQDN' }),
    ],
  });
  t.deepEqual(r.warnings, []);
  const m = byFrontend(r.services);
  t.deepEqual([...m.keys()], ['10.96.0.20:80/TCP', '[fd00:96::20]:80/TCP']);
  t.deepEqual(table(m.get('10.96.0.20:80/TCP')), ['10.1.0.1:8080', '10.1.0.2:8080']);
  t.deepEqual(table(m.get('[fd00:96::20]:80/TCP')), ['[fd00:1::1]:8080', '[fd00:1::2]:8080'], 'canonical spelling');
  t.notThrows(() => validateServices(withIds(r.services)));
});

test('NodePort: a frontend on each node address inside --nodeport-addresses, of the families the service has', (t) => {
  const svc = service('np', {
    type: 'NodePort',
    ports: [{ name: 'http', port: 80, protocol: 'TCP', nodePort: 30080 }],
  });
  const n = node([
    ['InternalIP', '192.168.1.10'],
    ['ExternalIP', '203.0.113.5'],
    ['InternalIP', 'fd00:10::10'],
    ['Hostname', 'node-a'],
    ['InternalIP', 'garbage'],
  ]);
  const slices = [slice('np-1', 'np', [ep('10.1.0.1')])];
  const all = translate({ services: [svc], slices, node: n });
  t.deepEqual(all.warnings, [
    "node-a: node address (InternalIP) 'garbage' is not an IP address; NodePorts are not served on it",
  ]);
  const m = byFrontend(all.services);
  t.deepEqual([...m.keys()], ['10.96.0.10:80/TCP', '192.168.1.10:30080/TCP', '203.0.113.5:30080/TCP']);
  t.like(m.get('192.168.1.10:30080/TCP'), {
    type: 'NodePort',
    key: 'default/np:http node-port 192.168.1.10:30080/TCP',
    trafficPolicy: 'cluster',
    fullNat: true,
  });
  t.false(m.get('10.96.0.10:80/TCP')!.fullNat, 'a ClusterIP keeps the client address');
  t.deepEqual(table(m.get('203.0.113.5:30080/TCP')), ['10.1.0.1:8080']);

  const some = translate({ services: [svc], slices, node: n, nodePortAddresses: ['192.168.0.0/16', 'fd00::/8'] });
  t.deepEqual(
    some.services.map((s) => frontendText(s.frontend)),
    ['10.96.0.10:80/TCP', '192.168.1.10:30080/TCP'],
  );
  const noNode = translate({ services: [svc], slices });
  t.deepEqual(
    noNode.services.map((s) => frontendText(s.frontend)),
    ['10.96.0.10:80/TCP'],
    'without the Node object, no NodePort',
  );
  const dual = translate({
    services: [service('np', { ...svc.spec, clusterIPs: ['10.96.0.10', 'fd00:96::10'] })],
    slices,
    node: n,
  });
  t.true(byFrontend(dual.services).has('[fd00:10::10]:30080/TCP'), 'a dual-stack service has its IPv6 NodePort');
});

test('externalIPs and LoadBalancer ingress IPs are frontends on the service port; source ranges apply to LoadBalancer IPs', (t) => {
  const svc = service(
    'lb',
    {
      type: 'LoadBalancer',
      ports: [{ name: 'http', port: 80, protocol: 'TCP', nodePort: 30080 }],
      externalIPs: ['203.0.113.250', 'fd00:ee::1'],
      loadBalancerSourceRanges: ['198.51.100.0/24', '192.0.2.7/16'],
    },
    {
      status: {
        loadBalancer: {
          ingress: [
            { ip: '198.18.0.1' },
            { hostname: 'lb.example.com' },
            { ip: '198.18.0.2', ipMode: 'Proxy' },
            { ip: '198.18.0.3', ipMode: 'VIP' },
          ],
        },
      },
    },
  );
  const r = translate({ services: [svc], slices: [slice('lb-1', 'lb', [ep('10.1.0.1')])] });
  t.deepEqual(r.warnings, ['default/lb: fd00:ee::1 is IPv6 but the service has no IPv6 cluster IP; left out']);
  const m = byFrontend(r.services);
  t.deepEqual([...m.keys()], ['10.96.0.10:80/TCP', '203.0.113.250:80/TCP', '198.18.0.1:80/TCP', '198.18.0.3:80/TCP']);
  t.like(m.get('203.0.113.250:80/TCP'), { type: 'ExternalIP', sourceRanges: [], fullNat: true });
  t.like(m.get('198.18.0.1:80/TCP'), {
    type: 'LoadBalancer',
    sourceRanges: ['198.51.100.0/24', '192.0.0.0/16'],
    fullNat: true,
  });
  t.deepEqual(m.get('10.96.0.10:80/TCP')!.sourceRanges, []);
  t.notThrows(() => validateServices(withIds(r.services)));

  // Ranges only of the other family: the load balancer IP is left out rather than opened to everyone.
  const v6only = translate({
    services: [service('lb', { ...svc.spec, externalIPs: [], loadBalancerSourceRanges: ['fd00::/8'] }, svc)],
  });
  t.deepEqual(
    v6only.services.map((s) => frontendText(s.frontend)),
    ['10.96.0.10:80/TCP'],
  );
  t.is(v6only.warnings.filter((w) => w.includes('has no IPv4 range')).length, 2);
  // The ingress of a Service that is no longer of type LoadBalancer is not served.
  const clusterIpNow = translate({ services: [service('lb', { type: 'ClusterIP' }, svc)] });
  t.is(clusterIpNow.services.length, 1);
});

test('sessionAffinity ClientIP: the timeout given, 10800 s by default; none otherwise', (t) => {
  const r = translate({
    services: [
      service('a', { sessionAffinity: 'ClientIP' }),
      service('b', {
        clusterIP: '10.96.0.11',
        sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } },
      }),
      service('c', { clusterIP: '10.96.0.12', sessionAffinity: 'None' }),
    ],
  });
  t.deepEqual(
    r.services.map((s) => `${s.owner} ${s.affinityTimeoutS}`),
    ['default/a 10800', 'default/b 60', 'default/c 0'],
  );
});

test('internalTrafficPolicy Local: the ClusterIP frontend takes local backends only, external ones all', (t) => {
  const svc = service('itp', {
    type: 'NodePort',
    internalTrafficPolicy: 'Local',
    ports: [{ name: 'http', port: 80, protocol: 'TCP', nodePort: 30080 }],
  });
  const r = translate({
    services: [svc],
    slices: [slice('itp-1', 'itp', [ep('10.1.0.1', { nodeName: NODE }), ep('10.1.0.2'), ep('10.1.0.3')])],
    node: node([['InternalIP', '192.168.1.10']]),
  });
  const m = byFrontend(r.services);
  t.is(m.get('10.96.0.10:80/TCP')!.trafficPolicy, 'local');
  t.deepEqual(table(m.get('10.96.0.10:80/TCP')), ['10.1.0.1:8080']);
  t.is(m.get('192.168.1.10:30080/TCP')!.trafficPolicy, 'cluster');
  t.deepEqual(table(m.get('192.168.1.10:30080/TCP')), ['10.1.0.1:8080', '10.1.0.2:8080', '10.1.0.3:8080']);
});

test('externalTrafficPolicy Local: NodePort, external and load balancer IPs take local backends, the ClusterIP all', (t) => {
  const svc = service(
    'etp',
    {
      type: 'LoadBalancer',
      externalTrafficPolicy: 'Local',
      externalIPs: ['203.0.113.250'],
      ports: [{ name: 'http', port: 80, protocol: 'TCP', nodePort: 30080 }],
    },
    { status: { loadBalancer: { ingress: [{ ip: '198.18.0.1' }] } } },
  );
  const r = translate({
    services: [svc],
    // The deprecated topology names the node on older slices.
    slices: [
      slice('etp-1', 'etp', [
        ep('10.1.0.1', { nodeName: undefined, deprecatedTopology: { 'kubernetes.io/hostname': NODE } }),
        ep('10.1.0.2'),
      ]),
    ],
    node: node([['InternalIP', '192.168.1.10']]),
  });
  const m = byFrontend(r.services);
  for (const fe of ['192.168.1.10:30080/TCP', '203.0.113.250:80/TCP', '198.18.0.1:80/TCP']) {
    t.is(m.get(fe)!.trafficPolicy, 'local', fe);
    t.false(m.get(fe)!.fullNat, `${fe}: the client address is kept`);
    t.deepEqual(table(m.get(fe)), ['10.1.0.1:8080'], fe);
  }
  t.is(m.get('10.96.0.10:80/TCP')!.trafficPolicy, 'cluster');
  t.deepEqual(table(m.get('10.96.0.10:80/TCP')), ['10.1.0.1:8080', '10.1.0.2:8080']);
});

test('endpoint conditions: ready is active, serving and terminating is terminating, the rest is left out', (t) => {
  const r = translate({
    services: [service('web')],
    slices: [
      slice('web-1', 'web', [
        ep('10.1.0.1'),
        ep('10.1.0.2', { conditions: {} }),
        ep('10.1.0.3', { conditions: { ready: false, serving: true, terminating: true } }),
        ep('10.1.0.4', { conditions: { ready: false, serving: false, terminating: true } }),
        ep('10.1.0.5', { conditions: { ready: false } }),
        ep('10.1.0.6', { conditions: { ready: false, serving: true, terminating: false } }),
        ep('10.1.0.7', { conditions: null }),
      ]),
    ],
  });
  t.deepEqual(
    r.services[0].backends.map((b) => `${b.addr} ${b.state}`),
    ['10.1.0.1 active', '10.1.0.2 active', '10.1.0.3 terminating', '10.1.0.7 active'],
  );
  t.deepEqual(table(r.services[0]), ['10.1.0.1:8080', '10.1.0.2:8080', '10.1.0.7:8080'], 'terminating only drains');
});

test('fallback to terminating endpoints when none is ready, separately for cluster and local traffic policy', (t) => {
  const terminating = { ready: false, serving: true, terminating: true };
  const svc = (name: string, ip: string, spec: K8sService['spec']) =>
    service(name, {
      clusterIP: ip,
      type: 'NodePort',
      ...spec,
      ports: [{ name: 'http', port: 80, nodePort: 30000 + Number(ip.split('.')[3]) }],
    });
  const n = node([['InternalIP', '192.168.1.10']]);
  const r = translate({
    node: n,
    services: [
      // Cluster: nothing ready anywhere, so the serving-terminating ones.
      svc('all-term', '10.96.0.1', {}),
      // Local: a remote ready endpoint does not stop the local fallback to the local terminating one.
      svc('local-term', '10.96.0.2', { internalTrafficPolicy: 'Local', externalTrafficPolicy: 'Local' }),
      // Local: a local ready one wins over the local terminating one.
      svc('local-ready', '10.96.0.3', { internalTrafficPolicy: 'Local' }),
      // Local: no local endpoint at all: nothing, though remote ones are ready.
      svc('local-none', '10.96.0.4', { internalTrafficPolicy: 'Local' }),
    ],
    slices: [
      slice('all-term-1', 'all-term', [
        ep('10.1.1.1', { conditions: terminating }),
        ep('10.1.1.2', { conditions: terminating, nodeName: NODE }),
        ep('10.1.1.3', { conditions: { ready: false, serving: false, terminating: true } }),
      ]),
      slice('local-term-1', 'local-term', [
        ep('10.1.2.1'),
        ep('10.1.2.2', { conditions: terminating, nodeName: NODE }),
      ]),
      slice('local-ready-1', 'local-ready', [
        ep('10.1.3.1', { nodeName: NODE }),
        ep('10.1.3.2', { conditions: terminating, nodeName: NODE }),
      ]),
      slice('local-none-1', 'local-none', [ep('10.1.4.1'), ep('10.1.4.2', { conditions: terminating })]),
    ],
  });
  t.deepEqual(r.warnings, []);
  const m = byFrontend(r.services);
  t.deepEqual(table(m.get('10.96.0.1:80/TCP')), ['10.1.1.1:8080', '10.1.1.2:8080']);
  t.deepEqual(table(m.get('192.168.1.10:30001/TCP')), ['10.1.1.1:8080', '10.1.1.2:8080']);
  t.deepEqual(table(m.get('10.96.0.2:80/TCP')), ['10.1.2.2:8080'], 'local: the local terminating one');
  t.deepEqual(table(m.get('192.168.1.10:30002/TCP')), ['10.1.2.2:8080'], 'eTP Local: the same');
  t.deepEqual(table(m.get('10.96.0.3:80/TCP')), ['10.1.3.1:8080']);
  t.deepEqual(table(m.get('192.168.1.10:30003/TCP')), ['10.1.3.1:8080'], 'cluster: the ready one');
  t.deepEqual(table(m.get('10.96.0.4:80/TCP')), [], 'no local endpoint');
  t.deepEqual(table(m.get('192.168.1.10:30004/TCP')), ['10.1.4.1:8080'], 'eTP Cluster: the ready one');
});

test('publishNotReadyAddresses makes every endpoint active; without it not-ready ones are left out', (t) => {
  const eps = [
    ep('10.1.0.1', { conditions: { ready: false, serving: false, terminating: false } }),
    ep('10.1.0.2', { conditions: { ready: false, serving: true, terminating: true } }),
    ep('10.1.0.3', { conditions: { ready: false, serving: false, terminating: true } }),
  ];
  const on = translate({
    services: [service('web', { publishNotReadyAddresses: true })],
    slices: [slice('web-1', 'web', eps)],
  });
  t.deepEqual(table(on.services[0]), ['10.1.0.1:8080', '10.1.0.2:8080', '10.1.0.3:8080']);
  t.true(on.services[0].backends.every((b) => b.state === 'active'));
  const off = translate({
    services: [service('web', { publishNotReadyAddresses: false })],
    slices: [slice('web-1', 'web', eps)],
  });
  t.deepEqual(
    off.services[0].backends.map((b) => `${b.addr} ${b.state}`),
    ['10.1.0.2 terminating'],
  );
  t.deepEqual(table(off.services[0]), ['10.1.0.2:8080'], 'only the serving-terminating fallback');
});

test('topology hints are used only when every ready endpoint has them and one is for this zone', (t) => {
  const z = (...zones: string[]) => ({ hints: { forZones: zones.map((name) => ({ name })) } });
  const run = (endpoints: K8sEndpoint[], zone: string | undefined = 'zone-a', spec: K8sService['spec'] = {}) =>
    table(
      translate({
        services: [service('web', spec)],
        slices: [slice('web-1', 'web', endpoints)],
        node: node([], zone),
      }).services[0],
    );
  const hinted = [ep('10.1.0.1', z('zone-a')), ep('10.1.0.2', z('zone-b')), ep('10.1.0.3', z('zone-b', 'zone-a'))];
  t.deepEqual(run(hinted), ['10.1.0.1:8080', '10.1.0.3:8080']);
  t.deepEqual(
    run([...hinted, ep('10.1.0.4')]),
    ['10.1.0.1:8080', '10.1.0.2:8080', '10.1.0.3:8080', '10.1.0.4:8080'],
    'one without hints: all',
  );
  t.deepEqual(
    run([...hinted, ep('10.1.0.4', { conditions: { ready: false, serving: true, terminating: true } })]),
    ['10.1.0.1:8080', '10.1.0.3:8080'],
    'a terminating one without hints does not count',
  );
  t.deepEqual(
    run([ep('10.1.0.1', z('zone-b')), ep('10.1.0.2', z('zone-c'))]),
    ['10.1.0.1:8080', '10.1.0.2:8080'],
    'none for this zone: all',
  );
  t.deepEqual(run(hinted, ''), ['10.1.0.1:8080', '10.1.0.2:8080', '10.1.0.3:8080'], 'a node without a zone: all');
  t.deepEqual(
    run([ep('10.1.0.1', { ...z('zone-b'), nodeName: NODE }), ep('10.1.0.2', z('zone-a'))], 'zone-a', {
      internalTrafficPolicy: 'Local',
    }),
    ['10.1.0.1:8080'],
    'traffic policy local ignores hints',
  );
});

test('node hints (forNodes) win over zone hints when every ready endpoint has them and one is for this node', (t) => {
  const hints = (nodes: string[], zones: string[] = []) => ({
    hints: {
      forNodes: nodes.map((name) => ({ name })),
      forZones: zones.length ? zones.map((name) => ({ name })) : undefined,
    },
  });
  const run = (endpoints: K8sEndpoint[], zone: string | undefined = 'zone-a', spec: K8sService['spec'] = {}) =>
    table(
      translate({
        services: [service('web', spec)],
        slices: [slice('web-1', 'web', endpoints)],
        node: node([], zone),
      }).services[0],
    );
  // Each endpoint hinted for its own node and zone, as the controller writes PreferSameNode's hints.
  const both = [
    ep('10.1.0.1', { ...hints([NODE], ['zone-a']), nodeName: NODE }),
    ep('10.1.0.2', hints(['node-b'], ['zone-a'])),
    ep('10.1.0.3', hints(['node-c'], ['zone-b'])),
  ];
  t.deepEqual(run(both), ['10.1.0.1:8080'], 'node hints first: only the one for this node');
  t.deepEqual(
    run(both, undefined),
    ['10.1.0.1:8080'],
    'node hints need no zone label (kube-proxy checks them before the zone)',
  );
  t.deepEqual(
    run([ep('10.1.0.2', hints(['node-b'], ['zone-a'])), ep('10.1.0.3', hints(['node-c'], ['zone-b']))]),
    ['10.1.0.2:8080'],
    'none for this node: the zone hints, not nothing',
  );
  t.deepEqual(
    run([ep('10.1.0.2', hints(['node-b'])), ep('10.1.0.3', hints(['node-c']))]),
    ['10.1.0.2:8080', '10.1.0.3:8080'],
    'none for this node and no zone hints: all',
  );
  t.deepEqual(
    run([...both, ep('10.1.0.4', { hints: { forZones: [{ name: 'zone-a' }] } })]),
    ['10.1.0.1:8080', '10.1.0.2:8080', '10.1.0.4:8080'],
    'one ready endpoint without node hints: the zone hints decide',
  );
  t.deepEqual(
    run([...both, ep('10.1.0.4', { conditions: { ready: false, serving: true, terminating: true } })]),
    ['10.1.0.1:8080'],
    'a terminating endpoint without hints does not count',
  );
  t.deepEqual(
    run([ep('10.1.0.1', { ...hints(['node-x', NODE]), nodeName: 'node-x' }), ep('10.1.0.2', hints(['node-b']))]),
    ['10.1.0.1:8080'],
    'a hint for this node is taken whatever the endpoint runs on, one of several node names',
  );
  t.deepEqual(
    run(both, 'zone-a', { internalTrafficPolicy: 'Local' }),
    ['10.1.0.1:8080'],
    'traffic policy local: the local endpoints, hints ignored',
  );
  t.deepEqual(
    run([ep('10.1.0.2', { ...hints(['node-b']), nodeName: NODE }), ep('10.1.0.3', hints(['node-c']))], 'zone-a', {
      internalTrafficPolicy: 'Local',
    }),
    ['10.1.0.2:8080'],
    'local ignores node hints that point elsewhere',
  );
  // The ready ones hinted elsewhere only: once they are gone, the terminating fallback ignores hints.
  t.deepEqual(
    run([
      ep('10.1.0.1', { ...hints([NODE]), conditions: { ready: false, serving: true, terminating: true } }),
      ep('10.1.0.2', { ...hints(['node-b']), conditions: { ready: false, serving: true, terminating: true } }),
    ]),
    ['10.1.0.1:8080', '10.1.0.2:8080'],
    'no ready endpoint: every serving-terminating one',
  );
});

test('healthCheckNodePort: for LoadBalancer services of externalTrafficPolicy Local, with their local ready endpoints by address', (t) => {
  const terminating = { ready: false, serving: true, terminating: true };
  const lb = (name: string, ip: string, spec: K8sService['spec'] = {}) =>
    service(name, {
      clusterIP: ip,
      type: 'LoadBalancer',
      externalTrafficPolicy: 'Local',
      ports: [
        { name: 'http', port: 80, protocol: 'TCP', nodePort: 30080 + Number(ip.split('.')[3]) },
        { name: 'dns', port: 53, protocol: 'UDP', nodePort: 30180 + Number(ip.split('.')[3]) },
      ],
      ...spec,
    });
  const ports = [
    { name: 'http', port: 8080, protocol: 'TCP' },
    { name: 'dns', port: 5353, protocol: 'UDP' },
  ];
  const r = translate({
    node: node([
      ['InternalIP', '192.168.1.10'],
      ['ExternalIP', '198.51.100.7'],
    ]),
    nodePortAddresses: ['192.168.1.0/24'],
    services: [
      // Two local ready pods (on both ports: still two), a local terminating one, a remote one.
      lb('web', '10.96.0.1', { healthCheckNodePort: 32001 }),
      // Only a terminating local pod: 0, so that the load balancer sends nothing new here.
      lb('term', '10.96.0.2', { healthCheckNodePort: 32002 }),
      // No port allocated (or 0): nothing to serve.
      lb('noport', '10.96.0.3', { healthCheckNodePort: 0 }),
      // Not Local, or not a LoadBalancer: kube-proxy serves no health check, whatever the field says.
      lb('cluster', '10.96.0.4', { healthCheckNodePort: 32004, externalTrafficPolicy: 'Cluster' }),
      lb('nodeport', '10.96.0.5', { healthCheckNodePort: 32005, type: 'NodePort' }),
      // publishNotReadyAddresses: a not-ready local pod counts, as it is active.
      lb('pnr', '10.96.0.6', { healthCheckNodePort: 32006, publishNotReadyAddresses: true }),
      // Out of range: the service is left out with a warning.
      lb('bad', '10.96.0.7', { healthCheckNodePort: 70000 }),
      // A port another service has: the second by name is warned about; its frontends stay.
      lb('web2', '10.96.0.8', { healthCheckNodePort: 32001 }),
    ],
    slices: [
      slice(
        'web-1',
        'web',
        [
          ep('10.1.0.1', { nodeName: NODE }),
          ep('10.1.0.2', { nodeName: NODE }),
          ep('10.1.0.3', { nodeName: NODE, conditions: terminating }),
          ep('10.1.0.4'),
        ],
        { ports },
      ),
      slice('term-1', 'term', [ep('10.1.1.1', { nodeName: NODE, conditions: terminating }), ep('10.1.1.2')], {
        ports,
      }),
      slice(
        'pnr-1',
        'pnr',
        [ep('10.1.2.1', { nodeName: NODE, conditions: { ready: false, serving: false, terminating: false } })],
        { ports },
      ),
      slice('web2-1', 'web2', [ep('10.1.3.1', { nodeName: NODE })], { ports }),
    ],
  });
  t.deepEqual(r.healthChecks, [
    { namespace: 'default', name: 'pnr', port: 32006, localEndpoints: 1 },
    { namespace: 'default', name: 'term', port: 32002, localEndpoints: 0 },
    { namespace: 'default', name: 'web', port: 32001, localEndpoints: 2 },
  ]);
  t.deepEqual(r.nodeAddrs, ['192.168.1.10'], 'the NodePort addresses: inside --nodeport-addresses');
  t.deepEqual(r.warnings, [
    'default/bad: healthCheckNodePort 70000 is not a port (1 to 65535); the Service is left out',
    "default/web2: healthCheckNodePort 32001 is default/web's already; not served",
  ]);
  t.true(byFrontend(r.services).has('10.96.0.8:80/TCP'), "web2's frontends stay");
  // The NodePort of 'term' still serves its terminating pod while the health check says 0.
  t.deepEqual(table(byFrontend(r.services).get('192.168.1.10:30082/TCP')), ['10.1.1.1:8080']);

  // Dual-stack: a pod with an address of each family is one endpoint.
  const ds = translate({
    node: node([['InternalIP', '192.168.1.10']]),
    services: [
      lb('ds', '10.96.0.9', {
        clusterIPs: ['10.96.0.9', 'fd00::9'],
        healthCheckNodePort: 32009,
        ports: [{ name: 'http', port: 80, protocol: 'TCP', nodePort: 30090 }],
      }),
    ],
    slices: [
      slice('ds-4', 'ds', [ep('10.1.4.1', { nodeName: NODE }), ep('10.1.4.2', { nodeName: NODE })]),
      slice('ds-6', 'ds', [ep('fd00:1::1', { nodeName: NODE })], { addressType: 'IPv6' }),
    ],
  });
  t.deepEqual(ds.healthChecks, [{ namespace: 'default', name: 'ds', port: 32009, localEndpoints: 2 }]);
});

test('ignored: another proxy, the headless label, clusterIP None, ExternalName; --k8s-service-proxy-name selects', (t) => {
  const proxied = service(
    'proxied',
    { clusterIP: '10.96.0.1' },
    {
      metadata: { name: 'proxied', labels: { 'service.kubernetes.io/service-proxy-name': 'tsct' } },
    },
  );
  const services = [
    proxied,
    service(
      'other-proxy',
      { clusterIP: '10.96.0.2' },
      {
        metadata: { name: 'other-proxy', labels: { 'service.kubernetes.io/service-proxy-name': 'foo' } },
      },
    ),
    service(
      'headless-label',
      { clusterIP: '10.96.0.3' },
      {
        metadata: { name: 'headless-label', labels: { 'service.kubernetes.io/headless': '' } },
      },
    ),
    service('headless', { clusterIP: 'None', clusterIPs: ['None'] }),
    service('external', { type: 'ExternalName', clusterIP: undefined }),
    service('no-ip', { clusterIP: '' }),
    service('plain', { clusterIP: '10.96.0.9' }),
  ];
  const plain = translate({ services });
  t.deepEqual(plain.warnings, []);
  t.deepEqual(
    plain.services.map((s) => s.owner),
    ['default/plain'],
  );
  const named = translate({ services, serviceProxyName: 'tsct' });
  t.deepEqual(
    named.services.map((s) => s.owner),
    ['default/proxied'],
  );
});

test('a Service or EndpointSlice the agent cannot use is warned about by name and left out; the rest works', (t) => {
  const r = translate({
    services: [
      service('bad-ip', { clusterIP: 'banana' }),
      service('bad-port', { clusterIP: '10.96.0.2', ports: [{ name: 'http', port: 70000 }] }),
      service('bad-proto', { clusterIP: '10.96.0.3', ports: [{ name: 'http', port: 80, protocol: 'ICMP' }] }),
      service('bad-affinity', {
        clusterIP: '10.96.0.4',
        sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 90000 } },
      }),
      service('bad-range', { clusterIP: '10.96.0.5', loadBalancerSourceRanges: ['10.0.0.0/33'] }),
      service('bad-np', {
        clusterIP: '10.96.0.6',
        type: 'NodePort',
        ports: [{ name: 'http', port: 80, nodePort: -1 }],
      }),
      service('bad-ext', { clusterIP: '10.96.0.7', externalIPs: ['1.2.3'] }),
      service('twice', { clusterIP: '10.96.0.8', clusterIPs: ['10.96.0.8', '10.96.0.18'] }),
      service('good', { clusterIP: '10.96.0.10' }),
    ],
    slices: [
      slice('good-1', 'good', [ep('10.1.0.1')]),
      slice('good-2', 'good', [ep('10.1.0.2'), ep('fd00::1')]),
      slice('good-3', 'good', [ep('10.1.0.3')], { ports: [{ name: 'http', port: 0, protocol: 'TCP' }] }),
      slice('good-4', 'good', [{ addresses: [] }]),
      slice('good-5', 'good', [ep('10.1.0.5')], { ports: [{ name: 'http', port: 8080, protocol: 'QUIC' }] }),
      slice('good-6', 'good', [ep('10.1.0.6')]),
    ],
  });
  t.deepEqual(r.warnings, [
    "default/good-2: endpoint address 'fd00::1' is not an IPv4 address; the EndpointSlice is left out",
    "default/good-3: port 'http' 0 is not a port (1 to 65535); the EndpointSlice is left out",
    'default/good-4: endpoint 0 has no address; the EndpointSlice is left out',
    "default/good-5: port 'http' protocol 'QUIC' is not TCP, UDP or SCTP; the EndpointSlice is left out",
    'default/bad-affinity: sessionAffinityConfig.clientIP.timeoutSeconds 90000 is not 1 to 86400; the Service is left out',
    "default/bad-ext: externalIP '1.2.3' is not an IP address; the Service is left out",
    "default/bad-ip: clusterIP 'banana' is not an IP address; the Service is left out",
    "default/bad-np: port 'http' nodePort -1 is not a port (1 to 65535); the Service is left out",
    "default/bad-port: port 'http' 70000 is not a port (1 to 65535); the Service is left out",
    "default/bad-proto: port 'http' protocol 'ICMP' is not TCP, UDP or SCTP; the Service is left out",
    "default/bad-range: loadBalancerSourceRanges '10.0.0.0/33' is not a CIDR; the Service is left out",
    'default/twice: clusterIPs 10.96.0.8, 10.96.0.18 has two addresses of one family; the Service is left out',
  ]);
  t.deepEqual(
    r.services.map((s) => s.owner),
    ['default/good'],
  );
  t.deepEqual(table(r.services[0]), ['10.1.0.1:8080', '10.1.0.6:8080']);
});

test('a frontend two services claim goes to the first by name; one backend address has one state for all services', (t) => {
  const r = translate({
    services: [
      service('a', { clusterIP: '10.96.0.1', externalIPs: ['203.0.113.1'] }),
      service('b', { clusterIP: '10.96.0.2', externalIPs: ['203.0.113.1'], publishNotReadyAddresses: true }),
    ],
    slices: [
      slice('a-1', 'a', [ep('10.1.0.1', { conditions: { ready: false, serving: true, terminating: true } })]),
      slice('b-1', 'b', [ep('10.1.0.1', { conditions: { ready: false, serving: true, terminating: true } })]),
    ],
  });
  t.deepEqual(r.warnings, ["default/b: frontend 203.0.113.1:80/TCP is default/a's already; left out"]);
  t.deepEqual(
    r.services.map((s) => `${frontendText(s.frontend)} ${s.owner} ${s.backends.map((b) => b.state).join()}`),
    ['10.96.0.1:80/TCP default/a active', '203.0.113.1:80/TCP default/a active', '10.96.0.2:80/TCP default/b active'],
  );
  t.notThrows(() => validateServices(withIds(r.services)));
});

test('service ids: kept while wanted, the lowest free for a new frontend, the same after a restart', (t) => {
  let now = 0;
  const clock = { now: () => now };
  const services = [service('a', { clusterIP: '10.96.0.1' }), service('b', { clusterIP: '10.96.0.2' })];
  const ids = new ServiceIdMap([], clock);
  const first = ids.assign(translate({ services }).services).services;
  t.deepEqual(
    first.map((s) => `${s.id} ${s.name}`),
    ['1 default/a:http', '2 default/b:http'],
  );
  t.false('key' in first[0], 'an LbService, without the key');
  // A new service takes 3; b keeps 2 when a is gone.
  const second = ids.assign(translate({ services: [services[1], service('c', { clusterIP: '10.96.0.3' })] }).services);
  t.deepEqual(
    second.services.map((s) => `${s.id} ${s.name}`),
    ['2 default/b:http', '3 default/c:http'],
  );
  // a's id 1 cools for 60 s before a new frontend gets it.
  now = 1000;
  const third = ids.assign(
    translate({
      services: [services[1], service('c', { clusterIP: '10.96.0.3' }), service('d', { clusterIP: '10.96.0.4' })],
    }).services,
  ).services;
  t.deepEqual(
    third.map((s) => `${s.id} ${s.name}`),
    ['2 default/b:http', '3 default/c:http', '4 default/d:http'],
  );
  now = 61_000;
  const all = [
    services[1],
    service('c', { clusterIP: '10.96.0.3' }),
    service('d', { clusterIP: '10.96.0.4' }),
    service('e', { clusterIP: '10.96.0.5' }),
  ];
  const fourth = ids.assign(translate({ services: all }).services).services;
  t.is(fourth.find((s) => s.name === 'default/e:http')!.id, 1, 'cooled down: the lowest free');

  // A restarted agent: ids restored from the maps by frontend; a changed port is a new frontend and a new id.
  const restored = fourth.map((s) => ({ id: s.id, frontend: s.frontend }));
  const again = new ServiceIdMap(restored, clock);
  const changed = [...all.slice(0, 3), service('e', { clusterIP: '10.96.0.5', ports: [{ name: 'http', port: 81 }] })];
  const after = again.assign(translate({ services: changed }).services).services;
  t.deepEqual(
    after.map((s) => `${s.id} ${frontendText(s.frontend)}`),
    ['2 10.96.0.2:80/TCP', '3 10.96.0.3:80/TCP', '4 10.96.0.4:80/TCP', '5 10.96.0.5:81/TCP'],
    "e's old id 1 is not given to its new port",
  );
});

test('service ids: more frontends than ids leaves the last ones out', (t) => {
  const ids = new ServiceIdMap([], { reuseAfterMs: 0 });
  const many: KeyedService[] = [];
  const base = translate({ services: [service('a')] }).services[0];
  for (let i = 0; i < 65537; i++) {
    many.push({
      ...base,
      key: `k${String(i).padStart(6, '0')}`,
      frontend: { ...base.frontend, port: (i % 65535) + 1 },
    });
  }
  const r = ids.assign(many);
  t.is(r.services.length, 65535);
  t.deepEqual(
    r.left.map((s) => s.key),
    ['k065535', 'k065536'],
  );
});

test('agent options: Kubernetes mode from --k8s-kubeconfig-path or in a pod; node name, NodePort CIDRs, proxy name', (t) => {
  const resolve = (flags: Record<string, string>, env: NodeJS.ProcessEnv = {}) =>
    resolveAgentOptions({ devices: 'eth0', ...flags }, { env, totalMem: 2 ** 33 });
  t.is(resolve({}).k8s, undefined, 'neither: no Kubernetes');
  const k = resolve({ k8sKubeconfigPath: '/etc/kubeconfig' }, { NODE_NAME: 'Node-7' }).k8s;
  t.deepEqual(k, {
    kubeconfigPath: '/etc/kubeconfig',
    nodeName: 'node-7',
    nodePortAddresses: [],
    serviceProxyName: '',
  });
  t.is(resolve({ k8sKubeconfigPath: '/k', k8sNodeName: 'node-1' }, { NODE_NAME: 'node-7' }).k8s?.nodeName, 'node-1');
  t.is(
    resolve({ k8sKubeconfigPath: '/k' }, { TSCT_K8S_NODE_NAME: 'node-2', NODE_NAME: 'node-7' }).k8s?.nodeName,
    'node-2',
  );
  t.truthy(resolve({ k8sKubeconfigPath: '/k' }).k8s?.nodeName, 'else the host name');
  t.like(resolve({}, { KUBERNETES_SERVICE_HOST: '10.96.0.1', NODE_NAME: 'n' }).k8s, { kubeconfigPath: undefined });
  t.deepEqual(
    resolve({ k8sKubeconfigPath: '/k', nodeportAddresses: '10.0.0.0/8, fd00:0::/64', k8sServiceProxyName: 'tsct' }).k8s,
    {
      kubeconfigPath: '/k',
      nodeName: resolve({ k8sKubeconfigPath: '/k' }).k8s!.nodeName,
      nodePortAddresses: ['10.0.0.0/8', 'fd00::/64'],
      serviceProxyName: 'tsct',
    },
  );
  const refused = (flags: Record<string, string>, env: NodeJS.ProcessEnv, re: RegExp) => {
    const e = t.throws(() => resolve(flags, env), { instanceOf: UsageError });
    t.regex(e?.message ?? '', re);
    t.false((e?.message ?? '').includes('\n'));
  };
  refused({ k8sKubeconfigPath: '/k', nodeportAddresses: '10.0.0.0/40' }, {}, /^--nodeport-addresses: '10.0.0.0\/40'/);
  refused(
    { k8sKubeconfigPath: '/k', k8sNodeName: 'not a name' },
    {},
    /^--k8s-node-name: 'not a name' is not a node name/,
  );
  refused(
    { k8sKubeconfigPath: '/k', servicesFile: '/s.yaml' },
    {},
    /^--services-file and --k8s-kubeconfig-path both program the services; use one of them$/,
  );
  refused(
    { servicesFile: '/s.yaml' },
    { KUBERNETES_SERVICE_HOST: '10.96.0.1' },
    /^--services-file and Kubernetes \(in a pod/,
  );
});

/** A small deterministic generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

test('the translator kept event by event gives what translateServices gives for the objects of the moment', (t) => {
  for (const seed of [1, 2, 3, 4]) {
    const next = rng(seed);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)];
    const names = ['a', 'b', 'c', 'd', 'e', 'f'];
    const services = new Map<string, K8sService>();
    const slices = new Map<string, K8sEndpointSlice>();
    let n: K8sNode | undefined;
    const tr = new ServiceTranslator({ nodeName: NODE });
    const inForce = new Map<string, KeyedService>();
    const conditions = [
      { ready: true },
      { ready: true },
      { ready: false, serving: true, terminating: true },
      { ready: false, serving: false, terminating: true },
    ];
    const makeService = (name: string): K8sService => {
      const type = pick(['ClusterIP', 'ClusterIP', 'NodePort', 'LoadBalancer'] as const);
      return service(
        name,
        {
          type,
          // Few addresses, so that two services claim one frontend now and then.
          clusterIP: pick(['10.96.0.1', '10.96.0.2', '10.96.0.3', '10.96.0.4', '10.96.0.5', 'bad']),
          externalIPs: next() < 0.3 ? ['203.0.113.1'] : [],
          externalTrafficPolicy: pick(['Cluster', 'Local']),
          publishNotReadyAddresses: next() < 0.2,
          healthCheckNodePort: type === 'LoadBalancer' ? pick([32000, 32001]) : undefined,
          ports: [{ name: 'http', port: 80, protocol: 'TCP', nodePort: 30000 + names.indexOf(name) }],
        },
        { status: type === 'LoadBalancer' ? { loadBalancer: { ingress: [{ ip: '198.51.100.7' }] } } : undefined },
      );
    };
    const makeSlice = (name: string): K8sEndpointSlice => {
      const owner = pick(names);
      const eps = Array.from({ length: 1 + Math.floor(next() * 3) }, () =>
        ep(pick(['10.1.0.1', '10.1.0.2', '10.1.0.3', '10.1.0.4', '10.1.0.5']), {
          conditions: pick(conditions),
          nodeName: pick([NODE, 'node-b']),
        }),
      );
      return slice(name, owner, eps);
    };
    for (let step = 0; step < 150; step++) {
      const r = next();
      if (r < 0.3) {
        const s = makeService(pick(names));
        services.set(s.metadata!.name!, s);
        tr.setService(s);
      } else if (r < 0.4) {
        const name = pick(names);
        const s = services.get(name);
        if (s) {
          services.delete(name);
          tr.deleteService(s);
        }
      } else if (r < 0.8) {
        const s = makeSlice(`sl-${Math.floor(next() * 8)}`);
        slices.set(s.metadata!.name!, s);
        tr.setSlice(s);
      } else if (r < 0.9) {
        const name = `sl-${Math.floor(next() * 8)}`;
        const s = slices.get(name);
        if (s) {
          slices.delete(name);
          tr.deleteSlice(s);
        }
      } else {
        n =
          next() < 0.2 ? undefined : node([['InternalIP', pick(['192.168.1.10', '192.168.1.11'])]], pick(['z1', 'z2']));
        tr.setNode(n);
      }
      if (next() < 0.4 && step < 149) continue; // events folded into one batch now and then
      const c = tr.changes();
      for (const k of c.removed) inForce.delete(k);
      for (const s of c.upserts) inForce.set(s.key, s);
      const want = translate({ services: [...services.values()], slices: [...slices.values()], node: n });
      const sortKeys = (xs: KeyedService[]) => [...xs].sort((x, y) => (x.key < y.key ? -1 : 1));
      t.deepEqual(sortKeys([...inForce.values()]), sortKeys(want.services), `seed ${seed} step ${step}: frontends`);
      t.deepEqual(tr.healthChecks(), want.healthChecks, `seed ${seed} step ${step}: health checks`);
      t.deepEqual([...tr.warnings()].sort(), [...want.warnings].sort(), `seed ${seed} step ${step}: warnings`);
      t.deepEqual(tr.nodeAddrs, want.nodeAddrs);
      t.is(tr.counts.frontends, want.services.length);
      t.is(tr.counts.services, new Set(want.services.map((s) => s.owner)).size);
    }
  }
});

test('the translator translates again only the service an event is about', (t) => {
  const tr = new ServiceTranslator({ nodeName: NODE });
  for (let i = 0; i < 50; i++) {
    tr.setService(service(`s${i}`, { clusterIP: `10.96.1.${i}` }));
    tr.setSlice(slice(`s${i}-1`, `s${i}`, [ep(`10.1.1.${i}`)]));
  }
  const first = tr.changes();
  t.is(first.upserts.length, 50);
  t.is(first.translated, 50);
  tr.setSlice(slice('s7-1', 's7', [ep('10.1.1.7'), ep('10.1.2.7')]));
  const c = tr.changes();
  t.is(c.translated, 1);
  t.deepEqual(
    c.upserts.map((s) => `${s.owner} ${s.backends.length}`),
    ['default/s7 2'],
  );
  t.deepEqual(c.removed, []);
  // A slice whose label moves to another service changes both.
  tr.setSlice(slice('s7-1', 's8', [ep('10.1.1.7')]));
  const moved = tr.changes();
  t.deepEqual(moved.upserts.map((s) => `${s.owner} ${s.backends.length}`).sort(), ['default/s7 0', 'default/s8 2']);
  // A Node that says the same again touches nothing; new addresses touch everything.
  tr.setNode(node([['InternalIP', '192.168.1.10']]));
  t.is(tr.changes().translated, 50);
  tr.setNode(node([['InternalIP', '192.168.1.10']]));
  t.is(tr.changes().translated, 0);
  tr.deleteService(service('s3', { clusterIP: '10.96.1.3' }));
  const gone = tr.changes();
  t.deepEqual(gone.removed, ['default/s3:http cluster-ip 10.96.1.3:80/TCP']);
  t.deepEqual(gone.upserts, []);
});

test('service ids by changes: kept, the lowest free for a new key, given back for a removed one', (t) => {
  let now = 0;
  const ids = new ServiceIdMap([], { now: () => now });
  const tr = new ServiceTranslator({ nodeName: NODE });
  tr.setService(service('a', { clusterIP: '10.96.0.1' }));
  tr.setService(service('b', { clusterIP: '10.96.0.2' }));
  const first = ids.assign(tr.changes().upserts).services;
  t.deepEqual(
    first.map((s) => s.id),
    [1, 2],
  );
  tr.deleteService(service('a', { clusterIP: '10.96.0.1' }));
  tr.setService(service('c', { clusterIP: '10.96.0.3' }));
  const c = tr.changes();
  const r = ids.assignChanges(c.upserts, c.removed);
  t.deepEqual(r.removedIds, [1]);
  t.deepEqual(
    r.services.map((s) => `${s.id} ${s.name}`),
    ['3 default/c:http'],
    'id 1 cools down before reuse',
  );
  t.deepEqual([...r.added], [3]);
  t.is(ids.size, 2);
  now += 61_000;
  tr.setService(service('d', { clusterIP: '10.96.0.4' }));
  const d = tr.changes();
  t.deepEqual(
    ids.assignChanges(d.upserts, d.removed).services.map((s) => s.id),
    [1],
  );
});
