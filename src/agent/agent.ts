// `tsct agent`: loads the datapath over the pinned maps, attaches it to the
// devices, runs the garbage collection, and on SIGTERM or SIGINT leaves
// everything attached and pinned so that the datapath works on without it.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { ifindex as ifindexOf, isBpfError } from 'libbpf-ts';
import { Datapath, MasqueradeSpec } from '../datapath/datapath';
import { DEFAULT_BPFFS, ensureBpffs, isOnBpffs } from '../datapath/bpffs';
import { GcResult, gcSweep } from '../gc/gcSweep';
import { buildRegistry } from '../metrics/registry';
import { serveHttp } from './http';
import { GcSchedule } from '../gc/gcSchedule';
import { AgentOptions, UsageError } from './options';
import { Logger } from './log';
import { attachDevice, attachmentsOf, attachXdpFastPath, detachDevice, detachXdpFastPath } from './attach';
import { monotonicNs, readGcState, writeGcState } from './state';

const HEARTBEAT_MS = 1000;

/** Makes sure the pin folder exists on bpffs, mounting bpffs at its usual place when needed. */
export function preparePinRoot(root: string): void {
  if (root === DEFAULT_BPFFS || root.startsWith(DEFAULT_BPFFS + '/')) ensureBpffs(DEFAULT_BPFFS);
  try {
    fs.mkdirSync(root, { recursive: true });
  } catch (e) {
    throw new UsageError(`--bpf-root: cannot create ${root}: ${(e as NodeJS.ErrnoException).code}`);
  }
  if (!isOnBpffs(root)) {
    throw new UsageError(
      `--bpf-root: ${root} is not on a bpffs mount; pick a folder under ${DEFAULT_BPFFS}, or mount one there: mount -t bpf bpf ${root}`,
    );
  }
}

/** The device's primary global addresses (or those given), to masquerade to. */
export function masqueradeAddresses(dev: string, given: string[]): MasqueradeSpec {
  const spec: MasqueradeSpec = {
    snat4: given.find((a) => !a.includes(':')),
    snat6: given.find((a) => a.includes(':')),
  };
  if (spec.snat4 && spec.snat6) return spec;
  let info: Array<{ addr_info?: Array<{ family: string; local: string; scope: string }> }> = [];
  try {
    info = JSON.parse(
      execFileSync('ip', ['-j', 'addr', 'show', 'dev', dev], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
    );
  } catch {
    // Reported below as "no address".
  }
  const addrs = info.flatMap((i) => i.addr_info ?? []).filter((a) => a.scope === 'global');
  spec.snat4 ??= addrs.find((a) => a.family === 'inet')?.local;
  spec.snat6 ??= addrs.find((a) => a.family === 'inet6')?.local;
  if (!spec.snat4 && !spec.snat6)
    throw new UsageError(
      `--masquerade-devices: ${dev} has no global address to masquerade to; give one with --snat-ip`,
    );
  return spec;
}

export interface RunningAgent {
  datapath: Datapath;
  /** Stops the GC loop and closes handles; leaves programs attached and maps pinned. */
  stop(): void;
}

export async function startAgent(o: AgentOptions, log: Logger): Promise<RunningAgent> {
  if (process.getuid?.() !== 0)
    throw new UsageError(
      'the agent loads BPF programs and attaches them: run it as root (or with CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)',
    );
  const devices = o.devices.map((d) => {
    try {
      return { ...d, ifindex: ifindexOf(d.name) };
    } catch (e) {
      if (isBpfError(e, 'ENODEV'))
        throw new UsageError(`--devices: no interface named '${d.name}' here; 'ip link' lists the names`);
      throw e;
    }
  });
  // Everything that can be refused is checked before anything is created.
  const masquerade = new Map(o.masqueradeDevices.map((name) => [name, masqueradeAddresses(name, o.snatIps)]));
  preparePinRoot(o.bpfRoot);
  const dp = await Datapath.load({
    sizes: { ctTcp: o.ctTcpMax, ctAny: o.ctAnyMax, nat: o.natMax, events: o.eventsRingSize },
    config: {
      timeouts: o.timeouts,
      tcpLoose: o.tcpLoose,
      dropInvalid: o.dropInvalid,
      natPortMin: o.natPortMin,
      natPortMax: o.natPortMax,
      natRangeStrict: o.natRangeStrict,
      masqueradeAll: o.masqueradeCidrs.length === 0,
      events: o.events,
      fastPath: o.fastPath,
      fastPathNew: o.fastPathNew,
    },
    pinRoot: o.bpfRoot,
  });
  dp.setMasqueradeSources(o.masqueradeCidrs);
  log.info(
    `tables: tsct_ct4_global and tsct_ct6_global ${o.ctTcpMax} entries, tsct_ct_any4_global and tsct_ct_any6_global ${o.ctAnyMax} (${o.sizeReason})`,
  );
  const reused = dp.pins.filter((p) => p.action === 'reuse').length;
  if (reused) log.info(`reused ${reused} pinned maps under ${o.bpfRoot}`);
  for (const m of dp.migrations) {
    const step = dp.pins.find((p) => p.map === m.map)!;
    log.info(
      `resized ${m.map} from ${step.fromEntries} to ${step.toEntries} entries: moved ${m.moved} live entries${m.dropped ? `, ${m.dropped} did not fit` : ''}`,
    );
  }

  // Devices no longer configured: take our filters off them.
  const wanted = new Set(devices.map((d) => d.ifindex));
  for await (const [k] of dp.maps.tsct_devices.entries()) {
    const idx = k.readUInt32LE();
    if (!wanted.has(idx)) {
      detachDevice(idx);
      dp.removeDevice(idx);
      log.info(`detached from ifindex ${idx}, no longer in --devices`);
    }
  }
  for (const d of devices) {
    const masq = masquerade.get(d.name);
    // The device is marked as a redirect target only once its XDP program is in place.
    dp.setDevice(d.ifindex, d.zone, masq);
    attachDevice(dp.ingress, dp.egress, d.ifindex);
    if (o.xdpFastPath) {
      attachXdpFastPath(dp.xdp, d.ifindex, d.name);
      dp.setDevice(d.ifindex, d.zone, masq, true);
    } else if (detachXdpFastPath(d.ifindex)) {
      log.info(`detached the XDP fast path from ${d.name}: --bpf-xdp-fast-path is off`);
    }
    const tcFlows = o.fastPathNew ? 'all' : 'established';
    const paths = o.xdpFastPath
      ? `, forwarding from XDP, and ${tcFlows} flows from tc ingress`
      : o.fastPath
        ? `, ${tcFlows} flows forwarded from tc ingress`
        : '';
    log.info(
      `attached to ${d.name} (ifindex ${d.ifindex}, zone ${d.zone}) at tc ingress and egress${o.xdpFastPath ? ' and XDP' : ''}${paths}`,
    );
    if (masq) {
      log.info(
        `masquerading on ${d.name} to ${[masq.snat4, masq.snat6].filter(Boolean).join(' and ')}, ports ${o.natPortMin}-${o.natPortMax}, ` +
          `sources ${o.masqueradeCidrs.length ? o.masqueradeCidrs.join(', ') : "all but the device's own"}`,
      );
    }
  }

  const schedule = new GcSchedule({ fixedS: o.gcInterval, maxS: o.gcMaxInterval });
  const prev = readGcState(dp.maps.tsct_gc_state);
  let runs = prev.runs;
  let lastRunNs = prev.lastRunNs;
  let lastDurationNs = prev.lastDurationNs;
  let lastScanned = prev.lastScanned;
  let lastDeleted = prev.lastDeleted;
  let lastWake = prev.wakeNs;
  let nextRunNs = monotonicNs() + BigInt(schedule.intervalS) * 1_000_000_000n;
  let sweeping = false;
  let stopped = false;
  let lastGc: GcResult | null = null;

  const publish = () =>
    writeGcState(dp.maps.tsct_gc_state, {
      lastRunNs,
      nextRunNs,
      lastDurationNs,
      runs,
      lastScanned,
      lastDeleted,
      heartbeatNs: stopped ? 0n : monotonicNs(),
      intervalS: schedule.intervalS,
      agentPid: stopped ? 0 : process.pid,
    });

  const sizes: Record<string, number> = Object.fromEntries(
    (
      [
        'tsct_ct4_global',
        'tsct_ct_any4_global',
        'tsct_ct6_global',
        'tsct_ct_any6_global',
        'tsct_snat_v4_external',
        'tsct_snat_v6_external',
      ] as const
    ).map((m) => [m, dp.maps[m].maxEntries]),
  );
  const { registry, gcDuration } = buildRegistry({
    reasons: () => dp.metrics(),
    lastGc: () => lastGc,
    gcRuns: () => runs,
    gcIntervalS: () => schedule.intervalS,
    mapSizes: () => sizes,
  });

  const sweep = async (why: string) => {
    if (sweeping || stopped) return;
    sweeping = true;
    try {
      const r = await gcSweep(dp.gc);
      lastGc = r;
      gcDuration.observe({ status: 'completed' }, r.durationNs / 1e9);
      runs++;
      lastRunNs = monotonicNs();
      lastDurationNs = r.durationNs;
      lastScanned = r.scanned;
      lastDeleted = r.deleted;
      const interval = schedule.next(r.deleted, r.scanned);
      nextRunNs = lastRunNs + BigInt(interval) * 1_000_000_000n;
      log.info(
        `gc (${why}): scanned ${r.scanned}, deleted ${r.deleted}, kept ${r.alive}, NAT entries removed ${r.natDeleted} with their connection and ${r.natOrphans} orphaned` +
          `${r.natRecreated ? `, ${r.natRecreated} lost ones put back` : ''}, ` +
          `in ${(r.durationNs / 1e6).toFixed(1)} ms; next in ${interval}s`,
      );
      for (const t of r.tables) {
        if (t.scanned)
          log.debug(
            `gc ${t.map}: scanned ${t.scanned}, deleted ${t.deleted} ${JSON.stringify(t.deletedByState)}, kept ${t.alive} ${JSON.stringify(t.aliveByState)}`,
          );
      }
      publish();
    } catch (e) {
      log.error(`gc failed: ${(e as Error).message}`);
    } finally {
      sweeping = false;
    }
  };

  const tick = setInterval(() => {
    const s = readGcState(dp.maps.tsct_gc_state);
    if (s.wakeNs > lastWake) {
      lastWake = s.wakeNs;
      schedule.pressure();
      void sweep('a table was full');
    } else if (monotonicNs() >= nextRunNs) {
      void sweep('interval');
    } else {
      publish();
    }
  }, HEARTBEAT_MS);
  publish();

  let server: http.Server | null = null;
  if (o.prometheusServeAddr) {
    try {
      server = await serveHttp(o.prometheusServeAddr, registry, {
        attached: () => {
          const missing = devices.filter((d) => attachmentsOf(d.ifindex).length < 2).map((d) => d.name);
          return { ok: missing.length === 0, why: `not attached to ${missing.join(', ')}` };
        },
        gcRunning: () => {
          if (stopped) return { ok: false, why: 'the agent is stopping' };
          const late = monotonicNs() - nextRunNs > BigInt(schedule.intervalS + 10) * 1_000_000_000n;
          return { ok: !late, why: 'garbage collection is overdue' };
        },
      });
      log.info(`serving /metrics, /healthz and /readyz on ${o.prometheusServeAddr}`);
    } catch (e) {
      clearInterval(tick);
      dp.close();
      throw e;
    }
  }
  log.info(
    `gc: ${o.gcInterval ? `every ${o.gcInterval}s` : `adaptive, first in ${schedule.intervalS}s, at most every ${o.gcMaxInterval}s`}`,
  );

  return {
    datapath: dp,
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(tick);
      server?.close();
      publish();
      dp.close();
    },
  };
}
