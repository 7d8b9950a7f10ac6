// The load balancer's model: the CLI's parsers and their one-line refusals, the checks of a set of services, which
// backends a table holds (kube-proxy's KEP-1669 choice), the services file with every bad input at its line, and
// the listings in Cilium's layouts. Pure computation: no root, no kernel.
import test from 'ava';
import { UsageError } from '../../src/errors';
import { ENUMS } from '../../src/bpf/layouts';
import {
  backendName,
  LbBackend,
  LbService,
  parseAffinityTimeout,
  parseBackendList,
  parseFrontend,
  parseServiceId,
  parseServiceType,
  parseSourceRanges,
  tableBackends,
  validateServices,
  LB_SERVICE_DEFAULTS,
} from '../../src/lb/lbService';
import { EXAMPLE_SERVICES_YAML, parseServicesFile } from '../../src/lb/servicesFile';
import { formatLbList, formatMaglevList, formatServiceList, lbListJson, tabulate } from '../../src/lb/lbFormat';
import { LbEntryView } from '../../src/lb/lbWriter';

const SF = ENUMS.lb_service_flag;

function be(addr: string, port: number, more: Partial<LbBackend> = {}): LbBackend {
  return { addr, port, state: 'active', weight: 1, local: false, ...more };
}

function svc(id: number, frontend: string, backends: LbBackend[], more: Partial<LbService> = {}): LbService {
  return {
    id,
    frontend: parseFrontend(frontend),
    ...LB_SERVICE_DEFAULTS,
    sourceRanges: [],
    backends,
    ...more,
  };
}

function refuses(t: import('ava').ExecutionContext, fn: () => unknown, message: string | RegExp): void {
  t.throws(fn, { instanceOf: UsageError, message });
}

test('frontends: IPv4, IPv6 in brackets, tcp by default, protocol in any case, canonical addresses', (t) => {
  t.deepEqual(parseFrontend('10.96.0.10:53/udp'), { addr: '10.96.0.10', port: 53, proto: 'udp' });
  t.deepEqual(parseFrontend('[fd00::10]:53/udp'), { addr: 'fd00::10', port: 53, proto: 'udp' });
  t.deepEqual(parseFrontend('10.96.0.10:80'), { addr: '10.96.0.10', port: 80, proto: 'tcp' });
  t.deepEqual(parseFrontend('[FD00:0:0::10]:443/SCTP'), { addr: 'fd00::10', port: 443, proto: 'sctp' });
});

test('bad frontends are refused with one line saying what to write', (t) => {
  const format = 'write ADDR:PORT[/PROTO], e.g. 10.96.0.10:53/udp or [fd00::10]:53/udp';
  refuses(t, () => parseFrontend('10.96.0.10'), `--frontend: '10.96.0.10' needs a port; ${format}`);
  refuses(
    t,
    () => parseFrontend('fd00::10:53'),
    `--frontend: 'fd00::10:53' needs a port, and an IPv6 address with a port goes in brackets; ${format}`,
  );
  refuses(t, () => parseFrontend('10.96.0.10:0'), "--frontend: '10.96.0.10:0' has port '0'; a port is 1 to 65535");
  refuses(t, () => parseFrontend('10.96.0.10:99999'), /has port '99999'; a port is 1 to 65535$/);
  refuses(
    t,
    () => parseFrontend('10.96.0.10:53/icmp'),
    "--frontend: '10.96.0.10:53/icmp' has protocol 'icmp'; use tcp, udp or sctp",
  );
  refuses(
    t,
    () => parseFrontend('10.96.0.300:53'),
    "--frontend: '10.96.0.300' is not an IPv4 or IPv6 address; write e.g. 10.0.1.5 or fd00::5",
  );
  refuses(t, () => parseFrontend('[10.0.0.1]:53'), /'10\.0\.0\.1' in '\[10\.0\.0\.1\]:53' is not an IPv6 address/);
  refuses(t, () => parseFrontend('[fe80::1%eth0]:53'), /^--frontend: '\[fe80::1%eth0\]:53' has a zone/);
  refuses(
    t,
    () => parseFrontend('fe80::1%eth0'),
    "--frontend: 'fe80::1%eth0' has a zone (%...); a service address has none, leave it out",
  );
  for (const bad of ['', ':53', 'x:1', '10.96.0.10:53/', '10.96.0.10:5a'])
    t.throws(() => parseFrontend(bad), { instanceOf: UsageError });
});

test("backend lists: the port defaults to the frontend's; states, local and weights as attributes", (t) => {
  const fe = parseFrontend('10.96.0.10:53/udp');
  t.deepEqual(parseBackendList('10.0.1.5:53,10.0.2.7', fe), [be('10.0.1.5', 53), be('10.0.2.7', 53)]);
  t.deepEqual(parseBackendList('10.0.1.5=terminating, 10.0.1.6:5353=maintenance', fe), [
    be('10.0.1.5', 53, { state: 'terminating' }),
    be('10.0.1.6', 5353, { state: 'maintenance' }),
  ]);
  t.deepEqual(parseBackendList('[fd00::5]:53=local+weight:2,fd00::6', fe), [
    be('fd00::5', 53, { local: true, weight: 2 }),
    be('fd00::6', 53),
  ]);
  t.deepEqual(parseBackendList('', fe), [], 'an empty list is a service without backends');
  refuses(
    t,
    () => parseBackendList('10.0.1.5:53/udp', fe),
    "--backends: '10.0.1.5:53/udp': a backend takes its frontend's protocol; leave out '/udp'",
  );
  refuses(
    t,
    () => parseBackendList('10.0.1.5=bogus', fe),
    /^--backends: 'bogus' in '10\.0\.1\.5=bogus' is not a backend attribute; write ADDR/,
  );
  refuses(
    t,
    () => parseBackendList('10.0.1.5=weight:0', fe),
    "--backends: '0' is not a weight; a weight is 1 to 65535 (leave out a backend of weight 0)",
  );
  refuses(
    t,
    () => parseBackendList('10.0.1.5=active+terminating', fe),
    "--backends: '10.0.1.5=active+terminating' gives state twice; give it once",
  );
  refuses(t, () => parseBackendList('10.0.1.5,,10.0.1.6', fe), /^--backends: '' has no address/);
  refuses(t, () => parseBackendList('10.0.1.5:0', fe), /has port '0'/);
});

test('affinity timeouts: seconds or durations, 10800 by default, at most 86400 as Kubernetes allows', (t) => {
  t.is(parseAffinityTimeout('3h'), 10800);
  t.is(parseAffinityTimeout('10800'), 10800);
  t.is(parseAffinityTimeout('10800s'), 10800);
  t.is(parseAffinityTimeout('1h30m'), 5400);
  t.is(parseAffinityTimeout(undefined), 10800, 'the flag without a value');
  t.is(parseAffinityTimeout('0'), 0, 'no affinity');
  t.is(parseAffinityTimeout('86400'), 86400);
  refuses(
    t,
    () => parseAffinityTimeout('86401'),
    "--affinity-timeout: '86401' is 86401s; Kubernetes allows at most 86400s (24h), so tsct does too",
  );
  refuses(t, () => parseAffinityTimeout('25h'), /'25h' is 90000s/);
  refuses(
    t,
    () => parseAffinityTimeout('abc'),
    "--affinity-timeout: 'abc' is not a duration; write seconds (10800) or e.g. 3h, 90m, 10800s",
  );
});

test('ids, types and source ranges', (t) => {
  t.is(parseServiceId('65535'), 65535);
  refuses(t, () => parseServiceId('0'), "--id: '0' is not a service id; an id is 1 to 65535");
  refuses(t, () => parseServiceId('65536'), /not a service id/);
  t.is(parseServiceType('externalips'), 'ExternalIP', "Cilium's spelling");
  t.is(parseServiceType('nodeport'), 'NodePort');
  refuses(
    t,
    () => parseServiceType('HostPort'),
    "--type: 'HostPort' is not one of ClusterIP, NodePort, ExternalIP, LoadBalancer",
  );
  t.deepEqual(parseSourceRanges('10.0.0.0/8, 192.0.2.1'), ['10.0.0.0/8', '192.0.2.1/32']);
  refuses(
    t,
    () => parseSourceRanges('10.0.0.1/8'),
    "--source-ranges: '10.0.0.1/8' has host bits set; write 10.0.0.0/8",
  );
});

test('validation refuses what the datapath cannot hold', (t) => {
  const a = () => svc(1, '10.96.0.10:53/udp', [be('10.0.1.5', 53)]);
  t.notThrows(() => validateServices([a(), svc(2, '10.96.0.10:53/tcp', [be('10.0.1.5', 53)])]));
  refuses(
    t,
    () => validateServices([a(), svc(1, '10.96.0.11:53/udp', [])]),
    'service id 1 is given twice (10.96.0.10:53/UDP and 10.96.0.11:53/UDP); give each frontend its own id',
  );
  refuses(
    t,
    () => validateServices([a(), svc(2, '10.96.0.10:53/udp', [])]),
    "frontend 10.96.0.10:53/UDP is service 1's already; one frontend is one service",
  );
  refuses(
    t,
    () => validateServices([svc(1, '10.96.0.10:53/udp', [be('fd00::5', 53)])]),
    'backend [fd00::5]:53 is IPv6 but frontend 10.96.0.10:53/UDP is IPv4; a service balances within one family',
  );
  refuses(
    t,
    () => validateServices([svc(1, '10.96.0.10:53/udp', [be('10.0.1.5', 53), be('10.0.1.5', 53)])]),
    'backend 10.0.1.5:53 is listed twice in service 1',
  );
  refuses(
    t,
    () =>
      validateServices([
        svc(1, '10.96.0.10:53/udp', [be('10.0.1.5', 53, { name: 'x' }), be('10.0.1.6', 53, { name: 'x' })]),
      ]),
    "two backends of service 1 are named 'x'; Maglev needs unique names",
  );
  refuses(
    t,
    () => validateServices([a(), svc(2, '10.96.0.11:53/udp', [be('10.0.1.5', 53, { state: 'terminating' })])]),
    'backend 10.0.1.5:53 is terminating here but active in service 1; a backend address has one state',
  );
  refuses(
    t,
    () => validateServices([svc(1, '10.96.0.10:53/udp', [], { sourceRanges: ['fd00::/8'] })]),
    'source range fd00::/8 is IPv6 but frontend 10.96.0.10:53/UDP is IPv4; give ranges of the frontend family',
  );
  refuses(t, () => validateServices([svc(0, '10.96.0.10:53/udp', [])]), 'service id 0 is not 1 to 65535');
  refuses(t, () => validateServices([svc(1, '10.96.0.10:53/udp', [], { affinityTimeoutS: 90000 })]), /above 86400s/);
  refuses(
    t,
    () => validateServices([svc(1, '10.96.0.10:53/udp', [be('10.0.1.5', 53, { weight: 0 })])]),
    /has weight 0; a weight is 1 to 65535/,
  );
  const many = Array.from({ length: 65536 }, (_, i) => svc(1 + (i % 65535), '10.96.0.10:53/udp', []));
  refuses(t, () => validateServices(many), '65536 services: at most 65535 fit (service ids are 16 bits)');
});

test('table backends follow kube-proxy: active ones, else terminating ones, local only with policy local, never quarantined or maintenance', (t) => {
  const names = (s: LbService) => tableBackends(s).map(backendName);
  const mixed = [
    be('10.0.0.1', 80),
    be('10.0.0.2', 80, { state: 'terminating' }),
    be('10.0.0.3', 80, { state: 'quarantined' }),
    be('10.0.0.4', 80, { state: 'maintenance', local: true }),
    be('10.0.0.5', 80, { local: true }),
    be('10.0.0.6', 80, { state: 'terminating', local: true }),
  ];
  t.deepEqual(names(svc(1, '10.96.0.1:80', mixed)), ['10.0.0.1:80', '10.0.0.5:80']);
  t.deepEqual(names(svc(1, '10.96.0.1:80', mixed, { trafficPolicy: 'local' })), ['10.0.0.5:80']);
  const noActive = mixed.filter((b) => b.state !== 'active');
  t.deepEqual(names(svc(1, '10.96.0.1:80', noActive)), ['10.0.0.2:80', '10.0.0.6:80'], 'fall back to terminating');
  t.deepEqual(
    names(svc(1, '10.96.0.1:80', noActive, { trafficPolicy: 'local' })),
    ['10.0.0.6:80'],
    'local terminating only',
  );
  const onlyRemoteActive = [be('10.0.0.1', 80), be('10.0.0.6', 80, { state: 'terminating', local: true })];
  t.deepEqual(
    names(svc(1, '10.96.0.1:80', onlyRemoteActive, { trafficPolicy: 'local' })),
    ['10.0.0.6:80'],
    'local policy: a remote active backend does not stop the fallback to a local terminating one',
  );
  const broken = [be('10.0.0.3', 80, { state: 'quarantined' }), be('10.0.0.4', 80, { state: 'maintenance' })];
  t.deepEqual(names(svc(1, '10.96.0.1:80', broken)), [], 'none: the service has no table');
});

test('backend names: the given name, else ADDR:PORT with IPv6 in brackets', (t) => {
  t.is(backendName(be('10.0.0.1', 80)), '10.0.0.1:80');
  t.is(backendName(be('fd00::1', 80)), '[fd00::1]:80');
  t.is(backendName(be('fd00::1', 80, { name: 'web-0' })), 'web-0');
});

test('the example services file parses to what it says', (t) => {
  const s = parseServicesFile(EXAMPLE_SERVICES_YAML, 'example.yaml');
  t.is(s.length, 3);
  t.deepEqual(s[0], {
    id: 1,
    name: 'kube-system/kube-dns:dns',
    frontend: { addr: '10.96.0.10', port: 53, proto: 'udp' },
    ...LB_SERVICE_DEFAULTS,
    sourceRanges: [],
    backends: [be('10.0.1.5', 53), be('10.0.2.7', 53, { state: 'terminating' })],
  });
  t.like(s[1], {
    type: 'LoadBalancer',
    algorithm: 'random',
    affinityTimeoutS: 10800,
    trafficPolicy: 'local',
    sourceRanges: ['198.51.100.0/24'],
  });
  t.deepEqual(s[1].backends, [be('10.0.1.8', 8080, { local: true, weight: 2 }), be('10.0.2.9', 8080)]);
  t.deepEqual(s[2].frontend, { addr: 'fd00::10', port: 443, proto: 'tcp' });
  t.deepEqual(s[2].backends, [be('fd00::1:5', 8443)]);
});

test('services files in JSON, empty ones, and affinity written as true', (t) => {
  const json = JSON.stringify({
    services: [{ id: 4, frontend: '10.96.0.4:80', 'affinity-timeout': true, 'full-nat': true, backends: ['10.0.0.1'] }],
  });
  const [s] = parseServicesFile(json, 'services.json');
  t.like(s, { id: 4, affinityTimeoutS: 10800, fullNat: true });
  t.deepEqual(s.backends, [be('10.0.0.1', 80)]);
  t.deepEqual(parseServicesFile('', 'empty.yaml'), []);
  t.deepEqual(parseServicesFile('services:\n', 'empty.yaml'), []);
  t.deepEqual(parseServicesFile('services: []\n', 'empty.yaml'), []);
});

test('every bad input of a services file is refused at its line', (t) => {
  const head = 'services:\n  - id: 1\n    frontend: 10.96.0.10:53/udp\n';
  const cases: Array<[string, string | RegExp]> = [
    ['other: 1\n', "svc.yaml:1: unknown key 'other' in the file; the keys are services"],
    ['services: 3\n', 'svc.yaml:1: services must be a list'],
    [
      head + '    bogus: 1\n',
      "svc.yaml:4: unknown key 'bogus' in a service; the keys are id, name, frontend, type, algorithm, affinity-timeout, " +
        'traffic-policy, source-ranges, full-nat, backends',
    ],
    [head + '    id: 2\n', 'svc.yaml:4: Map keys must be unique; fix the YAML (or JSON) syntax there'],
    [
      'services:\n  - id: 1\n    frontend: [10.96.0.10:53/udp\n',
      /^svc\.yaml:4: .*; fix the YAML \(or JSON\) syntax there$/,
    ],
    ['services:\n  - frontend: 10.96.0.10:53/udp\n', "svc.yaml:2: a service needs 'id'"],
    ['services:\n  - id: 1\n', "svc.yaml:2: a service needs 'frontend'"],
    [
      'services:\n  - id: 0\n    frontend: 10.96.0.10:53/udp\n',
      "svc.yaml:2: id: '0' is not a service id; an id is 1 to 65535",
    ],
    ['services:\n  - id: 1\n    frontend: 10.96.0.10/udp\n', /^svc\.yaml:3: frontend: '10\.96\.0\.10' needs a port/],
    [
      'services:\n  - id: 1\n    frontend: 10.96.0.1000:53/udp\n',
      /^svc\.yaml:3: frontend: '10\.96\.0\.1000' is not an IPv4/,
    ],
    [
      head + '    type: HostPort\n',
      "svc.yaml:4: type: 'HostPort' is not one of ClusterIP, NodePort, ExternalIP, LoadBalancer",
    ],
    [head + '    algorithm: hash\n', "svc.yaml:4: algorithm: 'hash' is not one of maglev, random"],
    [head + '    affinity-timeout: 2d\n', /^svc\.yaml:4: affinity-timeout: '2d' is not a duration/],
    [head + '    affinity-timeout: 90000\n', /^svc\.yaml:4: affinity-timeout: '90000' is 90000s/],
    [head + '    traffic-policy: Local\n    full-nat: yes\n', 'svc.yaml:5: full-nat must be true or false'],
    [
      head + '    source-ranges:\n      - 10.0.0.0/8\n      - 10.1.0.1/16\n',
      /^svc\.yaml:6: source-ranges: '10\.1\.0\.1\/16' has host bits set/,
    ],
    [head + '    source-ranges: [fd00::/8]\n', /^svc\.yaml:4: source range fd00::\/8 is IPv6/],
    [
      head + '    backends:\n      - address: 10.0.0.1\n      - port: 53\n',
      "svc.yaml:6: unknown key 'port' in a backend; the keys are address, state, weight, local, name",
    ],
    [head + '    backends:\n      - state: active\n', "svc.yaml:5: a backend needs 'address'"],
    [
      head + '    backends:\n      - address: 10.0.0.x\n',
      /^svc\.yaml:5: address: '10\.0\.0\.x' is not an IPv4 or IPv6 address/,
    ],
    [
      head + '    backends:\n      - address: 10.0.0.1\n        state: dead\n',
      "svc.yaml:6: state: 'dead' is not one of active, terminating, quarantined, maintenance",
    ],
    [
      head + '    backends:\n      - address: 10.0.0.1\n        weight: 70000\n',
      "svc.yaml:6: weight: '70000' is not a weight; a weight is 1 to 65535 (leave out a backend of weight 0)",
    ],
    [head + '    backends:\n      - address: 10.0.0.1\n        local: 1\n', 'svc.yaml:6: local must be true or false'],
    [
      head + '    backends:\n      - 10.0.0.1=terminating\n',
      /^svc\.yaml:5: '10\.0\.0\.1=terminating': write a backend's state/,
    ],
    [
      head + '    backends:\n      - address: 10.0.0.1\n      - address: fd00::1\n',
      'svc.yaml:6: backend [fd00::1]:53 is IPv6 but frontend 10.96.0.10:53/UDP is IPv4; a service balances within one family',
    ],
    [
      head + '    backends:\n      - 10.0.0.1\n      - 10.0.0.1:53\n',
      'svc.yaml:6: backend 10.0.0.1:53 is listed twice in service 1',
    ],
    [
      head + '  - id: 1\n    frontend: 10.96.0.11:53/udp\n',
      'svc.yaml:4: service id 1 is given twice (10.96.0.10:53/UDP and 10.96.0.11:53/UDP); give each frontend its own id',
    ],
    [
      head + '  - id: 2\n    frontend: 10.96.0.10:53/UDP\n',
      "svc.yaml:5: frontend 10.96.0.10:53/UDP is service 1's already; one frontend is one service",
    ],
    [
      head +
        '    backends: [10.0.0.1]\n  - id: 2\n    frontend: 10.96.0.10:53/tcp\n    backends:\n      - address: 10.0.0.1:53\n        state: maintenance\n',
      'svc.yaml:8: backend 10.0.0.1:53 is maintenance here but active in service 1; a backend address has one state',
    ],
  ];
  for (const [text, message] of cases) {
    const e = t.throws(() => parseServicesFile(text, 'svc.yaml'), { instanceOf: UsageError }, text);
    if (message instanceof RegExp) t.regex(e!.message, message, text);
    else t.is(e!.message, message, text);
    t.false(e!.message.includes('\n'), 'one line');
  }
});

const dnsState = (): LbService[] => [
  svc(1, '10.96.0.10:53/udp', [be('10.0.1.5', 53), be('10.0.2.7', 53)]),
  svc(2, '[fd00::10]:443/tcp', [be('fd00::1:5', 8443, { state: 'terminating' })], { type: 'NodePort' }),
  svc(3, '10.96.0.1:443', [], { type: 'ExternalIP' }),
];

test('tsct service list is laid out as cilium-dbg service list', (t) => {
  t.deepEqual(formatServiceList(dnsState()), [
    'ID   Frontend             Service Type   Backend',
    '1    10.96.0.10:53/UDP    ClusterIP      1 => 10.0.1.5:53/UDP (active)',
    '                                         2 => 10.0.2.7:53/UDP (active)',
    '2    [fd00::10]:443/TCP   NodePort       1 => [fd00::1:5]:8443/TCP (terminating)',
    '3    10.96.0.1:443/TCP    ExternalIPs',
  ]);
  t.deepEqual(formatServiceList([]), ['ID   Frontend   Service Type   Backend']);
});

test('tabwriter layout: minimum width 5, padding 3, the last column unpadded', (t) => {
  t.deepEqual(
    tabulate([
      ['a', 'b'],
      ['abcdef', 'c'],
    ]),
    ['a        b', 'abcdef   c'],
  );
});

const entries = (): LbEntryView[] => [
  {
    family: 4,
    addr: '10.96.0.1',
    port: 443,
    proto: 6,
    revNatId: 1,
    flags: 0,
    algorithm: ENUMS.lb_algorithm.LB_ALG_RANDOM,
    tableOffset: 0,
    tableSize: 1,
    affinityTimeout: 0,
    backends: [{ id: 1, addr: '172.18.0.3', port: 6443, state: 'active' }, { id: 9 }],
  },
  {
    family: 4,
    addr: '10.96.0.1',
    port: 0,
    proto: 0,
    revNatId: 0,
    flags: SF.LB_SVC_F_WILDCARD,
    algorithm: 0,
    tableOffset: 0,
    tableSize: 0,
    affinityTimeout: 0,
    backends: [],
  },
  {
    family: 6,
    addr: 'fd00::10',
    port: 53,
    proto: 17,
    revNatId: 22,
    flags:
      SF.LB_SVC_F_NODEPORT | SF.LB_SVC_F_LOCAL | SF.LB_SVC_F_AFFINITY | SF.LB_SVC_F_SOURCE_RANGE | SF.LB_SVC_F_SNAT,
    algorithm: ENUMS.lb_algorithm.LB_ALG_MAGLEV,
    tableOffset: 251,
    tableSize: 251,
    affinityTimeout: 10800,
    backends: [{ id: 4, addr: 'fd00::1:5', port: 53, state: 'active' }],
  },
];

test('tsct bpf lb list is laid out as cilium-dbg bpf lb list', (t) => {
  t.deepEqual(formatLbList(entries()), [
    'SERVICE ADDRESS     BACKEND ADDRESS (REVNAT_ID) (SLOT)',
    '10.96.0.1:443/TCP   172.18.0.3:6443/TCP (1) (1)',
    '                    backend 9 not found (1) (2)',
    '                    0.0.0.0:0 (1) (0) [ClusterIP]',
    '10.96.0.1:0/ANY     0.0.0.0:0 (0) (0) [wildcard]',
    '[fd00::10]:53/UDP   [fd00::1:5]:53/UDP (22) (1)',
    '                    [::]:0 (22) (0) [NodePort, Local, sessionAffinity, check source-range, full-nat]',
  ]);
  const wide = entries();
  wide[0].addr = '192.168.178.129';
  t.deepEqual(
    formatLbList(wide).slice(0, 2),
    [
      'SERVICE ADDRESS           BACKEND ADDRESS (REVNAT_ID) (SLOT)',
      '192.168.178.129:443/TCP   172.18.0.3:6443/TCP (1) (1)',
    ],
    'the column is as wide as its widest address plus 3',
  );
  const json = lbListJson(entries());
  t.deepEqual(json[0], {
    service: '10.96.0.1:443/TCP',
    revNatId: 1,
    flags: ['ClusterIP'],
    algorithm: 'random',
    tableOffset: 0,
    tableSize: 1,
    affinityTimeout: 0,
    backends: [
      { slot: 1, backendId: 1, address: '172.18.0.3:6443/TCP', state: 'active' },
      { slot: 2, backendId: 9, address: null, state: null },
    ],
  });
});

test('tsct bpf lb maglev list is laid out as cilium-dbg bpf lb maglev list', (t) => {
  t.deepEqual(
    formatMaglevList([
      { id: 1, table: Uint32Array.from([4, 2, 4, 2, 2]) },
      { id: 12, table: Uint32Array.from([7]) },
    ]),
    ['SVC ID   LOOKUP TABLE', '1        [4 2 4 2 2]', '12       [7]'],
  );
});
