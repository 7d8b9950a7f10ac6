// `tsct agent`: loads the datapath over the pinned maps, attaches it to the
// devices, runs the garbage collection, and on SIGTERM or SIGINT leaves
// everything attached and pinned so that the datapath works on without it.
// The phases, in order: check (everything that can be refused, before
// anything is touched), load and migrate, attach, serve, and the GC loop.
import { ifindex as ifindexOf, isBpfError } from 'libbpf-ts';
import { Datapath, MasqueradeSpec } from '../datapath/datapath';
import { attachDevice, attachXdpFastPath, detachDevice, detachXdpFastPath } from '../datapath/attach';
import { UsageError } from '../errors';
import { AgentOptions } from './options';
import { Logger } from './log';
import { AgentLock, lockBpfRoot } from './lock';
import { masqueradeAddresses, preparePinRoot } from './host';
import { describeGcLoop, startGcLoop, GcLoop } from './gcLoop';
import { startAgentHttp } from './http';
import { readServicesFile, startServicesFile, ServicesFileWatch } from './servicesFile';
import { PolicyFileWatch, policyCountsOf, readPolicyFile, startPolicyFile } from './policyFile';
import { K8sServices, loadKubeConfig, startK8sServices } from './k8sServices';
import { LbService } from '../lb/lbService';
import * as http from 'node:http';

export { masqueradeAddresses, preparePinRoot };

export interface RunningAgent {
  datapath: Datapath;
  /** Stops the GC loop and closes handles; leaves programs attached and maps pinned. */
  stop(): void;
}

interface CheckedDevice {
  name: string;
  zone: number;
  ifindex: number;
  masquerade?: MasqueradeSpec;
  /** Its own addresses, where it has any (full NAT translates to them). */
  own?: MasqueradeSpec;
}

function ownAddresses(dev: string): MasqueradeSpec | undefined {
  try {
    return masqueradeAddresses(dev, []);
  } catch {
    return undefined; // no global address: nothing to translate to
  }
}

/** Phase 1: what can be refused is refused here, before anything under --bpf-root is touched. */
function checkAgent(o: AgentOptions): CheckedDevice[] {
  if (process.getuid?.() !== 0) {
    throw new UsageError(
      'the agent loads BPF programs and attaches them: run it as root (or with CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)',
    );
  }
  return o.devices.map((d) => {
    let ifindex: number;
    try {
      ifindex = ifindexOf(d.name);
    } catch (e) {
      if (isBpfError(e, 'ENODEV')) {
        throw new UsageError(`--devices: no interface named '${d.name}' here; 'ip link' lists the names`);
      }
      throw e;
    }
    const masq = o.masqueradeDevices.includes(d.name) ? masqueradeAddresses(d.name, o.snatIps) : undefined;
    return { ...d, ifindex, masquerade: masq, own: masq ?? ownAddresses(d.name) };
  });
}

/** Phase 2: the datapath loaded over what is pinned (reused, or migrated to new sizes). */
async function loadDatapath(o: AgentOptions, log: Logger): Promise<Datapath> {
  preparePinRoot(o.bpfRoot);
  const dp = await Datapath.load({
    sizes: {
      ctTcp: o.ctTcpMax,
      ctAny: o.ctAnyMax,
      nat: o.natMax,
      events: o.eventsRingSize,
      lb: o.lbMapMax,
      lbAffinity: o.lbAffinityMapMax,
      lbMaglevSlots: o.lbMaglevSlots,
    },
    config: {
      timeouts: o.timeouts,
      tcpLoose: o.tcpLoose,
      dropInvalid: o.dropInvalid,
      ctFullPass: o.ctFullPass,
      natPortMin: o.natPortMin,
      natPortMax: o.natPortMax,
      natRangeStrict: o.natRangeStrict,
      masqueradeAll: o.masqueradeCidrs.length === 0,
      events: o.events,
      fastPath: o.fastPath,
      fastPathNew: o.fastPathNew,
      lb: o.lb,
      lbHashSeed: o.maglevHashSeed.jhash0,
    },
    pinRoot: o.bpfRoot,
  });
  dp.setMasqueradeSources(o.masqueradeCidrs);
  log.info(
    `tables: tsct_ct4_global and tsct_ct6_global ${o.ctTcpMax} entries, ` +
      `tsct_ct_any4_global and tsct_ct_any6_global ${o.ctAnyMax} (${o.sizeReason})`,
  );
  const reused = dp.pins.filter((p) => p.action === 'reuse').length;
  if (reused) log.info(`reused ${reused} pinned maps under ${o.bpfRoot}`);
  for (const m of dp.migrations) {
    const step = dp.pins.find((p) => p.map === m.map)!;
    log.info(
      `resized ${m.map} from ${step.fromEntries} to ${step.toEntries} entries: moved ${m.moved} live entries` +
        `${m.dropped ? `, ${m.dropped} did not fit` : ''}`,
    );
  }
  return dp;
}

/** Phase 3: the programs on every device, and off the devices no longer configured. */
async function attachDevices(dp: Datapath, o: AgentOptions, devices: CheckedDevice[], log: Logger): Promise<void> {
  const wanted = new Set(devices.map((d) => d.ifindex));
  for await (const [k] of dp.maps.tsct_devices.entries()) {
    const idx = k.readUInt32LE();
    if (!wanted.has(idx)) {
      detachDevice(idx);
      dp.removeDevice(idx);
      log.info(`detached from ifindex ${idx}, no longer in --devices`);
    }
  }
  const tcFlows = o.fastPathNew ? 'all' : 'established';
  const paths = o.xdpFastPath
    ? `, forwarding from XDP, and ${tcFlows} flows from tc ingress`
    : o.fastPath
      ? `, ${tcFlows} flows forwarded from tc ingress`
      : '';
  for (const d of devices) {
    // The device is marked as a redirect target only once its XDP program is in place.
    dp.setDevice(d.ifindex, d.zone, d.masquerade, false, d.own);
    attachDevice(dp.ingress, dp.egress, d.ifindex);
    if (o.xdpFastPath) {
      attachXdpFastPath(dp.xdp, d.ifindex, d.name);
      dp.setDevice(d.ifindex, d.zone, d.masquerade, true, d.own);
    } else if (detachXdpFastPath(d.ifindex)) {
      log.info(`detached the XDP fast path from ${d.name}: --bpf-xdp-fast-path is off`);
    }
    log.info(
      `attached to ${d.name} (ifindex ${d.ifindex}, zone ${d.zone}) at tc ingress and egress` +
        `${o.xdpFastPath ? ' and XDP' : ''}${paths}`,
    );
    if (d.masquerade) {
      const to = [d.masquerade.snat4, d.masquerade.snat6].filter(Boolean).join(' and ');
      const from = o.masqueradeCidrs.length ? o.masqueradeCidrs.join(', ') : "all but the device's own";
      log.info(`masquerading on ${d.name} to ${to}, ports ${o.natPortMin}-${o.natPortMax}, sources ${from}`);
    }
  }
}

export async function startAgent(o: AgentOptions, log: Logger): Promise<RunningAgent> {
  const devices = checkAgent(o);
  const services: LbService[] | null = o.servicesFile ? readServicesFile(o.servicesFile) : null;
  const policy = o.policyFile ? readPolicyFile(o.policyFile) : null;
  // Kubernetes: the kubeconfig is read and checked here; the API server is not asked yet.
  const k8sConn = o.k8s ? await loadKubeConfig(o.k8s.kubeconfigPath) : null;
  // One agent per bpf-root: a second one is refused before it changes anything.
  const lock: AgentLock = lockBpfRoot(o.bpfRoot);
  let dp: Datapath | null = null;
  let gc: GcLoop | null = null;
  let server: http.Server | null = null;
  let servicesWatch: ServicesFileWatch | null = null;
  let policyWatch: PolicyFileWatch | null = null;
  let k8s: K8sServices | null = null;
  try {
    dp = await loadDatapath(o, log);
    if (services) servicesWatch = await startServicesFile(dp, o, services, log);
    // Before the devices are attached: their first packets meet the rules.
    if (policy) policyWatch = await startPolicyFile(dp, o.bpfRoot, policy, log);
    if (k8sConn) k8s = await startK8sServices(dp, o, k8sConn, log);
    await attachDevices(dp, o, devices, log);
    gc = startGcLoop(dp, o, log);
    if (o.prometheusServeAddr) {
      server = await startAgentHttp(
        o.prometheusServeAddr,
        dp,
        gc,
        devices,
        k8s?.lbStatus ?? servicesWatch?.lbStatus,
        k8s ?? undefined,
        policyCountsOf(dp, o.bpfRoot),
      );
      log.info(`serving /metrics, /healthz and /readyz on ${o.prometheusServeAddr}`);
    }
    log.info(describeGcLoop(o, gc));
  } catch (e) {
    servicesWatch?.stop();
    policyWatch?.stop();
    void k8s?.stop();
    gc?.stop();
    dp?.close();
    lock.release();
    throw e;
  }
  const running = dp;
  const loop = gc;
  let stopped = false;
  return {
    datapath: running,
    stop() {
      if (stopped) return;
      stopped = true;
      loop.stop();
      servicesWatch?.stop();
      policyWatch?.stop();
      void k8s?.stop();
      server?.close();
      running.close();
      lock.release();
    },
  };
}
