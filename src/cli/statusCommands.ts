// `tsct status` and `tsct uninstall`: both read what the agent left on bpffs.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BpfMap, ifname } from 'libbpf-ts';
import { MAP_NAMES, PROGRAM_PINS } from '../datapath/tables';
import { removePins } from '../datapath/pins';
import { openPinnedMap } from '../ct/ctTables';
import { StructView } from '../bpf/layouts';
import { agentAlive, monotonicNs, readGcState } from '../gc/gcState';
import { attachmentsOf, detachDevice } from '../datapath/attach';

async function countEntries(m: BpfMap): Promise<number> {
  let n = 0;
  for await (const chunk of m.batches({ chunkSize: 16384 })) n += chunk.count;
  return n;
}

const ago = (ns: bigint, now: bigint) => (ns ? `${(Number(now - ns) / 1e9) | 0}s ago` : 'never');

export async function status(o: { bpfRoot: string; output?: string }): Promise<void> {
  const devicesMap = openPinnedMap(o.bpfRoot, 'tsct_devices');
  const gcMap = openPinnedMap(o.bpfRoot, 'tsct_gc_state');
  const now = monotonicNs();
  try {
    const gc = readGcState(gcMap);
    const alive = agentAlive(gc, now);
    const devices: Array<Record<string, unknown>> = [];
    for await (const [k, v] of devicesMap.entries()) {
      const ifindex = k.readUInt32LE();
      devices.push({
        name: ifname(ifindex) ?? '(gone)',
        ifindex,
        zone: new StructView('device_info', v).u('zone'),
        attached: attachmentsOf(ifindex).map((a) => ({ point: a.point, program: a.progName, progId: a.progId })),
      });
    }
    const maps: Array<Record<string, unknown>> = [];
    for (const name of MAP_NAMES) {
      const p = path.join(o.bpfRoot, name);
      if (!fs.existsSync(p)) continue;
      const m = BpfMap.openPinned(p);
      try {
        const info = m.info();
        const isTable = /^tsct_(ct|ct_any)[46]_global$|^tsct_frag[46]$|^tsct_snat_v[46]_external$/.test(name);
        const entries = isTable ? await countEntries(m) : null;
        maps.push({
          name,
          type: info.typeName,
          maxEntries: info.maxEntries,
          entries,
          pressure: entries === null ? null : entries / info.maxEntries,
        });
      } finally {
        m.close();
      }
    }
    const report = {
      bpfRoot: o.bpfRoot,
      agent: { running: alive, pid: alive ? gc.agentPid : null, lastHeartbeat: ago(gc.heartbeatNs, now) },
      devices,
      maps,
      gc: {
        runs: gc.runs,
        lastRun: ago(gc.lastRunNs, now),
        lastScanned: gc.lastScanned,
        lastDeleted: gc.lastDeleted,
        lastDurationMs: gc.lastDurationNs / 1e6,
        intervalS: gc.intervalS,
        nextRunInS: alive && gc.nextRunNs > now ? Number((gc.nextRunNs - now) / 1_000_000_000n) : null,
      },
    };
    if (o.output === 'json') {
      process.stdout.write(JSON.stringify(report) + '\n');
      return;
    }
    const lines = [
      `agent:   ${alive ? `running (pid ${gc.agentPid})` : `not running (last heartbeat ${report.agent.lastHeartbeat}); the datapath keeps working with what is attached`}`,
      `bpf-root: ${o.bpfRoot}`,
      'devices:',
      ...devices.map(
        (d) =>
          `  ${d.name} (ifindex ${d.ifindex}, zone ${d.zone}): ${
            (d.attached as Array<{ point: string; program: string; progId: number }>)
              .map((a) => `${a.point} ${a.program} (prog ${a.progId})`)
              .join(', ') || 'nothing attached'
          }`,
      ),
      'maps:',
      ...maps.map(
        (m) =>
          `  ${String(m.name).padEnd(22)} ${String(m.type).padEnd(13)} ${
            m.type === 'ringbuf'
              ? `${m.maxEntries} bytes`
              : m.entries === null
                ? `${m.maxEntries} entries`
                : `${m.entries}/${m.maxEntries} entries, pressure ${(m.pressure as number).toFixed(3)}`
          }`,
      ),
      `gc:      ${gc.runs} runs; last ${report.gc.lastRun} (scanned ${gc.lastScanned}, deleted ${gc.lastDeleted}, ${report.gc.lastDurationMs.toFixed(1)} ms); ` +
        `interval ${gc.intervalS}s; next ${report.gc.nextRunInS === null ? 'when the agent runs' : `in ${report.gc.nextRunInS}s`}`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    devicesMap.close();
    gcMap.close();
  }
}

export async function uninstall(o: { bpfRoot: string }): Promise<void> {
  const devicesMap = openPinnedMap(o.bpfRoot, 'tsct_devices');
  let detached = 0;
  try {
    for await (const [k] of devicesMap.entries()) detached += detachDevice(k.readUInt32LE());
  } finally {
    devicesMap.close();
  }
  const removed = removePins(o.bpfRoot, [...MAP_NAMES, ...PROGRAM_PINS]);
  process.stdout.write(
    `detached ${detached} program${detached === 1 ? '' : 's'}, removed ${removed.length} pins under ${o.bpfRoot}\n`,
  );
}
