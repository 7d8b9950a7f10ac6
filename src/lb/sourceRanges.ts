// loadBalancerSourceRanges in the datapath's tries (tsct_lb4_source_range,
// tsct_lb6_source_range): one entry per (service id, CIDR), the id part of
// the prefix. The ranges go in before the service entry that asks for them
// (LB_SVC_F_SOURCE_RANGE, written by LbWriter) and out after it, so that no
// client is refused in between: add() before the writer's apply, prune() after.
import { StructView } from '../bpf/layouts';
import { parseAddr } from '../net/addr';
import { LbService } from './lbService';

export interface RangeMapLike {
  update(key: Buffer, value: Buffer): void;
  delete(key: Buffer): boolean;
  entries(): AsyncIterable<[Buffer, Buffer]>;
}

export interface SourceRangeMaps {
  tsct_lb4_source_range: RangeMapLike;
  tsct_lb6_source_range: RangeMapLike;
}

const ALLOWED = Buffer.from([1]);
/** The service id and its padding, ahead of the address in every key. */
const ID_BITS = 32;

function rangeKey(id: number, cidr: string): { v4: boolean; key: Buffer } {
  const [addr, len] = cidr.split('/');
  const bytes = parseAddr(addr);
  const v4 = bytes.length === 4;
  const k = StructView.alloc(v4 ? 'lb4_src_range_key' : 'lb6_src_range_key');
  const bits = Number(len ?? (v4 ? 32 : 128));
  k.set('prefixlen', ID_BITS + bits).set('rev_nat_index', id);
  // Host bits cleared: the trie compares the prefix only, but two spellings of one range are one key.
  const masked = Buffer.from(bytes);
  for (let i = 0; i < masked.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    masked[i] &= keep === 8 ? 0xff : (0xff << (8 - keep)) & 0xff;
  }
  masked.copy(k.bytes('addr'));
  return { v4, key: k.buf };
}

function wanted(services: readonly LbService[]): Map<string, { v4: boolean; key: Buffer }> {
  const out = new Map<string, { v4: boolean; key: Buffer }>();
  for (const s of services) {
    for (const cidr of s.sourceRanges) {
      const k = rangeKey(s.id, cidr);
      out.set(`${k.v4 ? 4 : 6}:${k.key.toString('hex')}`, k);
    }
  }
  return out;
}

export class SourceRangeWriter {
  constructor(private readonly maps: SourceRangeMaps) {}

  /** Writes the ranges of these services (what is there already stays). */
  add(services: readonly LbService[]): number {
    let n = 0;
    for (const { v4, key } of wanted(services).values()) {
      (v4 ? this.maps.tsct_lb4_source_range : this.maps.tsct_lb6_source_range).update(key, ALLOWED);
      n++;
    }
    return n;
  }

  /** Removes every range of the services in `scope` (all when absent) that `keep` does not list. */
  async prune(keep: readonly LbService[], scope?: ReadonlySet<number>): Promise<number> {
    const want = wanted(keep);
    let n = 0;
    for (const [family, map] of [
      [4, this.maps.tsct_lb4_source_range],
      [6, this.maps.tsct_lb6_source_range],
    ] as const) {
      const doomed: Buffer[] = [];
      for await (const [key] of map.entries()) {
        const id = new StructView(family === 4 ? 'lb4_src_range_key' : 'lb6_src_range_key', key).u('rev_nat_index');
        if (scope && !scope.has(id)) continue;
        if (!want.has(`${family}:${key.toString('hex')}`)) doomed.push(Buffer.from(key));
      }
      for (const k of doomed) if (map.delete(k)) n++;
    }
    return n;
  }
}
