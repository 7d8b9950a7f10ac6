// The agent's options (src/agent/options.ts): where each value comes from (flag, environment, config file,
// default), that every default is the datapath's own, table sizing from memory, and the one-line UsageError
// each bad value gives. Pure parsing: no root, no kernel, no addon; the environment, the config file and the
// memory size are passed in.
import test, { ExecutionContext } from 'ava';
import { UsageError } from '../../src/errors';
import {
  AGENT_FLAGS,
  AUTO_ANY_MIN,
  AUTO_TCP_MIN,
  TABLE_MAX,
  TABLE_MIN,
  envName,
  parseDevices,
  parseDuration,
  parseServeAddr,
  parseSize,
  resolveAgentOptions,
} from '../../src/agent/options';
import { DEFAULT_CONFIG, DEFAULT_NAT_PORTS, DEFAULT_TIMEOUTS } from '../../src/datapath/config';
import { DEFAULT_SIZES } from '../../src/datapath/tables';

const GiB = 2 ** 30;
type Flags = Record<string, string | undefined>;

/** Options with nothing from the host: an empty environment, no file unless given, 16 GiB of memory. */
function resolve(
  flags: Flags,
  env: Record<string, string> = {},
  files: Record<string, string> = {},
  totalMem = 16 * GiB,
) {
  return resolveAgentOptions(flags, {
    env,
    totalMem,
    readFile: (p) => {
      if (p in files) return files[p];
      throw Object.assign(new Error(`ENOENT: no such file or directory, open '${p}'`), { code: 'ENOENT' });
    },
  });
}

/** Asserts a UsageError of one line that names the flag and says what was wrong. */
function usageError(t: ExecutionContext, fn: () => unknown, flag: string, says: RegExp): void {
  const e = t.throws(fn, { instanceOf: UsageError });
  if (!e) return;
  t.false(e.message.includes('\n'), `one line: ${e.message}`);
  t.true(e.message.includes(`--${flag}`), `names --${flag}: ${e.message}`);
  t.regex(e.message, says);
}

test('every default is the datapath compiled default, and the flags help shows the same values', (t) => {
  const o = resolve({ devices: 'eth0' });
  t.deepEqual(o.timeouts, DEFAULT_TIMEOUTS);
  t.is(o.tcpLoose, DEFAULT_CONFIG.tcpLoose);
  t.is(o.dropInvalid, DEFAULT_CONFIG.dropInvalid);
  t.is(o.ctFullPass, DEFAULT_CONFIG.ctFullPass);
  t.is(o.events, DEFAULT_CONFIG.events);
  t.is(o.fastPath, DEFAULT_CONFIG.fastPath);
  t.is(o.fastPathNew, DEFAULT_CONFIG.fastPathNew);
  t.is(o.xdpFastPath, false);
  t.is(o.natPortMin, DEFAULT_NAT_PORTS.min);
  t.is(o.natPortMax, DEFAULT_NAT_PORTS.max);
  t.is(o.natPortMin, DEFAULT_CONFIG.natPortMin);
  t.is(o.natPortMax, DEFAULT_CONFIG.natPortMax);
  t.is(o.natRangeStrict, DEFAULT_CONFIG.natRangeStrict);
  t.is(o.eventsRingSize, DEFAULT_SIZES.events);
  t.deepEqual(o.devices, [{ name: 'eth0', zone: 0 }]);
  t.deepEqual(o.masqueradeDevices, []);
  t.deepEqual(o.masqueradeCidrs, []);
  t.deepEqual(o.snatIps, []);
  t.is(o.bpfRoot, '/sys/fs/bpf/tsct');
  t.is(o.gcInterval, 0);
  t.is(o.gcMaxInterval, 12 * 3600);
  t.is(o.logLevel, 'info');
  t.is(o.prometheusServeAddr, '127.0.0.1:9962');

  const help = new Map(AGENT_FLAGS.map((f) => [f.flag, f.default]));
  t.is(help.get('bpf-ct-timeout-regular-tcp'), `${DEFAULT_TIMEOUTS.tcpEstablished}s`);
  t.is(help.get('bpf-ct-timeout-regular-tcp-syn'), `${DEFAULT_TIMEOUTS.tcpSynSent}s`);
  t.is(help.get('bpf-ct-timeout-regular-any'), `${DEFAULT_TIMEOUTS.any}s`);
  t.is(help.get('bpf-ct-timeout-regular-icmp'), `${DEFAULT_TIMEOUTS.icmp}s`);
  t.is(help.get('nat-port-range'), `${DEFAULT_NAT_PORTS.min}-${DEFAULT_NAT_PORTS.max}`);
  t.is(help.get('bpf-events-ring-size'), String(DEFAULT_SIZES.events));
});

test('Cilium static table sizes: 524288 TCP, 262144 non-TCP, and NAT two thirds of both', (t) => {
  t.is(DEFAULT_SIZES.ctTcp, 524288);
  t.is(DEFAULT_SIZES.ctAny, 262144);
  const o = resolve({ devices: 'eth0', bpfCtGlobalTcpMax: '524288', bpfCtGlobalAnyMax: '262144' });
  t.is(o.natMax, 524288);
  t.is(o.natMax, DEFAULT_SIZES.nat);
  t.is(o.sizeReason, 'TCP as given, non-TCP as given');
});

test('a flag beats the environment, which beats the config file, which beats the default', (t) => {
  const file = { '/etc/tsct.json': JSON.stringify({ 'bpf-ct-global-tcp-max': 4096, devices: ['eth9'] }) };
  const env = { TSCT_BPF_CT_GLOBAL_TCP_MAX: '8192', TSCT_CONFIG: '/etc/tsct.json' };
  t.is(envName('bpf-ct-global-tcp-max'), 'TSCT_BPF_CT_GLOBAL_TCP_MAX');

  t.is(resolve({ bpfCtGlobalTcpMax: '65536' }, env, file).ctTcpMax, 65536);
  t.is(resolve({}, env, file).ctTcpMax, 8192);
  t.is(resolve({}, { TSCT_CONFIG: '/etc/tsct.json' }, file).ctTcpMax, 4096);
  t.is(resolve({ config: '/etc/tsct.json' }, {}, file).ctTcpMax, 4096);

  // The same order for a device list, a duration and a boolean.
  t.deepEqual(resolve({}, env, file).devices, [{ name: 'eth9', zone: 0 }]);
  t.deepEqual(resolve({}, { ...env, TSCT_DEVICES: 'eth1:2' }, file).devices, [{ name: 'eth1', zone: 2 }]);
  t.deepEqual(resolve({ devices: 'eth0' }, { ...env, TSCT_DEVICES: 'eth1:2' }, file).devices, [
    { name: 'eth0', zone: 0 },
  ]);
  const durFile = { '/c.json': JSON.stringify({ devices: 'eth0', 'bpf-ct-timeout-regular-any': '2m' }) };
  t.is(resolve({ config: '/c.json' }, {}, durFile).timeouts.any, 120);
  t.is(resolve({ config: '/c.json' }, { TSCT_BPF_CT_TIMEOUT_REGULAR_ANY: '90s' }, durFile).timeouts.any, 90);
  t.is(
    resolve({ config: '/c.json', bpfCtTimeoutRegularAny: '30s' }, { TSCT_BPF_CT_TIMEOUT_REGULAR_ANY: '90s' }, durFile)
      .timeouts.any,
    30,
  );
  const boolFile = { '/b.json': JSON.stringify({ devices: 'eth0', 'bpf-ct-tcp-loose': false }) };
  t.is(resolve({ config: '/b.json' }, {}, boolFile).tcpLoose, false);
  t.is(resolve({ config: '/b.json' }, { TSCT_BPF_CT_TCP_LOOSE: 'yes' }, boolFile).tcpLoose, true);
  t.is(resolve({ config: '/b.json', bpfCtTcpLoose: '0' }, { TSCT_BPF_CT_TCP_LOOSE: 'yes' }, boolFile).tcpLoose, false);
});

test('each setting reaches its option: timeouts per state, devices with zones, NAT, GC, events, serving', (t) => {
  const o = resolve({
    devices: 'eth0, eth1:2',
    bpfRoot: '/sys/fs/bpf/other',
    bpfCtTimeoutRegularTcp: '2h',
    bpfCtTimeoutRegularTcpSyn: '45s',
    bpfCtTimeoutRegularTcpFin: '1m30s',
    bpfCtTimeoutRegularTcpCloseWait: '61s',
    bpfCtTimeoutRegularTcpLastAck: '31s',
    bpfCtTimeoutRegularTcpTimeWait: '62s',
    bpfCtTimeoutRegularTcpClose: '11s',
    bpfCtTimeoutRegularAny: '2m',
    bpfCtTimeoutRegularIcmp: '20s',
    bpfCtDropInvalid: 'TRUE',
    bpfCtFullPassUntracked: '1',
    masqueradeDevices: 'eth1',
    masqueradeCidrs: '10.0.0.0/8, FD00:0::/64,192.168.1.1',
    snatIp: '192.0.2.1,2001:DB8::0:1',
    natPortRange: '1024-2047',
    conntrackGcInterval: '5m',
    conntrackGcMaxInterval: '1h',
    conntrackEvents: 'destroy,new,update',
    bpfEventsRingSize: '65536',
    logLevel: 'debug',
    prometheusServeAddr: 'off',
  });
  t.deepEqual(o.devices, [
    { name: 'eth0', zone: 0 },
    { name: 'eth1', zone: 2 },
  ]);
  t.is(o.bpfRoot, '/sys/fs/bpf/other');
  t.deepEqual(o.timeouts, {
    tcpEstablished: 7200,
    tcpSynSent: 45,
    tcpSynRecv: 45,
    tcpFinWait: 90,
    tcpCloseWait: 61,
    tcpLastAck: 31,
    tcpTimeWait: 62,
    tcpClose: 11,
    any: 120,
    icmp: 20,
  });
  t.true(o.dropInvalid);
  t.true(o.ctFullPass);
  t.deepEqual(o.masqueradeDevices, ['eth1']);
  t.deepEqual(o.masqueradeCidrs, ['10.0.0.0/8', 'fd00::/64', '192.168.1.1/32']);
  t.deepEqual(o.snatIps, ['192.0.2.1', '2001:db8::1']);
  t.is(o.natPortMin, 1024);
  t.is(o.natPortMax, 2047);
  t.true(o.natRangeStrict);
  t.is(o.gcInterval, 300);
  t.is(o.gcMaxInterval, 3600);
  t.is(o.events, 'all');
  t.is(o.eventsRingSize, 65536);
  t.is(o.logLevel, 'debug');
  t.is(o.prometheusServeAddr, '');
  t.is(resolve({ devices: 'eth0', conntrackEvents: 'none' }).events, 'none');
  t.is(resolve({ devices: 'eth0', conntrackEvents: 'NEW, destroy' }).events, 'new-destroy');
  t.is(resolve({ devices: 'eth0', prometheusServeAddr: ':9962' }).prometheusServeAddr, ':9962');
});

test('an explicit --nat-port-range is strict wherever it is given, even when it equals the default', (t) => {
  const range = `${DEFAULT_NAT_PORTS.min}-${DEFAULT_NAT_PORTS.max}`;
  t.false(resolve({ devices: 'eth0' }).natRangeStrict);
  t.true(resolve({ devices: 'eth0', natPortRange: range }).natRangeStrict);
  t.true(resolve({ devices: 'eth0' }, { TSCT_NAT_PORT_RANGE: range }).natRangeStrict);
  t.true(
    resolve({ devices: 'eth0', config: '/f' }, {}, { '/f': JSON.stringify({ 'nat-port-range': range }) })
      .natRangeStrict,
  );
});

test('tables are sized from total memory and --bpf-map-dynamic-size-ratio, within the floors and TABLE_MAX', (t) => {
  // A small host gets the floors.
  const small = resolve({ devices: 'eth0' }, {}, {}, 1 * GiB);
  t.is(small.ctTcpMax, AUTO_TCP_MIN);
  t.is(small.ctAnyMax, AUTO_ANY_MIN);
  t.is(small.sizeReason, 'TCP from 0.0025 of 1.0 GiB memory, non-TCP from 0.0025 of 1.0 GiB memory');

  // A large one scales with memory: twice the memory, twice the entries; TCP gets twice the non-TCP share.
  const big = resolve({ devices: 'eth0' }, {}, {}, 256 * GiB);
  const bigger = resolve({ devices: 'eth0' }, {}, {}, 512 * GiB);
  t.true(big.ctTcpMax > AUTO_TCP_MIN && big.ctAnyMax > AUTO_ANY_MIN, `${big.ctTcpMax} ${big.ctAnyMax}`);
  t.true(Math.abs(bigger.ctTcpMax - 2 * big.ctTcpMax) <= 2);
  t.true(Math.abs(big.ctTcpMax - 2 * big.ctAnyMax) <= 2);
  t.is(big.natMax, Math.round(((big.ctTcpMax + big.ctAnyMax) * 2) / 3));

  // The ratio scales it the same way; a huge budget stops at TABLE_MAX.
  const doubled = resolve({ devices: 'eth0', bpfMapDynamicSizeRatio: '0.005' }, {}, {}, 256 * GiB);
  t.true(Math.abs(doubled.ctTcpMax - bigger.ctTcpMax) <= 1);
  const huge = resolve({ devices: 'eth0', bpfMapDynamicSizeRatio: '1' }, {}, {}, 1024 * GiB);
  t.is(huge.ctTcpMax, TABLE_MAX);
  t.is(huge.ctAnyMax, TABLE_MAX);
  t.is(huge.natMax, TABLE_MAX);

  // A size given as a flag is taken as is; the other one is still sized from memory.
  const mixed = resolve({ devices: 'eth0', bpfCtGlobalTcpMax: '4096' }, {}, {}, 256 * GiB);
  t.is(mixed.ctTcpMax, 4096);
  t.is(mixed.ctAnyMax, big.ctAnyMax);
  t.is(mixed.sizeReason, 'TCP as given, non-TCP from 0.0025 of 256.0 GiB memory');
  t.is(resolve({ devices: 'eth0', bpfNatGlobalMax: '2048' }).natMax, 2048);
  t.is(resolve({ devices: 'eth0', bpfCtGlobalTcpMax: '1024', bpfCtGlobalAnyMax: '1024' }).natMax, 1365);
});

test('parseDuration reads h, m and s in that order, and nothing else', (t) => {
  t.is(parseDuration('f', '90s'), 90);
  t.is(parseDuration('f', '5m'), 300);
  t.is(parseDuration('f', '6h0m0s'), 21600);
  t.is(parseDuration('f', '1h30m'), 5400);
  t.is(parseDuration('f', ' 2s '), 2);
  t.is(parseDuration('f', '0s'), 0);
  for (const bad of ['', '5', '1ms', '1.5h', '30s5m', '-1s', '1d', 'h'])
    usageError(
      t,
      () => parseDuration('bpf-ct-timeout-regular-tcp', bad),
      'bpf-ct-timeout-regular-tcp',
      /not a duration/,
    );
  const e = t.throws(() => parseDuration('conntrack-gc-interval', '10x'), { instanceOf: UsageError });
  t.is(e?.message, "--conntrack-gc-interval: '10x' is not a duration; write it like 30s, 5m or 6h");
});

test('parseSize takes whole numbers from TABLE_MIN to TABLE_MAX', (t) => {
  t.is(TABLE_MIN, 1024);
  t.is(TABLE_MAX, 16777216);
  t.is(parseSize('f', '1024'), 1024);
  t.is(parseSize('f', ' 16777216 '), 16777216);
  const low = t.throws(() => parseSize('bpf-ct-global-tcp-max', '1023'), { instanceOf: UsageError });
  t.is(low?.message, '--bpf-ct-global-tcp-max: 1023 is out of range; give a table size from 1024 to 16777216');
  usageError(t, () => parseSize('bpf-ct-global-any-max', '16777217'), 'bpf-ct-global-any-max', /out of range/);
  for (const bad of ['1e4', '65536.0', '-2048', '0x1000', ''])
    usageError(t, () => parseSize('bpf-nat-global-max', bad), 'bpf-nat-global-max', /is not a whole number/);
});

test('parseDevices reads name[:zone] lists', (t) => {
  t.deepEqual(parseDevices('devices', 'eth0,eth1:2'), [
    { name: 'eth0', zone: 0 },
    { name: 'eth1', zone: 2 },
  ]);
  t.deepEqual(parseDevices('devices', ' veth-a.10 , br_0:65535 ,'), [
    { name: 'veth-a.10', zone: 0 },
    { name: 'br_0', zone: 65535 },
  ]);
  const twice = t.throws(() => parseDevices('devices', 'eth0,eth1,eth0:3'), { instanceOf: UsageError });
  t.is(twice?.message, '--devices: eth0 is listed twice');
  const zone = t.throws(() => parseDevices('devices', 'eth0:65536'), { instanceOf: UsageError });
  t.is(zone?.message, '--devices: zone 65536 of eth0 is above 65535');
  usageError(t, () => parseDevices('devices', 'eth0:x'), 'devices', /'eth0:x' is not a device name/);
  usageError(t, () => parseDevices('devices', 'a-name-of-16-chr'), 'devices', /is not a device name/);
  usageError(t, () => parseDevices('devices', 'eth 0'), 'devices', /is not a device name/);
  usageError(t, () => parseDevices('devices', ' , '), 'devices', /no device given/);
});

test('parseServeAddr: host:port, [v6]:port, :port for every address', (t) => {
  t.deepEqual(parseServeAddr('127.0.0.1:9962'), { host: '127.0.0.1', port: 9962 });
  t.deepEqual(parseServeAddr('[::1]:9962'), { host: '::1', port: 9962 });
  t.deepEqual(parseServeAddr(':9962'), { host: undefined, port: 9962 });
  t.deepEqual(parseServeAddr('localhost:80'), { host: 'localhost', port: 80 });
  for (const bad of ['9962', '127.0.0.1', '127.0.0.1:65536', '::1:9962', '[::1:9962', 'host:port', ''])
    usageError(t, () => parseServeAddr(bad), 'prometheus-serve-addr', /is not host:port/);
});

test('bad values of resolveAgentOptions are one-line UsageErrors naming their flag', (t) => {
  const bad = (flags: Flags, flag: string, says: RegExp) =>
    usageError(t, () => resolve({ devices: 'eth0', ...flags }), flag, says);

  const none = t.throws(() => resolve({}), { instanceOf: UsageError });
  t.regex(none?.message ?? '', /^--devices is required/);
  bad({ devices: 'eth0,eth0' }, 'devices', /eth0 is listed twice/);
  bad({ devices: 'eth0:70000' }, 'devices', /zone 70000 of eth0 is above 65535/);
  bad({ bpfCtTimeoutRegularTcp: '6 hours' }, 'bpf-ct-timeout-regular-tcp', /'6 hours' is not a duration/);
  bad({ bpfCtTimeoutRegularIcmp: '30' }, 'bpf-ct-timeout-regular-icmp', /not a duration/);
  bad({ conntrackGcInterval: 'soon' }, 'conntrack-gc-interval', /not a duration/);
  bad({ conntrackGcMaxInterval: '0s' }, 'conntrack-gc-max-interval', /at least 1s/);
  bad({ bpfCtGlobalTcpMax: '512' }, 'bpf-ct-global-tcp-max', /512 is out of range/);
  bad({ bpfCtGlobalAnyMax: '33554432' }, 'bpf-ct-global-any-max', /out of range/);
  bad({ bpfNatGlobalMax: 'lots' }, 'bpf-nat-global-max', /not a whole number/);
  bad({ bpfMapDynamicSizeRatio: '0' }, 'bpf-map-dynamic-size-ratio', /not a ratio/);
  bad({ bpfMapDynamicSizeRatio: '1.5' }, 'bpf-map-dynamic-size-ratio', /not a ratio/);
  bad({ bpfMapDynamicSizeRatio: '1e-3' }, 'bpf-map-dynamic-size-ratio', /not a ratio/);
  bad({ bpfCtTcpLoose: 'maybe' }, 'bpf-ct-tcp-loose', /'maybe' is not true or false/);
  bad({ bpfCtDropInvalid: 'on' }, 'bpf-ct-drop-invalid', /not true or false/);
  bad({ bpfCtFullPassUntracked: '' }, 'bpf-ct-full-pass-untracked', /not true or false/);
  bad({ bpfFastPath: 'enabled' }, 'bpf-fast-path', /not true or false/);
  bad({ masqueradeCidrs: '10.0.0.0/33' }, 'masquerade-cidrs', /'10.0.0.0\/33' is not a CIDR/);
  bad({ masqueradeCidrs: 'fd00::/129' }, 'masquerade-cidrs', /not a CIDR/);
  bad({ masqueradeCidrs: '10.0.0.0/8/8' }, 'masquerade-cidrs', /not a CIDR/);
  bad({ masqueradeCidrs: '10.0.0.0/' }, 'masquerade-cidrs', /not a CIDR/);
  bad({ masqueradeCidrs: '10.0.0.0/+8' }, 'masquerade-cidrs', /not a CIDR/);
  bad({ masqueradeCidrs: 'ten/8' }, 'masquerade-cidrs', /not a CIDR/);
  bad({ masqueradeDevices: 'eth1' }, 'masquerade-devices', /eth1 is not in --devices/);
  bad({ snatIp: '192.0.2.1,192.0.2.2' }, 'snat-ip', /at most one IPv4 and one IPv6/);
  bad({ snatIp: '2001:db8::1,2001:db8::2' }, 'snat-ip', /at most one IPv4 and one IPv6/);
  bad({ snatIp: '192.0.2.256' }, 'snat-ip', /'192.0.2.256' is not an IPv4 or IPv6 address/);
  for (const range of ['60999-32768', '0-1000', '1024-65536', '1024', '1024:2048', 'a-b'])
    bad({ natPortRange: range }, 'nat-port-range', /is not a port range; write it low-high/);
  bad({ bpfFastPath: 'false', bpfXdpFastPath: 'true' }, 'bpf-xdp-fast-path', /needs --bpf-fast-path true/);
  bad({ bpfFastPath: 'false', bpfFastPathNew: 'true' }, 'bpf-fast-path-new', /needs --bpf-fast-path true/);
  bad({ prometheusServeAddr: '9962' }, 'prometheus-serve-addr', /is not host:port/);
  bad({ prometheusServeAddr: '[::1]:70000' }, 'prometheus-serve-addr', /is not host:port/);
  for (const events of ['new', 'destroy', 'update', 'new,destroy,bogus', 'none,new', 'all'])
    bad({ conntrackEvents: events }, 'conntrack-events', /is not one of new,destroy; new,destroy,update; none/);
  for (const size of ['2048', '5000', '1073741825', '2147483648', '64k', '-4096'])
    bad({ bpfEventsRingSize: size }, 'bpf-events-ring-size', /is not a power of 2 from 4096 to 1073741824/);
  bad({ logLevel: 'verbose' }, 'log-level', /'verbose' is not one of debug, info, warn, error/);

  // The edges that are allowed.
  t.is(resolve({ devices: 'eth0', bpfEventsRingSize: '4096' }).eventsRingSize, 4096);
  t.is(resolve({ devices: 'eth0', bpfEventsRingSize: String(2 ** 30) }).eventsRingSize, 2 ** 30);
  t.true(resolve({ devices: 'eth0', bpfXdpFastPath: 'true' }).xdpFastPath);
  t.deepEqual(resolve({ devices: 'eth0', snatIp: '192.0.2.1,::ffff:0:1' }).snatIps, ['192.0.2.1', '::ffff:0.0.0.1']);
});

// A zero timeout names the option's internal key (tcpEstablished), not the flag the user typed.
test('a zero connection timeout names the flag that set it', (t) => {
  usageError(
    t,
    () => resolve({ devices: 'eth0', bpfCtTimeoutRegularTcp: '0s' }),
    'bpf-ct-timeout-regular-tcp',
    /at least 1s/,
  );
});

test('a zero connection timeout is refused', (t) => {
  for (const flag of ['bpfCtTimeoutRegularTcp', 'bpfCtTimeoutRegularTcpSyn', 'bpfCtTimeoutRegularAny']) {
    const e = t.throws(() => resolve({ devices: 'eth0', [flag]: '0s' }), { instanceOf: UsageError });
    t.regex(e?.message ?? '', /0s is too short: connection timeouts must be at least 1s$/);
  }
});

test('a config file that cannot be read, is not JSON, is not an object or has an unknown key is a UsageError', (t) => {
  const files = {
    '/bad.json': '{ "devices": "eth0", }',
    '/array.json': '["eth0"]',
    '/unknown.json': JSON.stringify({ devices: 'eth0', 'bpf-ct-global-tcp-maximum': 65536 }),
    '/camel.json': JSON.stringify({ devices: 'eth0', bpfCtGlobalTcpMax: 65536 }),
  };
  const bad = (file: string, says: RegExp) =>
    usageError(t, () => resolve({ devices: 'eth0', config: file }, {}, files), 'config', says);
  bad('/missing.json', /^--config: cannot read \/missing.json: ENOENT$/);
  bad('/bad.json', /^--config: \/bad.json is not valid JSON \(/);
  bad('/array.json', /must hold one JSON object of flag names and values/);
  bad('/unknown.json', /has an unknown setting 'bpf-ct-global-tcp-maximum'/);
  bad('/camel.json', /has an unknown setting 'bpfCtGlobalTcpMax'/);
  // Through TSCT_CONFIG too.
  usageError(t, () => resolve({ devices: 'eth0' }, { TSCT_CONFIG: '/bad.json' }, files), 'config', /not valid JSON/);
});

test('a bad value from the environment or the config file is reported under its flag', (t) => {
  usageError(
    t,
    () => resolve({ devices: 'eth0' }, { TSCT_BPF_CT_GLOBAL_TCP_MAX: '10' }),
    'bpf-ct-global-tcp-max',
    /10 is out of range/,
  );
  usageError(
    t,
    () => resolve({ config: '/f' }, {}, { '/f': JSON.stringify({ devices: 'eth0', 'bpf-ct-tcp-loose': 'sometimes' }) }),
    'bpf-ct-tcp-loose',
    /'sometimes' is not true or false/,
  );
});
