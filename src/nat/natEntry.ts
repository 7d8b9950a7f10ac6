// Entries of tsct_snat_v4_external and tsct_snat_v6_external: decoding, the
// IN entry a translated connection owns, the OUT line derived from it, and the
// lines Cilium's `bpf nat list` prints.
import { ENUMS, STRUCTS, StructView } from '../bpf/layouts';
import { CtEntry, CtFlag, CtTuple, Family } from '../ct/ctEntry';
import { formatAddr, parseAddr } from '../net/addr';
import { protoName } from '../ct/ctFormat';

export const NatDir = ENUMS.nat_dir;

export interface NatEntry {
  family: Family;
  dir: 'OUT' | 'IN';
  proto: number;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** XLATE_SRC for OUT, XLATE_DST for IN. */
  toAddr: string;
  toPort: number;
  createdNs: number;
  zone: number;
}

const E = STRUCTS.nat_entry.fields;

export function natKeyStruct(family: Family): 'nat4_key' | 'nat6_key' {
  return family === 4 ? 'nat4_key' : 'nat6_key';
}

export function decodeNatEntry(family: Family, key: Buffer, koff: number, value: Buffer, voff: number): NatEntry {
  const K = STRUCTS[natKeyStruct(family)].fields;
  const len = family === 4 ? 4 : 16;
  return {
    family,
    dir: key[koff + K.dir.offset] === NatDir.NAT_DIR_IN ? 'IN' : 'OUT',
    proto: key[koff + K.proto.offset],
    src: formatAddr(key.subarray(koff + K.saddr.offset, koff + K.saddr.offset + len)),
    dst: formatAddr(key.subarray(koff + K.daddr.offset, koff + K.daddr.offset + len)),
    sport: key.readUInt16BE(koff + K.sport.offset),
    dport: key.readUInt16BE(koff + K.dport.offset),
    toAddr: formatAddr(value.subarray(voff + E.to_addr.offset, voff + E.to_addr.offset + len)),
    toPort: value.readUInt16BE(voff + E.to_port.offset),
    createdNs:
      value.readUInt32LE(voff + E.created_ns.offset) + value.readUInt32LE(voff + E.created_ns.offset + 4) * 0x100000000,
    zone: value.readUInt16LE(voff + E.zone.offset),
  };
}

function natKey(
  family: Family,
  dir: number,
  proto: number,
  src: string,
  dst: string,
  sport: number,
  dport: number,
): Buffer {
  const k = StructView.alloc(natKeyStruct(family));
  parseAddr(src).copy(k.bytes('saddr'));
  parseAddr(dst).copy(k.bytes('daddr'));
  k.bytes('sport').writeUInt16BE(sport);
  k.bytes('dport').writeUInt16BE(dport);
  k.set('proto', proto).set('dir', dir);
  return k.buf;
}

const isIcmp = (proto: number) => proto === 1 || proto === 58;

/**
 * The NAT table's key of a translated connection (none when it is not
 * translated): its IN entry, the reverse index replies are found by. The
 * mapping itself lives in the connection's entry.
 */
export function natKeysOf(e: CtEntry): Buffer[] {
  if (!(e.flags & CtFlag.CT_F_SNAT) || !e.natAddr) return [];
  const t = e.tuple;
  return [
    natKey(t.family, NatDir.NAT_DIR_IN, t.proto, t.dst, e.natAddr, isIcmp(t.proto) ? e.natPort : t.dport, e.natPort),
  ];
}

/**
 * The connection an IN entry maps back to, in its original direction: the
 * client's address and port (the entry's value) towards the peer whose
 * replies the entry's key matches.
 */
export function natConnection(inEntry: NatEntry): CtTuple {
  return {
    family: inEntry.family,
    proto: inEntry.proto,
    src: inEntry.toAddr,
    dst: inEntry.src,
    sport: inEntry.toPort,
    dport: isIcmp(inEntry.proto) ? inEntry.toPort : inEntry.sport,
    zone: inEntry.zone,
  };
}

/**
 * The OUT line of a mapping, as Cilium lists it (XLATE_SRC), from its IN
 * entry: the datapath keeps the forward direction in the connection's entry,
 * not in the NAT table, so the line is derived.
 */
export function natOutOf(inEntry: NatEntry): NatEntry {
  const c = natConnection(inEntry);
  return {
    ...inEntry,
    dir: 'OUT',
    src: c.src,
    dst: c.dst,
    sport: c.sport,
    dport: c.dport,
    toAddr: inEntry.dst,
    toPort: inEntry.dport,
  };
}

const hostPort = (family: Family, addr: string, port: number) =>
  family === 6 ? `[${addr}]:${port}` : `${addr}:${port}`;

/** Cilium's `cilium bpf nat list` line. */
export function formatNatCilium(n: NatEntry, nowNs: number): string {
  return (
    `${protoName(n.proto)} ${n.dir} ${hostPort(n.family, n.src, n.sport)} -> ${hostPort(n.family, n.dst, n.dport)} ` +
    `XLATE_${n.dir === 'OUT' ? 'SRC' : 'DST'} ${hostPort(n.family, n.toAddr, n.toPort)} ` +
    `Created=${Math.max(0, Math.floor((nowNs - n.createdNs) / 1e9))}sec ago NeedsCT=1`
  );
}

export function natToJson(n: NatEntry, nowNs: number): Record<string, unknown> {
  return {
    family: n.family === 4 ? 'ipv4' : 'ipv6',
    proto: protoName(n.proto),
    direction: n.dir,
    src: n.src,
    dst: n.dst,
    sport: n.sport,
    dport: n.dport,
    xlate: n.dir === 'OUT' ? 'SRC' : 'DST',
    toAddr: n.toAddr,
    toPort: n.toPort,
    ageS: Math.max(0, Math.floor((nowNs - n.createdNs) / 1e9)),
    zone: n.zone,
  };
}

/**
 * The mappings of both families, a chunk at a time: each as its OUT and IN
 * lines, with where its IN entry's key sits in `keys`. OUT entries left in
 * the table by versions that kept the forward direction there are skipped
 * (the GC removes them).
 */
export async function forEachNat(
  maps: Array<{ family: Family; map: import('libbpf-ts').BpfMap }>,
  each: (lines: [NatEntry, NatEntry], keys: Buffer, keyOffset: number, map: import('libbpf-ts').BpfMap) => void,
): Promise<void> {
  for (const { family, map } of maps) {
    for await (const chunk of map.batches({ chunkSize: 16384 })) {
      for (let i = 0; i < chunk.count; i++) {
        const n = decodeNatEntry(family, chunk.keys, i * chunk.keySize, chunk.values, i * chunk.valueStride);
        if (n.dir === 'IN') each([natOutOf(n), n], chunk.keys, i * chunk.keySize, map);
      }
    }
  }
}
