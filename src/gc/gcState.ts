// The GC's shared state: tsct_gc_state (the schedule and the agent's
// liveness, written by the agent only, read by the CLI through the pin) and
// tsct_gc_wake (written by the datapath only: when a table was found full).
import { BpfMap } from 'libbpf-ts';
import { StructView } from '../bpf/layouts';

export interface GcState {
  lastRunNs: bigint;
  nextRunNs: bigint;
  lastDurationNs: number;
  runs: number;
  lastScanned: number;
  lastDeleted: number;
  heartbeatNs: bigint;
  intervalS: number;
  agentPid: number;
}

const ZERO = Buffer.alloc(4);

export function readGcState(map: BpfMap): GcState {
  const v = new StructView('gc_state', map.lookup(ZERO) ?? Buffer.alloc(StructView.sizeOf('gc_state')));
  return {
    lastRunNs: v.u64('last_run_ns'),
    nextRunNs: v.u64('next_run_ns'),
    lastDurationNs: v.u('last_duration_ns'),
    runs: v.u('runs'),
    lastScanned: v.u('last_scanned'),
    lastDeleted: v.u('last_deleted'),
    heartbeatNs: v.u64('agent_heartbeat_ns'),
    intervalS: v.u('interval_s'),
    agentPid: v.u('agent_pid'),
  };
}

/** Writes the whole value: every field of it is the agent's. */
export function writeGcState(map: BpfMap, s: GcState): void {
  const v = StructView.alloc('gc_state');
  v.set('last_run_ns', s.lastRunNs)
    .set('next_run_ns', s.nextRunNs)
    .set('last_duration_ns', s.lastDurationNs)
    .set('runs', s.runs)
    .set('last_scanned', s.lastScanned)
    .set('last_deleted', s.lastDeleted)
    .set('agent_heartbeat_ns', s.heartbeatNs)
    .set('interval_s', s.intervalS)
    .set('agent_pid', s.agentPid);
  map.update(ZERO, v.buf);
}

/** When the datapath last found a table full (monotonic ns), asking for an early sweep. */
export function readGcWake(map: BpfMap): bigint {
  return map.lookup(ZERO)?.readBigUInt64LE() ?? 0n;
}

export function monotonicNs(): bigint {
  return process.hrtime.bigint();
}

/** Whether an agent wrote its heartbeat recently and its process still exists. */
export function agentAlive(s: GcState, now = monotonicNs()): boolean {
  if (!s.agentPid || now - s.heartbeatNs > 5_000_000_000n) return false;
  try {
    process.kill(s.agentPid, 0);
    return true;
  } catch {
    return false;
  }
}
