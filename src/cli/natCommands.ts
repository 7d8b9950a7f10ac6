// `tsct bpf nat list` and `tsct bpf nat flush`.
import { BpfMap } from 'libbpf-ts';
import { openPinnedMap } from '../ct/ctTables';
import { forEachNat, formatNatCilium, natToJson, NatEntry } from '../nat/natEntry';
import { UsageError } from '../agent/options';
import { monotonicNs } from '../agent/state';
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
  if (!['cilium', 'json'].includes(format)) throw new UsageError(`-o: '${format}' is not an output format; use json, or leave it out for Cilium's format`);
  const filter = natFilter(o);
  const maps = openNatMaps(o.bpfRoot);
  const out = new LineWriter();
  const now = Number(monotonicNs());
  let n = 0;
  try {
    await forEachNat(maps, (e) => {
      if (!filter(e)) return;
      n++;
      if (!o.count) out.line(format === 'json' ? JSON.stringify(natToJson(e, now)) : formatNatCilium(e, now));
    });
    if (o.count) out.line(String(n));
    out.flush();
  } finally {
    for (const m of maps) m.map.close();
  }
}

export async function natFlush(o: NatListOptions): Promise<void> {
  const filter = natFilter(o);
  const maps = openNatMaps(o.bpfRoot);
  try {
    const doomed: Array<[BpfMap, Buffer]> = [];
    await forEachNat(maps, (e, keys, at, map) => {
      if (filter(e)) doomed.push([map, Buffer.from(keys.subarray(at, at + map.keySize))]);
    });
    let deleted = 0;
    for (const [map, key] of doomed) if (map.delete(key)) deleted++;
    process.stdout.write(`flushed ${deleted} NAT entr${deleted === 1 ? 'y' : 'ies'}\n`);
  } finally {
    for (const m of maps) m.map.close();
  }
}
