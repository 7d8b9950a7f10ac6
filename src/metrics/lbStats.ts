// The load balancer's counters and gauges, read from its maps at scrape time:
// per-service packets, bytes and connections (tsct_lb_stats, per CPU), and
// backends by state (tsct_lb_backends).
import { BpfMap } from 'libbpf-ts';
import { ENUMS, StructView, fieldOffset } from '../bpf/layouts';

export interface LbServiceStats {
  id: number;
  packets: number;
  bytes: number;
  connections: number;
}

// A scrape reads every slot of two 64k-entry arrays (one per CPU for the
// stats), so the loops below index the chunk's packed values directly rather
// than allocate a view per slot and CPU: that garbage is what pushed scrapes
// past a second when the metrics test ran under CI load.
const PACKETS = fieldOffset('lb_stats', 'packets');
const BYTES = fieldOffset('lb_stats', 'bytes');
const CONNECTIONS = fieldOffset('lb_stats', 'connections');
const STATE = fieldOffset('lb_backend', 'state');

/** The services with any traffic, summed over CPUs. */
export async function readLbStats(map: BpfMap): Promise<LbServiceStats[]> {
  const out: LbServiceStats[] = [];
  const cpuStride = (StructView.sizeOf('lb_stats') + 7) & ~7;
  for await (const chunk of map.batches({ chunkSize: 8192 })) {
    const v = chunk.values;
    const cpus = chunk.valueStride / cpuStride;
    for (let i = 0; i < chunk.count; i++) {
      let packets = 0;
      let bytes = 0;
      let connections = 0;
      for (let c = 0, at = i * chunk.valueStride; c < cpus; c++, at += cpuStride) {
        packets += Number(v.readBigUInt64LE(at + PACKETS));
        bytes += Number(v.readBigUInt64LE(at + BYTES));
        connections += Number(v.readBigUInt64LE(at + CONNECTIONS));
      }
      if (packets || connections)
        out.push({ id: chunk.keys.readUInt32LE(i * chunk.keySize), packets, bytes, connections });
    }
  }
  return out;
}

const STATE_NAMES: Record<number, string> = {
  [ENUMS.lb_backend_state.LB_BE_ACTIVE]: 'active',
  [ENUMS.lb_backend_state.LB_BE_TERMINATING]: 'terminating',
  [ENUMS.lb_backend_state.LB_BE_QUARANTINED]: 'quarantined',
  [ENUMS.lb_backend_state.LB_BE_MAINTENANCE]: 'maintenance',
};

/** How many backends are in each state. */
export async function readBackendStates(map: BpfMap): Promise<Record<string, number>> {
  const out: Record<string, number> = { active: 0, terminating: 0, quarantined: 0, maintenance: 0 };
  for await (const chunk of map.batches({ chunkSize: 16384 })) {
    for (let i = 0; i < chunk.count; i++) {
      const name = STATE_NAMES[chunk.values[i * chunk.valueStride + STATE]];
      if (name) out[name]++;
    }
  }
  return out;
}
