// The filters of `tsct bpf ct list` and `flush` (src/ct/ctFilter.ts), over entries decoded from keys and values
// built as the datapath stores them: each option narrows the set, all must match, addresses compare in any
// spelling, and what does not parse is a one-line UsageError before any entry is looked at. No kernel, no addon.
import test from 'ava';
import { UsageError } from '../../src/errors';
import { CtEntry, CtFlag, CtTuple, TcpState, decodeCtEntry, encodeCtKey } from '../../src/ct/ctEntry';
import { CtFilterOptions, parseCtFilter } from '../../src/ct/ctFilter';
import { StructView } from '../../src/bpf/layouts';

/** An entry as the datapath stores it (canonical key, ORIG_IS_B when the source is side b), decoded back. */
function conn(tuple: Omit<CtTuple, 'zone'> & { zone?: number }, flags = 0, tcpState = 0): CtEntry {
  const t: CtTuple = { zone: 0, ...tuple };
  const { key, srcIsB } = encodeCtKey(t);
  const v = StructView.alloc('ct_entry');
  v.set('flags', flags | (srcIsB ? CtFlag.CT_F_ORIG_IS_B : 0));
  v.set('tcp_state', tcpState);
  v.set('zone', t.zone);
  return decodeCtEntry(t.family, key, v.buf);
}

const F = CtFlag;
const REPLIED = F.CT_F_SEEN_REPLY;

const web = conn(
  { family: 4, proto: 6, src: '10.0.0.2', dst: '10.0.0.1', sport: 40000, dport: 80 },
  REPLIED | F.CT_F_ASSURED,
  TcpState.TCP_CT_ESTABLISHED,
);
const synSent = conn(
  { family: 4, proto: 6, src: '10.0.0.2', dst: '10.0.0.9', sport: 40001, dport: 443 },
  0,
  TcpState.TCP_CT_SYN_SENT,
);
const timeWait = conn(
  { family: 4, proto: 6, src: '10.0.0.3', dst: '10.0.0.1', sport: 40002, dport: 80 },
  REPLIED | F.CT_F_ASSURED | F.CT_F_RX_CLOSING | F.CT_F_TX_CLOSING,
  TcpState.TCP_CT_TIME_WAIT,
);
const dnsMasq = conn(
  { family: 4, proto: 17, src: '10.0.0.2', dst: '8.8.8.8', sport: 53000, dport: 53, zone: 2 },
  REPLIED | F.CT_F_SNAT,
);
const ping6 = conn({ family: 6, proto: 58, src: '2001:db8::1', dst: '2001:db8::2', sport: 7, dport: 7 }, 0);
const tcp6 = conn(
  { family: 6, proto: 6, src: '2001:db8::2', dst: '2001:db8::1', sport: 443, dport: 50000 },
  REPLIED | F.CT_F_DNAT,
  TcpState.TCP_CT_ESTABLISHED,
);
const mapped = conn({ family: 6, proto: 17, src: '::ffff:10.0.0.7', dst: '2001:db8::5', sport: 1, dport: 2 }, 0);
const ALL = [web, synSent, timeWait, dnsMasq, ping6, tcp6, mapped];
const NAMES = new Map<CtEntry, string>([
  [web, 'web'],
  [synSent, 'synSent'],
  [timeWait, 'timeWait'],
  [dnsMasq, 'dnsMasq'],
  [ping6, 'ping6'],
  [tcp6, 'tcp6'],
  [mapped, 'mapped'],
]);

/** The names of the entries the filter keeps, in list order. */
function kept(o: CtFilterOptions): string[] {
  const f = parseCtFilter(o);
  return ALL.filter(f).map((e) => NAMES.get(e)!);
}

function usage(o: CtFilterOptions): string {
  const e = (() => {
    try {
      parseCtFilter(o);
    } catch (err) {
      return err;
    }
    return undefined;
  })();
  if (!(e instanceof UsageError)) throw new Error(`expected a UsageError for ${JSON.stringify(o)}, got ${String(e)}`);
  if (e.message.includes('\n')) throw new Error(`a message of more than one line: ${e.message}`);
  return e.message;
}

test('the entries decode in their original direction whichever side of the key the source is', (t) => {
  // 10.0.0.2:40000 -> 10.0.0.1:80 has its source as side b of the key; the filters see the original tuple.
  t.true(encodeCtKey(web.tuple).srcIsB);
  t.deepEqual(web.tuple, { family: 4, proto: 6, src: '10.0.0.2', dst: '10.0.0.1', sport: 40000, dport: 80, zone: 0 });
  t.false(encodeCtKey(ping6.tuple).srcIsB);
  t.is(ping6.tuple.src, '2001:db8::1');
});

test('no option keeps everything', (t) => {
  t.deepEqual(kept({}), [...NAMES.values()]);
  t.deepEqual(kept({ src: '', port: '' }), [...NAMES.values()]);
});

test('--src, --dst and --host match addresses, --host either end', (t) => {
  t.deepEqual(kept({ src: '10.0.0.2' }), ['web', 'synSent', 'dnsMasq']);
  t.deepEqual(kept({ dst: '10.0.0.1' }), ['web', 'timeWait']);
  t.deepEqual(kept({ host: '10.0.0.1' }), ['web', 'timeWait']);
  t.deepEqual(kept({ host: '2001:db8::1' }), ['ping6', 'tcp6']);
  t.deepEqual(kept({ src: '10.0.0.1' }), []);
  t.deepEqual(kept({ dst: '2001:db8::2' }), ['ping6']);
});

test('IPv6 addresses match in any spelling, IPv4-mapped ones too', (t) => {
  for (const spelling of [
    '2001:db8::1',
    '2001:DB8::1',
    '2001:db8:0:0:0:0:0:1',
    '2001:0db8:0000:0000:0000:0000:0000:0001',
    '2001:db8::0:1',
  ])
    t.deepEqual(kept({ src: spelling }), ['ping6'], spelling);
  t.deepEqual(kept({ src: '::ffff:10.0.0.7' }), ['mapped']);
  t.deepEqual(kept({ src: '::FFFF:a00:7' }), ['mapped']);
  // An IPv4-mapped address is not the IPv4 address: the families differ.
  t.deepEqual(kept({ src: '10.0.0.7' }), []);
});

test('--sport, --dport and --port match ports, --port either end', (t) => {
  t.deepEqual(kept({ sport: '40000' }), ['web']);
  t.deepEqual(kept({ dport: '80' }), ['web', 'timeWait']);
  t.deepEqual(kept({ port: '443' }), ['synSent', 'tcp6']);
  t.deepEqual(kept({ port: '53' }), ['dnsMasq']);
  t.deepEqual(kept({ sport: '80' }), []);
  t.deepEqual(kept({ port: '7' }), ['ping6']);
  t.deepEqual(kept({ port: '0' }), []);
});

test('--proto by name or number, --family and --zone', (t) => {
  t.deepEqual(kept({ proto: 'tcp' }), ['web', 'synSent', 'timeWait', 'tcp6']);
  t.deepEqual(kept({ proto: 'TCP' }), kept({ proto: '6' }));
  t.deepEqual(kept({ proto: 'udp' }), ['dnsMasq', 'mapped']);
  t.deepEqual(kept({ proto: 'icmpv6' }), ['ping6']);
  t.deepEqual(kept({ proto: '58' }), ['ping6']);
  t.deepEqual(kept({ proto: 'icmp' }), []);
  t.deepEqual(kept({ proto: 'sctp' }), []);
  t.deepEqual(kept({ family: '6' }), ['ping6', 'tcp6', 'mapped']);
  t.deepEqual(kept({ family: 'ipv4' }), ['web', 'synSent', 'timeWait', 'dnsMasq']);
  t.deepEqual(kept({ family: 'IPv6' }), kept({ family: '6' }));
  t.deepEqual(kept({ zone: '2' }), ['dnsMasq']);
  t.deepEqual(kept({ zone: '0' }), ['web', 'synSent', 'timeWait', 'ping6', 'tcp6', 'mapped']);
});

test('every option given must match', (t) => {
  t.deepEqual(kept({ src: '10.0.0.2', dport: '80' }), ['web']);
  t.deepEqual(kept({ src: '10.0.0.2', proto: 'udp', zone: '2' }), ['dnsMasq']);
  t.deepEqual(kept({ src: '10.0.0.2', proto: 'udp', zone: '0' }), []);
  t.deepEqual(kept({ host: '2001:db8::1', proto: 'tcp', port: '443', family: '6', state: 'established' }), ['tcp6']);
  t.deepEqual(kept({ dst: '10.0.0.1', ctState: '+est', state: 'TIME_WAIT' }), ['timeWait']);
  t.deepEqual(kept({ dst: '10.0.0.1', ctState: '-closing', state: 'TIME_WAIT' }), []);
});

test('--state matches TCP connections in that state, in any case, and never a non-TCP one', (t) => {
  t.deepEqual(kept({ state: 'ESTABLISHED' }), ['web', 'tcp6']);
  t.deepEqual(kept({ state: 'established' }), ['web', 'tcp6']);
  t.deepEqual(kept({ state: 'SYN_SENT' }), ['synSent']);
  t.deepEqual(kept({ state: 'time_wait' }), ['timeWait']);
  t.deepEqual(kept({ state: 'SYN_SENT2' }), []);
  // The UDP and ICMP entries hold state 0 (NONE): a state filter is about TCP only.
  t.deepEqual(kept({ state: 'NONE' }), []);
});

test('--ct-state terms: +flag keeps, -flag drops, all terms must hold', (t) => {
  t.deepEqual(kept({ ctState: '+est' }), ['web', 'timeWait', 'dnsMasq', 'tcp6']);
  t.deepEqual(kept({ ctState: '+new' }), ['synSent', 'ping6', 'mapped']);
  t.deepEqual(kept({ ctState: '-est' }), kept({ ctState: '+new' }));
  t.deepEqual(kept({ ctState: '+assured' }), ['web', 'timeWait']);
  t.deepEqual(kept({ ctState: '+snat' }), ['dnsMasq']);
  t.deepEqual(kept({ ctState: '-est+snat' }), []);
  t.deepEqual(kept({ ctState: '+est-snat' }), ['web', 'timeWait', 'tcp6']);
  t.deepEqual(kept({ ctState: '+dnat' }), ['tcp6']);
  t.deepEqual(kept({ ctState: '+closing' }), ['timeWait']);
  t.deepEqual(kept({ ctState: '+est-assured-closing' }), ['dnsMasq', 'tcp6']);
  t.deepEqual(kept({ ctState: ' +est -snat ' }), kept({ ctState: '+est-snat' }));
  t.deepEqual(kept({ ctState: '+new+est' }), []);
});

test('what does not parse is a one-line UsageError naming the option, raised before any entry is seen', (t) => {
  t.is(usage({ src: 'nope' }), "--src: 'nope' is not an IPv4 or IPv6 address");
  t.is(usage({ dst: '10.0.0.256' }), "--dst: '10.0.0.256' is not an IPv4 or IPv6 address");
  t.is(usage({ host: '2001:db8::1::2' }), "--host: '2001:db8::1::2' is not an IPv4 or IPv6 address");
  t.is(usage({ host: '10.0.0.0/8' }), "--host: '10.0.0.0/8' is not an IPv4 or IPv6 address");
  t.is(usage({ sport: '65536' }), "--sport: '65536' is not a port (0 to 65535)");
  t.is(usage({ dport: '-1' }), "--dport: '-1' is not a port (0 to 65535)");
  t.is(usage({ port: 'http' }), "--port: 'http' is not a port (0 to 65535)");
  t.is(usage({ proto: 'gre' }), "--proto: 'gre' is not a protocol; use tcp, udp, icmp, icmpv6 or a number");
  t.is(usage({ proto: '256' }), "--proto: '256' is not a protocol; use tcp, udp, icmp, icmpv6 or a number");
  t.is(usage({ family: '5' }), "--family: '5' is not 4 or 6");
  t.is(usage({ family: 'inet' }), "--family: 'inet' is not 4 or 6");
  t.is(usage({ zone: '65536' }), "--zone: '65536' is not a zone (0 to 65535)");
  t.is(usage({ zone: 'two' }), "--zone: 'two' is not a zone (0 to 65535)");
  t.is(
    usage({ state: 'OPEN' }),
    "--state: 'OPEN' is not a TCP state; use one of " +
      'SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2',
  );
  const flags = 'flags: new, est, assured, snat, dnat, closing';
  t.is(
    usage({ ctState: 'est' }),
    `--ct-state: 'est' does not parse; write flags like +est, +new or -est+snat (${flags})`,
  );
  t.is(usage({ ctState: '+est,+snat' }).split(';')[0], "--ct-state: '+est,+snat' does not parse");
  t.is(usage({ ctState: '+EST' }).split(';')[0], "--ct-state: '+EST' does not parse");
  t.is(usage({ ctState: '+est+' }).split(';')[0], "--ct-state: '+est+' does not parse");
  t.is(usage({ ctState: '+rpl' }), `--ct-state: unknown flag 'rpl'; ${flags}`);
  t.is(usage({ ctState: '+est-bogus' }), `--ct-state: unknown flag 'bogus'; ${flags}`);
});
