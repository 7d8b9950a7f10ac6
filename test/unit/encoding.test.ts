// How tsct reads and writes the datapath's structs: StructView over the BTF-generated layouts, canonical
// connection keys and entries, tsct_config, enum names and reason kinds, address text, the table registry's
// sizes and lookups, and the GC's schedule. Pure computation: no root, no kernel, no addon.
import test from 'ava';
import { ENUMS, STRUCTS, StructName, StructView, enumNames } from '../../src/bpf/layouts';
import { CtFlag, CtTuple, decodeCtEntry, decodeCtEntryAt, encodeCtKey } from '../../src/ct/ctEntry';
import { DEFAULT_CONFIG, DatapathConfig, encodeConfig } from '../../src/datapath/config';
import {
  CT_TABLES,
  DEFAULT_SIZES,
  MAP_NAMES,
  MapSizes,
  ctMapFor,
  natMapFor,
  ringSizes,
  tableSizes,
} from '../../src/datapath/tables';
import { REASON_NAMES, reasonKind } from '../../src/metrics/reasonNames';
import { familyOf, formatAddr, parseAddr } from '../../src/net/addr';
import { GC_INITIAL_INTERVAL_S, GC_MIN_INTERVAL_S, GcSchedule } from '../../src/gc/gcSchedule';

test('StructView reads and writes integers of each size in host (little endian) order', (t) => {
  const v = StructView.alloc('ct_entry');
  t.is(v.buf.length, STRUCTS.ct_entry.size);
  t.true(v.buf.every((b) => b === 0));
  v.set('tcp_state', 0xab); // 1 byte
  v.set('rev_nat_index', 0x1234); // 2 bytes
  v.set('flags', 0xdeadbeef); // 4 bytes
  v.set('created_ns', 0x0102030405060708n); // 8 bytes
  t.is(v.u('tcp_state'), 0xab);
  t.is(v.u('rev_nat_index'), 0x1234);
  t.is(v.u('flags'), 0xdeadbeef);
  t.is(v.u64('created_ns'), 0x0102030405060708n);
  const at = (f: keyof typeof STRUCTS.ct_entry.fields) => STRUCTS.ct_entry.fields[f].offset;
  t.is(v.buf.readUInt16LE(at('rev_nat_index')), 0x1234);
  t.deepEqual([...v.buf.subarray(at('flags'), at('flags') + 4)], [0xef, 0xbe, 0xad, 0xde]);
  t.is(v.buf[at('created_ns')], 0x08);
  // Writing a field leaves its neighbours alone.
  t.is(v.u('fw_cache'), 0);
  t.is(v.u('zone'), 0);
  // A 64-bit field past 2^53 is exact through u64(), and a number set() takes a bigint or a number.
  v.set('expires_ns', 2n ** 63n + 1n);
  t.is(v.u64('expires_ns'), 2n ** 63n + 1n);
  v.set('last_seen_ns', 5e9);
  t.is(v.u('last_seen_ns'), 5e9);
  // set() chains.
  t.is(v.set('mark', 1).set('ifindex', 2), v);
});

test('StructView array fields: element i of u/set, all elements through bytes(), which is a view', (t) => {
  const v = StructView.alloc('ct_entry');
  v.set('packets', 7, 0).set('packets', 9, 1);
  t.is(v.u('packets', 0), 7);
  t.is(v.u('packets', 1), 9);
  t.is(v.buf.readBigUInt64LE(STRUCTS.ct_entry.fields.packets.offset + 8), 9n);
  t.is(v.u('bytes', 0), 0, 'the next field is untouched');
  t.is(v.bytes('label').length, 16);
  t.is(v.bytes('nat_addr').length, 16);
  t.is(StructView.alloc('ct6_key').bytes('addr_a').length, 16);
  t.is(StructView.alloc('ct4_key').bytes('addr_a').length, 4);
  v.bytes('nat_port').writeUInt16BE(443);
  t.is(v.buf.readUInt16BE(STRUCTS.ct_entry.fields.nat_port.offset), 443);
  // A view over an existing buffer reads what is there.
  const copy = new StructView('ct_entry', Buffer.from(v.buf));
  t.is(copy.u('packets', 1), 9);
  t.is(StructView.sizeOf('tsct_config'), STRUCTS.tsct_config.size);
  t.is(StructView.sizeOf('ct_event'), STRUCTS.ct_event.size);
});

test('every struct layout has its fields inside the struct and none overlapping', (t) => {
  for (const [name, s] of Object.entries(STRUCTS) as Array<[StructName, (typeof STRUCTS)[StructName]]>) {
    const fields = Object.entries(s.fields as Record<string, { offset: number; size: number; count: number }>).sort(
      (a, b) => a[1].offset - b[1].offset,
    );
    t.true(fields.length > 0, name);
    let end = 0;
    for (const [f, d] of fields) {
      t.true(d.offset >= end, `${name}.${f} at ${d.offset} overlaps the field before it (ending at ${end})`);
      end = d.offset + d.size * d.count;
      t.true(end <= s.size, `${name}.${f} ends at ${end}, past the struct's ${s.size} bytes`);
    }
    t.is(StructView.alloc(name).buf.length, s.size);
  }
});

test('the structs the CLI and the agent share with the datapath have the sizes the C code gives them', (t) => {
  // Sizes of bpf/include/maps.h, as the map definitions and the batch reads rely on them.
  t.is(STRUCTS.ct4_key.size, 16);
  t.is(STRUCTS.ct6_key.size, 40);
  t.is(STRUCTS.nat4_key.size, 16);
  t.is(STRUCTS.nat6_key.size, 40);
  t.is(STRUCTS.ct_event.size % 8, 0, 'ring buffer records are 8-byte aligned');
  t.is(STRUCTS.ct_entry.size % 8, 0);
  t.is(STRUCTS.tsct_config.fields.timeout_tcp.count, ENUMS.tcp_ct_state.TCP_CT_MAX);
  t.is(STRUCTS.tsct_config.fields.ring_size.count, CT_TABLES.length);
});

const v4: CtTuple = { family: 4, proto: 6, src: '10.0.0.2', dst: '10.0.0.1', sport: 40000, dport: 80, zone: 0 };
const reverse = (t: CtTuple): CtTuple => ({ ...t, src: t.dst, dst: t.src, sport: t.dport, dport: t.sport });

test('encodeCtKey: both directions of a connection give the same key, side a the smaller (address, port)', (t) => {
  const fwd = encodeCtKey(v4);
  const rev = encodeCtKey(reverse(v4));
  t.deepEqual(fwd.key, rev.key);
  t.true(fwd.srcIsB);
  t.false(rev.srcIsB);
  const k = new StructView('ct4_key', fwd.key);
  t.is(fwd.key.length, STRUCTS.ct4_key.size);
  t.is(k.bytes('addr_a').join('.'), '10.0.0.1');
  t.is(k.bytes('addr_b').join('.'), '10.0.0.2');
  t.is(k.bytes('port_a').readUInt16BE(), 80, 'ports in network order');
  t.is(k.bytes('port_b').readUInt16BE(), 40000);
  t.is(k.u('proto'), 6);
  t.is(k.u('pad'), 0);

  // Same address both ends: the smaller port is side a.
  const loop: CtTuple = { ...v4, src: '127.0.0.1', dst: '127.0.0.1', sport: 50000, dport: 8080 };
  t.deepEqual(encodeCtKey(loop).key, encodeCtKey(reverse(loop)).key);
  t.true(encodeCtKey(loop).srcIsB);
  t.is(new StructView('ct4_key', encodeCtKey(loop).key).bytes('port_a').readUInt16BE(), 8080);

  // Addresses compare as bytes, not as text: 10.0.0.10 is above 10.0.0.9.
  t.false(encodeCtKey({ ...v4, src: '10.0.0.9', dst: '10.0.0.10' }).srcIsB);

  // The protocol and the zone are part of the key.
  t.notDeepEqual(encodeCtKey({ ...v4, proto: 17 }).key, fwd.key);
  const zoned = encodeCtKey({ ...v4, zone: 0x0102 });
  t.notDeepEqual(zoned.key, fwd.key);
  t.is(new StructView('ct4_key', zoned.key).u('zone'), 0x0102);

  const v6 = encodeCtKey({ ...v4, family: 6, src: '2001:db8::2', dst: '2001:db8::1' });
  t.is(v6.key.length, STRUCTS.ct6_key.size);
  t.true(v6.srcIsB);
  t.is(formatAddr(new StructView('ct6_key', v6.key).bytes('addr_a')), '2001:db8::1');
  t.deepEqual(
    v6.key,
    encodeCtKey({ ...v4, family: 6, src: '2001:DB8::1', dst: '2001:db8:0::2', sport: 80, dport: 40000 }).key,
  );
});

function entryValue(srcIsB: boolean, extra: (v: StructView<'ct_entry'>) => void = () => undefined): Buffer {
  const v = StructView.alloc('ct_entry');
  v.set('flags', CtFlag.CT_F_SEEN_REPLY | (srcIsB ? CtFlag.CT_F_ORIG_IS_B : 0));
  extra(v);
  return v.buf;
}

test('decodeCtEntry gives the tuple back in its original direction, from either orientation', (t) => {
  for (const tuple of [
    v4,
    reverse(v4),
    { ...v4, zone: 65535 },
    { family: 6 as const, proto: 17, src: 'fd00::1', dst: '2001:db8::53', sport: 5353, dport: 53, zone: 3 },
    { family: 6 as const, proto: 58, src: '2001:db8::2', dst: '2001:db8::1', sport: 9, dport: 9, zone: 0 },
  ]) {
    const { key, srcIsB } = encodeCtKey(tuple);
    t.deepEqual(decodeCtEntry(tuple.family, key, entryValue(srcIsB)).tuple, tuple);
  }
});

test('decodeCtEntry reads every counter and field, 64-bit values beyond 2^32 included', (t) => {
  const { key, srcIsB } = encodeCtKey(v4);
  const value = entryValue(srcIsB, (v) => {
    v.set('flags', CtFlag.CT_F_SEEN_REPLY | CtFlag.CT_F_SNAT | (srcIsB ? CtFlag.CT_F_ORIG_IS_B : 0));
    v.set('created_ns', 3_000_000_000_123n);
    v.set('last_seen_ns', 3_000_000_000_456n);
    v.set('expires_ns', 3_600_000_000_000n);
    v.set('packets', 5, 0).set('packets', 4, 1);
    v.set('bytes', 6_000_000_000, 0).set('bytes', 300, 1);
    v.set('last_report_ns', 11, 0).set('last_report_ns', 12, 1);
    v.set('tcp_flags_seen', 0x1b, 0).set('tcp_flags_seen', 0x12, 1);
    v.set('tcp_state', ENUMS.tcp_ct_state.TCP_CT_ESTABLISHED);
    v.set('ifindex', 7).set('mark', 0xcafe).set('rev_nat_index', 3).set('backend_id', 99);
    // The label is four host-order words, word 0 the low 32 bits: 0x100ff little endian.
    v.bytes('label').set([0xff, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    parseAddr('192.0.2.1').copy(v.bytes('nat_addr'));
    v.bytes('nat_port').writeUInt16BE(33000);
  });
  const e = decodeCtEntry(4, key, value);
  t.deepEqual(e, {
    tuple: v4,
    createdNs: 3_000_000_000_123,
    lastSeenNs: 3_000_000_000_456,
    expiresNs: 3_600_000_000_000,
    packets: [5, 4],
    bytes: [6_000_000_000, 300],
    lastReportNs: [11, 12],
    tcpFlagsSeen: [0x1b, 0x12],
    tcpState: ENUMS.tcp_ct_state.TCP_CT_ESTABLISHED,
    flags: CtFlag.CT_F_SEEN_REPLY | CtFlag.CT_F_SNAT | CtFlag.CT_F_ORIG_IS_B,
    ifindex: 7,
    mark: 0xcafe,
    label: '100ff',
    revNatIndex: 3,
    natAddr: '192.0.2.1',
    natPort: 33000,
    backendId: 99,
  });
  // No SNAT flag: no translated address, whatever the bytes hold.
  const plain = entryValue(srcIsB, (v) => parseAddr('192.0.2.1').copy(v.bytes('nat_addr')));
  t.is(decodeCtEntry(4, key, plain).natAddr, null);
  t.is(decodeCtEntry(4, key, plain).label, '0');
});

test('decodeCtEntryAt decodes the i-th entry of a batch of keys and values', (t) => {
  const tuples: CtTuple[] = [v4, { ...v4, src: '10.0.0.3', sport: 40001 }, reverse({ ...v4, dport: 443 })];
  const ks = STRUCTS.ct4_key.size;
  const vs = STRUCTS.ct_entry.size;
  const keys = Buffer.alloc(ks * tuples.length);
  const values = Buffer.alloc(vs * tuples.length);
  tuples.forEach((tuple, i) => {
    const { key, srcIsB } = encodeCtKey(tuple);
    key.copy(keys, i * ks);
    entryValue(srcIsB, (v) => v.set('packets', i + 1, 0)).copy(values, i * vs);
  });
  tuples.forEach((tuple, i) => {
    const e = decodeCtEntryAt(4, keys, i * ks, values, i * vs);
    t.deepEqual(e.tuple, tuple);
    t.is(e.packets[0], i + 1);
  });
});

const allOn: DatapathConfig = {
  ...DEFAULT_CONFIG,
  tcpLoose: true,
  dropInvalid: true,
  ctFullPass: true,
  masqueradeAll: true,
  natRangeStrict: true,
  events: 'all',
  fastPath: true,
  fastPathNew: true,
};

test('encodeConfig: each behaviour is its tsct_config_flag bit', (t) => {
  const C = ENUMS.tsct_config_flag;
  const flags = (cfg: DatapathConfig) => new StructView('tsct_config', encodeConfig(cfg, [])).u('flags');
  t.is(
    flags(DEFAULT_CONFIG),
    C.CFG_F_TCP_LOOSE | C.CFG_F_MASQ_ALL_SOURCES | C.CFG_F_EVENTS | C.CFG_F_FAST_PATH | C.CFG_F_LB,
  );
  t.is(
    flags(allOn),
    C.CFG_F_TCP_LOOSE |
      C.CFG_F_DROP_INVALID |
      C.CFG_F_CT_FULL_PASS |
      C.CFG_F_MASQ_ALL_SOURCES |
      C.CFG_F_NAT_RANGE_STRICT |
      C.CFG_F_EVENTS |
      C.CFG_F_EVENTS_UPDATE |
      C.CFG_F_FAST_PATH |
      C.CFG_F_FAST_PATH_NEW |
      C.CFG_F_LB,
  );
  const none: DatapathConfig = {
    ...allOn,
    tcpLoose: false,
    dropInvalid: false,
    ctFullPass: false,
    masqueradeAll: false,
    natRangeStrict: false,
    events: 'none',
    fastPath: false,
    fastPathNew: false,
    lb: false,
  };
  t.is(flags(none), 0);
  t.is(flags({ ...none, lb: true }), C.CFG_F_LB);
  t.is(flags({ ...none, dropInvalid: true }), C.CFG_F_DROP_INVALID);
  t.is(flags({ ...none, ctFullPass: true }), C.CFG_F_CT_FULL_PASS);
  t.is(flags({ ...none, natRangeStrict: true }), C.CFG_F_NAT_RANGE_STRICT);
  t.is(flags({ ...none, events: 'new-destroy' }), C.CFG_F_EVENTS);
  t.is(flags({ ...none, events: 'all' }), C.CFG_F_EVENTS | C.CFG_F_EVENTS_UPDATE);
  // New connections on the fast path only with the fast path itself.
  t.is(flags({ ...none, fastPathNew: true }), 0);
  t.is(flags({ ...none, fastPath: true, fastPathNew: true }), C.CFG_F_FAST_PATH | C.CFG_F_FAST_PATH_NEW);
});

test('encodeConfig: timeouts by TCP state index, ports, ring sizes, initialized', (t) => {
  const S = ENUMS.tcp_ct_state;
  const cfg: DatapathConfig = {
    ...DEFAULT_CONFIG,
    timeouts: {
      tcpSynSent: 101,
      tcpSynRecv: 102,
      tcpEstablished: 103,
      tcpFinWait: 104,
      tcpCloseWait: 105,
      tcpLastAck: 106,
      tcpTimeWait: 107,
      tcpClose: 108,
      any: 109,
      icmp: 110,
    },
    natPortMin: 1024,
    natPortMax: 65535,
  };
  const sizes: MapSizes = { ...DEFAULT_SIZES, ctTcp: 5000, ctAny: 3000 };
  const buf = encodeConfig(cfg, ringSizes(sizes));
  t.is(buf.length, STRUCTS.tsct_config.size);
  const v = new StructView('tsct_config', buf);
  t.is(v.u('initialized'), 1);
  const byState: Record<string, number> = {};
  for (const [name, i] of Object.entries(S))
    if (i < STRUCTS.tsct_config.fields.timeout_tcp.count) byState[name] = v.u('timeout_tcp', i);
  t.deepEqual(byState, {
    TCP_CT_NONE: 0,
    TCP_CT_SYN_SENT: 101,
    TCP_CT_SYN_RECV: 102,
    TCP_CT_ESTABLISHED: 103,
    TCP_CT_FIN_WAIT: 104,
    TCP_CT_CLOSE_WAIT: 105,
    TCP_CT_LAST_ACK: 106,
    TCP_CT_TIME_WAIT: 107,
    TCP_CT_CLOSE: 108,
    TCP_CT_SYN_SENT2: 101,
  });
  t.is(v.u('timeout_any'), 109);
  t.is(v.u('timeout_icmp'), 110);
  t.is(v.u('nat_port_min'), 1024);
  t.is(v.u('nat_port_max'), 65535);
  const T = ENUMS.ct_table;
  t.is(v.u('ring_size', T.CT_TABLE_TCP4), 5000);
  t.is(v.u('ring_size', T.CT_TABLE_TCP6), 5000);
  t.is(v.u('ring_size', T.CT_TABLE_ANY4), 3000);
  t.is(v.u('ring_size', T.CT_TABLE_ANY6), 3000);
});

test('enumNames: values to names with the C prefix dropped', (t) => {
  const tcp = enumNames('tcp_ct_state', 'TCP_CT_');
  t.is(tcp.get(ENUMS.tcp_ct_state.TCP_CT_ESTABLISHED), 'ESTABLISHED');
  t.is(tcp.get(9), 'SYN_SENT2');
  t.is(tcp.get(11), 'IGNORE');
  t.is(tcp.get(99), undefined);
  // A name without the prefix stays whole.
  t.is(enumNames('ct_table', 'NOPE_').get(0), 'CT_TABLE_TCP4');
  t.is(REASON_NAMES.get(ENUMS.tsct_reason.REASON_DROP_CT_TABLE_FULL), 'DROP_CT_TABLE_FULL');
  t.is(REASON_NAMES.get(0), 'FORWARDED');
});

test('reasonKind agrees with the datapath numbering: invalid from 64, drops from 128 to REASON_MAX', (t) => {
  t.is(reasonKind('DROP_CT_TABLE_FULL'), 'drop');
  t.is(reasonKind('INV_TCP_FLAGS'), 'invalid');
  t.is(reasonKind('CT_NEW'), 'event');
  t.is(reasonKind('NAT_PORT_RETRY'), 'event');
  const R = ENUMS.tsct_reason;
  for (const [value, name] of REASON_NAMES) {
    if (value === R.REASON_MAX) continue;
    // bpf/include/drop.h: a drop is REASON_DROP_INVALID <= reason < REASON_MAX.
    const expected = value >= R.REASON_DROP_INVALID ? 'drop' : value >= R.REASON_INV_TRUNCATED_L2 ? 'invalid' : 'event';
    t.is(reasonKind(name), expected, `${name} = ${value}`);
  }
});

test('parseAddr: IPv4 and IPv6 in any spelling to network-order bytes; anything else throws one line', (t) => {
  t.deepEqual([...parseAddr('192.0.2.1')], [192, 0, 2, 1]);
  const one = Buffer.alloc(16);
  one[15] = 1;
  t.deepEqual(parseAddr('::1'), one);
  t.deepEqual(parseAddr('0:0:0:0:0:0:0:1'), one);
  t.deepEqual(parseAddr('::'), Buffer.alloc(16));
  t.is(parseAddr('2001:db8::1').toString('hex'), '20010db8000000000000000000000001');
  t.deepEqual(parseAddr('2001:DB8:0000::0001'), parseAddr('2001:db8::1'));
  t.is(parseAddr('fe80::1:2').toString('hex'), 'fe800000000000000000000000010002');
  t.is(parseAddr('1::').toString('hex'), '00010000000000000000000000000000');
  // An embedded IPv4 tail, as in IPv4-mapped addresses and NAT64 prefixes.
  t.is(parseAddr('::ffff:192.0.2.1').toString('hex'), '00000000000000000000ffffc0000201');
  t.deepEqual(parseAddr('::ffff:192.0.2.1'), parseAddr('::ffff:c000:201'));
  t.is(parseAddr('64:ff9b::10.0.0.1').toString('hex'), '0064ff9b00000000000000000a000001');
  for (const bad of ['', '1.2.3', '256.0.0.1', '1::2::3', '2001:db8::g', 'example.com', '10.0.0.0/8'])
    t.throws(() => parseAddr(bad), { message: `'${bad}' is not an IPv4 or IPv6 address` });
  t.is(familyOf('10.0.0.1'), 4);
  t.is(familyOf('::1'), 6);
  t.throws(() => familyOf('x'), { message: "'x' is not an IPv4 or IPv6 address" });
});

test('formatAddr: RFC 5952 text, the longest run of zeros compressed, the first of equal runs', (t) => {
  const f = (text: string) => formatAddr(parseAddr(text));
  t.is(f('192.0.2.1'), '192.0.2.1');
  t.is(f('2001:0DB8:0000:0000:0000:0000:0000:0001'), '2001:db8::1'); // 4.1 leading zeros, 4.3 lower case
  t.is(f('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1'); // 4.2.3 the first of equal runs
  t.is(f('2001:0:0:1:0:0:0:1'), '2001:0:0:1::1'); // 4.2.3 the longest run
  t.is(f('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1'); // 4.2.2 one zero group is not compressed
  t.is(f('2001:db8::1:1:1:1:1'), '2001:db8:0:1:1:1:1:1');
  t.is(f('0:0:0:0:0:0:0:0'), '::');
  t.is(f('0:0:0:0:0:0:0:1'), '::1');
  t.is(f('1:0:0:0:0:0:0:0'), '1::');
  t.is(f('fe80:0:0:0:0:0:0:1'), 'fe80::1');
  t.is(f('1:2:3:4:5:6:7:8'), '1:2:3:4:5:6:7:8');
  t.is(f('::ffff:0:0'), '::ffff:0.0.0.0', 'IPv4-mapped, with its dotted tail');
  // What formatAddr writes parses back to the same bytes.
  for (const text of ['2001:db8::1:0:0:1', '::ffff:192.0.2.1', 'fd00:1:2:3::', '::1:0:0:0:1', '2001:db8:0:1:1:1:1:1'])
    t.deepEqual(parseAddr(f(text)), parseAddr(text), text);
});

// RFC 5952 section 5 recommends the dotted tail for IPv4-mapped addresses (::ffff:192.0.2.1), and inet_ntop,
// conntrack and ip(8) print them so; formatAddr prints ::ffff:c000:201.
test('formatAddr writes an IPv4-mapped address with its dotted IPv4 tail (RFC 5952 section 5)', (t) => {
  t.is(formatAddr(parseAddr('::ffff:192.0.2.1')), '::ffff:192.0.2.1');
});

test('the table registry: one map per family and protocol class, sizes per map, rings in enum order', (t) => {
  t.is(ctMapFor(4, 6), 'tsct_ct4_global');
  t.is(ctMapFor(6, 6), 'tsct_ct6_global');
  for (const proto of [17, 1, 132, 47]) t.is(ctMapFor(4, proto), 'tsct_ct_any4_global', `proto ${proto}`);
  for (const proto of [17, 58, 132]) t.is(ctMapFor(6, proto), 'tsct_ct_any6_global', `proto ${proto}`);
  t.is(natMapFor(4), 'tsct_snat_v4_external');
  t.is(natMapFor(6), 'tsct_snat_v6_external');

  const sizes: MapSizes = { ...DEFAULT_SIZES, ctTcp: 5000, ctAny: 3000, frag: 100, nat: 7000, events: 8192 };
  // Each connection table's ring is as large as its table.
  t.like(Object.fromEntries(tableSizes(sizes)), {
    tsct_ct4_global: 5000,
    tsct_ct4_ring: 5000,
    tsct_ct_any4_global: 3000,
    tsct_ct_any4_ring: 3000,
    tsct_ct6_global: 5000,
    tsct_ct6_ring: 5000,
    tsct_ct_any6_global: 3000,
    tsct_ct_any6_ring: 3000,
    tsct_frag4: 100,
    tsct_frag6: 100,
    tsct_snat_v4_external: 7000,
    tsct_snat_v6_external: 7000,
    tsct_events: 8192,
  });
  const names = tableSizes(sizes).map(([n]) => n);
  t.is(new Set(names).size, names.length, 'each map sized once');
  for (const n of names) t.true((MAP_NAMES as readonly string[]).includes(n), `${n} is a pinned map`);
  t.is(new Set(MAP_NAMES).size, MAP_NAMES.length);

  const T = ENUMS.ct_table;
  const rings = ringSizes(sizes);
  t.is(rings.length, 4);
  t.is(rings[T.CT_TABLE_TCP4], 5000);
  t.is(rings[T.CT_TABLE_ANY4], 3000);
  t.is(rings[T.CT_TABLE_TCP6], 5000);
  t.is(rings[T.CT_TABLE_ANY6], 3000);
  t.deepEqual(ringSizes(DEFAULT_SIZES), [524288, 262144, 524288, 262144]);
});

test('GcSchedule: a fixed interval never moves', (t) => {
  const g = new GcSchedule({ fixedS: 30, maxS: 43200 });
  t.is(g.intervalS, 30);
  t.is(g.next(100, 100), 30);
  t.is(g.next(0, 100), 30);
  t.is(g.pressure(), 30);
  t.is(g.intervalS, 30);
});

test('GcSchedule: adaptive, shorter after sweeps that delete much, longer after ones that delete little', (t) => {
  t.is(GC_INITIAL_INTERVAL_S, 60);
  t.is(GC_MIN_INTERVAL_S, 10);
  const g = new GcSchedule({ fixedS: 0, maxS: 43200 });
  t.is(g.intervalS, 60);
  // More than a quarter deleted: halve, down to the minimum.
  t.deepEqual([g.next(26, 100), g.next(50, 100), g.next(100, 100), g.next(100, 100)], [30, 15, 10, 10]);
  // Between 5% and 25%: unchanged.
  t.is(g.next(5, 100), 10);
  t.is(g.next(25, 100), 10);
  // Under 5%, or nothing scanned: 1.5 times longer (rounded up), up to the maximum.
  t.deepEqual([g.next(4, 100), g.next(0, 0), g.next(0, 1000)], [15, 23, 35]);
  const long = new GcSchedule({ fixedS: 0, maxS: 100 });
  t.is(long.intervalS, 60);
  t.deepEqual([long.next(0, 10), long.next(0, 10), long.next(0, 10)], [90, 100, 100]);
});

test('GcSchedule: a full table halves the interval, to the minimum; bounds below the minimum win', (t) => {
  const g = new GcSchedule({ fixedS: 0, maxS: 43200 });
  t.deepEqual([g.pressure(), g.pressure(), g.pressure(), g.pressure()], [30, 15, 10, 10]);
  const custom = new GcSchedule({ fixedS: 0, maxS: 43200, minS: 2, initialS: 8 });
  t.is(custom.intervalS, 8);
  t.deepEqual([custom.next(90, 100), custom.next(90, 100), custom.next(90, 100)], [4, 2, 2]);
  // A maximum under the initial interval and the minimum: it is both.
  const tight = new GcSchedule({ fixedS: 0, maxS: 5 });
  t.is(tight.intervalS, 5);
  t.is(tight.next(100, 100), 5);
  t.is(tight.pressure(), 5);
  t.is(tight.next(0, 100), 5);
});
