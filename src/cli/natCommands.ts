// `tsct bpf nat list` and `tsct bpf nat flush`.
import { BpfMap, BpfProgram } from 'libbpf-ts';
import { openPinnedMap, openPinnedProgram } from '../ct/ctTables';
import { encodeCtKey } from '../ct/ctEntry';
import { StructView } from '../bpf/layouts';
import { parseAddr } from '../net/addr';
import { forEachNat, formatNatCilium, natConnection, natToJson, NatEntry } from '../nat/natEntry';
import { UsageError } from '../errors';
import { monotonicNs } from '../gc/gcState';
import { canonicalAddr, family, port, proto } from '../ct/ctFilter';
import { LineWriter } from './output';

export interface NatListOptions {
  bpfRoot: string;
  output?: string;
  count?: boolean;
  src?: string;
  dst?: string;
  host?: string;
  sport?: string;
  dport?: string;
  proto?: string;
  family?: string;
}

export function openNatMaps(root: string): Array<{ family: 4 | 6; map: BpfMap }> {
  return [
    { family: 4, map: openPinnedMap(root, 'tsct_snat_v4_external') },
    { family: 6, map: openPinnedMap(root, 'tsct_snat_v6_external') },
  ];
}

function natFilter(o: NatListOptions): (n: NatEntry) => boolean {
  const addr = (flag: string, v?: string) => (v ? canonicalAddr(flag, v) : undefined);
  const portOf = (flag: string, v?: string) => (v === undefined ? undefined : port(flag, v));
  const [src, dst, host] = [addr('src', o.src), addr('dst', o.dst), addr('host', o.host)];
  const [sport, dport] = [portOf('sport', o.sport), portOf('dport', o.dport)];
  const p = o.proto === undefined ? undefined : proto(o.proto);
  const f = o.family === undefined ? undefined : family(o.family);
  return (n) =>
    (src === undefined || n.src === src) &&
    (dst === undefined || n.dst === dst) &&
    (host === undefined || n.src === host || n.dst === host || n.toAddr === host) &&
    (sport === undefined || n.sport === sport) &&
    (dport === undefined || n.dport === dport) &&
    (p === undefined || n.proto === p) &&
    (f === undefined || n.family === f);
}

export async function natList(o: NatListOptions): Promise<void> {
  const format = o.output ?? 'cilium';
  if (!['cilium', 'json'].includes(format))
    throw new UsageError(`-o: '${format}' is not an output format; use json, or leave it out for Cilium's format`);
  const filter = natFilter(o);
  const maps = openNatMaps(o.bpfRoot);
  const out = new LineWriter();
  const now = Number(monotonicNs());
  let n = 0;
  try {
    await forEachNat(maps, (lines) => {
      for (const e of lines) {
        if (!filter(e)) continue;
        n++;
        if (!o.count) out.line(format === 'json' ? JSON.stringify(natToJson(e, now)) : formatNatCilium(e, now));
      }
    });
    if (o.count) out.line(String(n));
    out.flush();
  } finally {
    for (const m of maps) m.map.close();
  }
}

/**
 * Deletes the matching mappings: a mapping goes when its OUT or its IN line
 * matches. Its connection forgets it too (CT_F_SNAT cleared; the port is
 * remembered), so that the connection's next packet out takes a mapping
 * afresh, on the same port while that is free, instead of the GC putting
 * the deleted one back.
 */
export async function natFlush(o: NatListOptions): Promise<void> {
  const filter = natFilter(o);
  const maps = openNatMaps(o.bpfRoot);
  const forget = openPinnedProgram(o.bpfRoot, 'tsct_nat_forget');
  try {
    const doomed: Array<[BpfMap, Buffer, NatEntry]> = [];
    await forEachNat(maps, (lines, keys, at, map) => {
      if (lines.some(filter)) doomed.push([map, Buffer.from(keys.subarray(at, at + map.keySize)), lines[1]]);
    });
    let deleted = 0;
    for (const [map, key, inEntry] of doomed) {
      await forgetMapping(forget, inEntry);
      if (map.delete(key)) deleted++;
    }
    process.stdout.write(`flushed ${deleted} NAT mapping${deleted === 1 ? '' : 's'}\n`);
  } finally {
    for (const m of maps) m.map.close();
    forget.close();
  }
}

/**
 * Makes the connection a mapping belongs to forget it (CT_F_SNAT cleared),
 * when it still carries that mapping. Done in the kernel by the pinned
 * SEC("syscall") program tsct_nat_forget, with an atomic and on the flags:
 * a whole-entry write from here would lose the counters and expiry the
 * datapath writes meanwhile.
 */
async function forgetMapping(forget: BpfProgram, inEntry: NatEntry): Promise<boolean> {
  const c = natConnection(inEntry);
  const args = StructView.alloc('nat_forget_args');
  encodeCtKey(c).key.copy(args.bytes('key'));
  parseAddr(inEntry.dst).copy(args.bytes('nat_addr'));
  args.bytes('nat_port').writeUInt16BE(inEntry.dport);
  args.set('family', c.family);
  const { ctx } = await forget.run(args.buf);
  return new StructView('nat_forget_args', ctx!).u('forgotten') === 1;
}
