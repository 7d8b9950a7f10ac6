// The load balancer's counters and gauges, read from its maps at scrape time:
// per-service packets, bytes and connections (tsct_lb_stats, per CPU), and
// backends by state (tsct_lb_backends).
import { BpfMap } from 'libbpf-ts';
import { ENUMS, StructView } from '../bpf/layouts';

export interface LbServiceStats {
  id: number;
  packets: number;
  bytes: number;
  connections: number;
}

/** The services with any traffic, summed over CPUs. */
export async function readLbStats(map: BpfMap): Promise<LbServiceStats[]> {
  const out: LbServiceStats[] = [];
  for await (const chunk of map.batches({ chunkSize: 8192 })) {
    for (let i = 0; i < chunk.count; i++) {
      let packets = 0;
      let bytes = 0;
      let connections = 0;
      for (const v of chunk.valuePerCpu(i)) {
        const s = new StructView('lb_stats', v);
        packets += s.u('packets');
        bytes += s.u('bytes');
        connections += s.u('connections');
      }
      if (packets || connections) out.push({ id: chunk.key(i).readUInt32LE(), packets, bytes, connections });
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
      const name = STATE_NAMES[new StructView('lb_backend', chunk.value(i)).u('state')];
      if (name) out[name]++;
    }
  }
  return out;
}
