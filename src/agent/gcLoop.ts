// The agent's GC loop: sweeps on an adaptive interval (or early, when the
// datapath found a table full), and publishes the schedule and a heartbeat
// in tsct_gc_state for `tsct status`.
import { Datapath } from '../datapath/datapath';
import { GcSchedule } from '../gc/gcSchedule';
import { GcResult, gcSweep } from '../gc/gcSweep';
import { GcState, monotonicNs, readGcState, readGcWake, writeGcState } from '../gc/gcState';
import { AgentOptions } from './options';
import { Logger } from './log';

const HEARTBEAT_MS = 1000;
const NS_PER_S = 1_000_000_000n;

export interface GcLoop {
  schedule: GcSchedule;
  /** The last sweep's result, null before the first. */
  lastGc(): GcResult | null;
  runs(): number;
  /** Called with each completed sweep's duration (the metrics' histogram). */
  onSweep?: (r: GcResult) => void;
  /** Whether a sweep is overdue (readiness). */
  overdue(): boolean;
  stop(): void;
}

function logSweep(log: Logger, why: string, r: GcResult, interval: number): void {
  log.info(
    `gc (${why}): scanned ${r.scanned}, deleted ${r.deleted}, kept ${r.alive}, ` +
      `NAT entries removed ${r.natDeleted} with their connection and ${r.natOrphans} orphaned` +
      `${r.natRecreated ? `, ${r.natRecreated} lost ones put back` : ''}, ` +
      `in ${(r.durationNs / 1e6).toFixed(1)} ms; next in ${interval}s`,
  );
  for (const t of r.tables) {
    if (!t.scanned) continue;
    log.debug(
      `gc ${t.map}: scanned ${t.scanned}, deleted ${t.deleted} ${JSON.stringify(t.deletedByState)}, ` +
        `kept ${t.alive} ${JSON.stringify(t.aliveByState)}`,
    );
  }
}

export function startGcLoop(dp: Datapath, o: AgentOptions, log: Logger): GcLoop {
  const schedule = new GcSchedule({ fixedS: o.gcInterval, maxS: o.gcMaxInterval });
  // What an earlier agent published carries over: the run count, the last run.
  const state: GcState = { ...readGcState(dp.maps.tsct_gc_state), intervalS: schedule.intervalS };
  state.nextRunNs = monotonicNs() + BigInt(schedule.intervalS) * NS_PER_S;
  let lastWake = readGcWake(dp.maps.tsct_gc_wake);
  let lastGc: GcResult | null = null;
  let sweeping = false;
  let stopped = false;

  const publish = () =>
    writeGcState(dp.maps.tsct_gc_state, {
      ...state,
      intervalS: schedule.intervalS,
      heartbeatNs: stopped ? 0n : monotonicNs(),
      agentPid: stopped ? 0 : process.pid,
    });

  const loop: GcLoop = {
    schedule,
    lastGc: () => lastGc,
    runs: () => state.runs,
    overdue: () => monotonicNs() - state.nextRunNs > BigInt(schedule.intervalS + 10) * NS_PER_S,
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(tick);
      publish();
    },
  };

  const sweep = async (why: string) => {
    if (sweeping || stopped) return;
    sweeping = true;
    try {
      const r = await gcSweep(dp.gc);
      lastGc = r;
      loop.onSweep?.(r);
      state.runs++;
      state.lastRunNs = monotonicNs();
      state.lastDurationNs = r.durationNs;
      state.lastScanned = r.scanned;
      state.lastDeleted = r.deleted;
      const interval = schedule.next(r.deleted, r.scanned);
      state.nextRunNs = state.lastRunNs + BigInt(interval) * NS_PER_S;
      logSweep(log, why, r, interval);
      publish();
    } catch (e) {
      log.error(`gc failed: ${(e as Error).message}`);
    } finally {
      sweeping = false;
    }
  };

  const tick = setInterval(() => {
    const wake = readGcWake(dp.maps.tsct_gc_wake);
    if (wake > lastWake) {
      lastWake = wake;
      schedule.pressure();
      void sweep('a table was full');
    } else if (monotonicNs() >= state.nextRunNs) {
      void sweep('interval');
    } else {
      publish();
    }
  }, HEARTBEAT_MS);
  publish();
  return loop;
}

/** The agent's last start-up line (the lab waits for it). */
export function describeGcLoop(o: AgentOptions, loop: GcLoop): string {
  const every = o.gcInterval
    ? `every ${o.gcInterval}s`
    : `adaptive, first in ${loop.schedule.intervalS}s, at most every ${o.gcMaxInterval}s`;
  return `gc: ${every}`;
}
