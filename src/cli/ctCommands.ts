// `tsct bpf ct list global` and `tsct bpf ct flush global`.
import { CtFilterOptions, parseCtFilter } from '../ct/ctFilter';
import { forEachCt, openCtTables } from '../ct/ctTables';
import { formatCilium, formatConntrack, ServiceAddr, toJson } from '../ct/ctFormat';
import { StructView } from '../bpf/layouts';
import { formatAddr } from '../net/addr';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UsageError } from '../errors';
import { monotonicNs } from '../gc/gcState';
import { LineWriter } from './output';
import { CtEntry, CtFlag } from '../ct/ctEntry';
import { natKeysOf } from '../nat/natEntry';
import { openNatMaps } from './natCommands';
import { RingBuffer } from 'libbpf-ts';
import { decodeEvent, eventToJson, formatEvent } from '../ct/ctEvents';
import { readMetrics, reasonTotal } from '../metrics/reasons';
import { openPinnedMap } from '../ct/ctTables';

export interface ListOptions extends CtFilterOptions {
  bpfRoot: string;
  output?: string;
  count?: boolean;
}

export async function ctList(o: ListOptions): Promise<void> {
  const format = o.output ?? 'cilium';
  if (!['cilium', 'json', 'conntrack'].includes(format))
    throw new UsageError(
      `-o: '${format}' is not an output format; use json, conntrack, or leave it out for Cilium's format`,
    );
  const filter = parseCtFilter(o);
  const tables = openCtTables(o.bpfRoot);
  const out = new LineWriter();
  const now = Number(monotonicNs());
  let n = 0;
  try {
    // conntrack shows one line per connection, with what the client dialled as
    // the original destination: a load-balanced connection's service address.
    const services = format === 'conntrack' ? readServiceAddrs(o.bpfRoot) : new Map<number, ServiceAddr>();
    const render =
      format === 'json'
        ? (e: CtEntry) => JSON.stringify(toJson(e, now))
        : format === 'conntrack'
          ? (e: CtEntry) => formatConntrack(e, now, e.flags & CtFlag.CT_F_DNAT ? services.get(e.revNatIndex) : null)
          : formatCilium;
    await forEachCt(
      tables,
      (entry) => {
        if (!filter(entry)) return;
        if (format === 'conntrack' && entry.flags & CtFlag.CT_F_SERVICE) return;
        n++;
        if (!o.count) out.line(render(entry));
      },
      () => out.gone,
    );
    if (o.count) out.line(String(n));
    out.flush();
  } finally {
    for (const t of tables) t.map.close();
  }
}

/** Service id -> its address and port (tsct_lb_reverse_nat); empty when no services were ever pinned. */
function readServiceAddrs(root: string): Map<number, ServiceAddr> {
  const out = new Map<number, ServiceAddr>();
  if (!fs.existsSync(path.join(root, 'tsct_lb_reverse_nat'))) return out;
  const m = openPinnedMap(root, 'tsct_lb_reverse_nat');
  try {
    const key = Buffer.alloc(4);
    const value = Buffer.alloc(m.valueStride);
    for (let id = 1; id < m.maxEntries; id++) {
      key.writeUInt32LE(id);
      if (!m.lookupInto(key, value)) continue;
      const v = new StructView('lb_reverse_nat', value);
      const family = v.u('family');
      if (family !== 4 && family !== 6) continue;
      out.set(id, {
        addr: formatAddr(v.bytes('addr').subarray(0, family === 4 ? 4 : 16)),
        port: v.bytes('port').readUInt16BE(),
      });
    }
  } finally {
    m.close();
  }
  return out;
}

/** Deletes the matching connections and, with them, their NAT entries. */
export async function ctFlush(o: ListOptions): Promise<void> {
  const filter = parseCtFilter(o);
  const tables = openCtTables(o.bpfRoot);
  const [nat4, nat6] = openNatMaps(o.bpfRoot);
  const nat = { 4: nat4.map, 6: nat6.map };
  try {
    let deleted = 0;
    let natDeleted = 0;
    for (const table of tables) {
      const doomed: Array<[Buffer, Buffer[]]> = [];
      await forEachCt([table], (e, _t, keys, at) => {
        if (filter(e)) doomed.push([Buffer.from(keys.subarray(at, at + table.map.keySize)), natKeysOf(e)]);
      });
      for (const [k, natKeys] of doomed) {
        if (table.map.delete(k)) deleted++;
        for (const nk of natKeys) if (nat[table.family].delete(nk)) natDeleted++;
      }
    }
    process.stdout.write(
      `flushed ${deleted} connection${deleted === 1 ? '' : 's'}${natDeleted ? ` and ${natDeleted} NAT entries` : ''}\n`,
    );
  } finally {
    for (const t of tables) t.map.close();
    nat[4].close();
    nat[6].close();
  }
}

/** A reader's lease on the event ring: long enough to outlast a stalled terminal, renewed every second. */
const EVENT_LEASE_NS = 10_000_000_000n;
const EVENT_LEASE_RENEW_NS = 1_000_000_000n;
const EVENT_CLOCK_SLACK_NS = 20_000_000n;

/** `tsct bpf ct events`: connection events as they happen, until interrupted or --max-events. */
export async function ctEvents(o: { bpfRoot: string; output?: string; maxEvents?: string }): Promise<void> {
  const format = o.output ?? 'conntrack';
  if (!['conntrack', 'json'].includes(format))
    throw new UsageError(`-o: '${format}' is not an output format; use json, or leave it out for conntrack -E's`);
  const max = o.maxEvents === undefined ? Infinity : Number(o.maxEvents);
  if (!(max > 0) || !Number.isInteger(max === Infinity ? 1 : max))
    throw new UsageError(`--max-events: '${o.maxEvents}' is not a positive whole number`);
  const ring = openPinnedMap(o.bpfRoot, 'tsct_events');
  const metrics = openPinnedMap(o.bpfRoot, 'tsct_metrics');
  const reader = openPinnedMap(o.bpfRoot, 'tsct_events_reader');
  // The datapath writes events only while a reader holds a lease; what an
  // earlier reader left in the ring (up to a lease after it stopped) is not
  // this one's to print. The datapath stamps events with the coarse clock,
  // up to a tick behind.
  const since = Number(monotonicNs() - EVENT_CLOCK_SLACK_NS);
  let renewed = 0n;
  const renewLease = () => {
    const now = monotonicNs();
    if (now - renewed < EVENT_LEASE_RENEW_NS) return;
    const until = Buffer.alloc(8);
    until.writeBigUInt64LE(now + EVENT_LEASE_NS);
    reader.update(Buffer.alloc(4), until);
    renewed = now;
  };
  renewLease();
  const rb = RingBuffer.open(ring);
  const lostSoFar = () => reasonTotal(readMetrics(metrics), 'EVENT_LOST');
  let lost = lostSoFar();
  let seen = 0;
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const out = (line: string) => process.stdout.write(line + '\n');
  try {
    while (!stop.signal.aborted && seen < max) {
      renewLease();
      const samples = await rb.poll(200);
      const nowLost = lostSoFar();
      if (nowLost > lost) {
        out(
          format === 'json'
            ? JSON.stringify({ type: 'LOST', count: nowLost - lost })
            : `   [LOST] ${nowLost - lost} events lost: the ring buffer was full (--bpf-events-ring-size)`,
        );
        lost = nowLost;
      }
      for (const s of samples) {
        const ev = decodeEvent(s);
        if (ev.tsNs < since) continue;
        out(format === 'json' ? JSON.stringify(eventToJson(ev)) : formatEvent(ev));
        if (++seen >= max) break;
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    rb.close();
    ring.close();
    metrics.close();
    reader.close();
  }
}
