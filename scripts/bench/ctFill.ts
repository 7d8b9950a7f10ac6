// Filling a connection table with synthetic entries for the gc and list
// benchmarks: distinct IPv4 TCP connections, a share of them already expired.
import { BpfMap } from 'libbpf-ts';
import { StructView } from '../../src/bpf/layouts';
import { CtFlag, TcpState } from '../../src/ct/ctEntry';

/** Writes n entries; every `expiredEvery`-th one expired at nowNs. */
export async function fillCt4(map: BpfMap, n: number, nowNs: bigint, expiredEvery = 2): Promise<void> {
  const chunk = 65536;
  const key = StructView.alloc('ct4_key');
  const val = StructView.alloc('ct_entry');
  for (let base = 0; base < n; base += chunk) {
    const count = Math.min(chunk, n - base);
    const keys = Buffer.alloc(count * key.buf.length);
    const values = Buffer.alloc(count * val.buf.length);
    for (let i = 0; i < count; i++) {
      const id = base + i;
      key.buf.fill(0);
      key.bytes('addr_a').writeUInt32BE(((10 << 24) | (200 << 16) | (id >>> 12)) >>> 0);
      key.bytes('addr_b').writeUInt32BE((10 << 24) | (201 << 16) | 1);
      key.bytes('port_a').writeUInt16BE(1024 + (id & 0xfff));
      key.bytes('port_b').writeUInt16BE(443);
      key.set('proto', 6);
      key.buf.copy(keys, i * key.buf.length);
      val.buf.fill(0);
      const expired = id % expiredEvery === 0;
      val
        .set('created_ns', nowNs - 60_000_000_000n)
        .set('last_seen_ns', nowNs - 1_000_000_000n)
        .set('expires_ns', expired ? nowNs - 1_000_000n : nowNs + 3_600_000_000_000n)
        .set('packets', 10, 0)
        .set('packets', 9, 1)
        .set('bytes', 5000, 0)
        .set('bytes', 4000, 1)
        .set('flags', CtFlag.CT_F_SEEN_REPLY | CtFlag.CT_F_ASSURED | CtFlag.CT_F_SEEN_NON_SYN)
        .set('tcp_state', TcpState.TCP_CT_ESTABLISHED)
        .set('tcp_flags_seen', 0x1b, 0)
        .set('tcp_flags_seen', 0x1b, 1)
        .set('ifindex', 2);
      val.buf.copy(values, i * val.buf.length);
    }
    await map.updateBatch(keys, values);
  }
}
