// The agent's Kubernetes Services: what kube-proxy does on a node, programmed into the load balancer. Informers
// (src/k8s/informers.ts) keep Services, EndpointSlices and this node's Node object; each event goes to the
// translator (ServiceTranslator, src/k8s/serviceTranslate.ts), which translates again only the services it touches,
// and those are applied through the writer's applyChanges, which writes only their entries. An apply starts at
// once when none is running (no debounce); the events that arrive while one runs are folded into the next. The
// first apply, and one after an apply that failed, translate and write everything (LbWriter.apply). Nothing is
// applied before all three informers have listed once: an agent that starts while the API server is away leaves
// the datapath the maps hold as it is, and so does one that loses the API server later, until its watches are back
// (then a relist, if the server's history was lost, brings it up to date).
//
// Service ids: a frontend keeps its id while it is wanted; after a restart each frontend takes the id the maps hold
// for it (ServiceIdMap, restored from the writer), so an unchanged cluster rewrites nothing.
//
// Health check node ports (LoadBalancer services of externalTrafficPolicy Local) are served by
// src/k8s/healthCheckServer.ts on the NodePort addresses, synced after each apply: a count the datapath does not
// hold yet is never announced. An apply that fails makes them all answer 503 (serviceProxyHealthy false) until one
// succeeds, as kube-proxy's do while it cannot sync. They close when the agent stops.
//
// Started like the services file, before the devices are attached, but not waited for: the first sync is logged
// ('kubernetes: synced ...') and makes ready() true. An API server that does not answer is reported in one line at
// its first failure, and once more when it answers again; the informers retry with backoff (1 s to 30 s) for as
// long as the agent runs (kube-proxy, too, waits for its API server rather than exit).
import { Counter, Gauge, Histogram, Metric } from 'prom-client';
import { Datapath } from '../datapath/datapath';
import { LB_MAPS } from '../datapath/tables';
import { frontendText, LbService } from '../lb/lbService';
import { LbMaps, LbWriter, lbTouched } from '../lb/lbWriter';
import {
  describeK8sError,
  K8S_RESOURCES,
  K8sConnection,
  K8sInformers,
  K8sResource,
  startK8sInformers,
} from '../k8s/informers';
import { HealthCheckServers } from '../k8s/healthCheckServer';
import {
  K8sEndpointSlice,
  K8sNode,
  K8sService,
  KeyedService,
  ServiceIdMap,
  ServiceTranslator,
} from '../k8s/serviceTranslate';
import type { LbStatus } from './http';
import { Logger } from './log';
import { AgentOptions } from './options';

export { loadKubeConfig } from '../k8s/informers';

/** Warnings logged per translation at most; the rest are counted. */
const MAX_WARNINGS_LOGGED = 20;
/** Frontends named per kind of change in the log line. */
const MAX_NAMED = 5;

export interface K8sServicesStatus {
  synced: boolean;
  restarts: Record<K8sResource, number>;
  applies: number;
  /** Milliseconds from the first event of the last apply to its write. */
  lastSyncMs: number | null;
}

export interface K8sServices {
  /** The first full sync of all three informers is applied. */
  ready(): boolean;
  status(): K8sServicesStatus;
  /** Names by service id and table rebuilds, for /metrics (startAgentHttp). */
  lbStatus: LbStatus;
  /** tsct_k8s_* metrics (not registered: for a registry to take). */
  metrics: Metric[];
  stop(): Promise<void>;
}

function named(list: string[]): string {
  const shown = list.slice(0, MAX_NAMED).join(', ');
  return list.length > MAX_NAMED ? `${shown} and ${list.length - MAX_NAMED} more` : shown;
}

export async function startK8sServices(
  dp: Datapath,
  o: AgentOptions,
  conn: K8sConnection,
  log: Logger,
): Promise<K8sServices> {
  const k8s = o.k8s!;
  const maps = Object.fromEntries(LB_MAPS.map((m) => [m, dp.maps[m]])) as unknown as LbMaps;
  const writer = await LbWriter.restore(maps, {
    maglevTableSize: o.maglevTableSize,
    hashSeed: o.maglevHashSeed.murmur,
  });
  const restored = writer.lbState();
  const ids = new ServiceIdMap(restored.map((s) => ({ id: s.id, frontend: s.frontend })));
  const lbStatus: LbStatus = { names: new Map(), tablesRebuilt: 0 };
  /** Whether the last apply went through: the health checks' serviceProxyHealthy. */
  let lastApplyOk = true;
  const healthChecks = new HealthCheckServers({ healthy: () => lastApplyOk });
  /** Health check ports that could not be bound at the last sync, for the metric. */
  let healthFailures = 0;

  const syncLatency = new Histogram({
    name: 'tsct_k8s_sync_latency_seconds',
    help: 'Seconds from a Kubernetes event to the load balancer maps written for it',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [],
  });
  let informers: K8sInformers | null = null;
  const restarts = new Counter({
    name: 'tsct_k8s_informer_restarts_total',
    help: 'Informers started again after an error, by resource',
    labelNames: ['resource'],
    registers: [],
    collect() {
      this.reset();
      for (const i of informers?.all ?? []) this.inc({ resource: i.resource }, i.restarts);
    },
  });
  const healthGauge = new Gauge({
    name: 'tsct_k8s_health_check_node_ports',
    help:
      'Health check node ports (LoadBalancer services of externalTrafficPolicy Local) by state: serving, or ' +
      'failed (the port could not be bound; tried again at the next change)',
    labelNames: ['state'],
    registers: [],
    collect() {
      this.set({ state: 'serving' }, healthChecks.serving().length);
      this.set({ state: 'failed' }, healthFailures);
    },
  });
  const syncedGauge = new Gauge({
    name: 'tsct_k8s_synced',
    help: 'Whether the Services, EndpointSlices and Node have been listed and applied once (1) or not yet (0)',
    registers: [],
    collect() {
      this.set(firstApplied ? 1 : 0);
    },
  });

  let firstApplied = false;
  let stopped = false;
  let applies = 0;
  let lastSyncMs: number | null = null;
  /** When the first event not yet applied arrived. */
  let firstEventAt: number | null = null;
  let pending: NodeJS.Immediate | null = null;
  let applying = false;
  let again = false;
  /** The next apply writes everything (the first one, and the one after an apply that failed). */
  let needFull = true;
  let nodeSeen = false;
  /** Frontends left out for want of an id, by service. */
  let leftOut = new Map<string, string[]>();
  const translator = new ServiceTranslator({
    nodeName: k8s.nodeName,
    nodePortAddresses: k8s.nodePortAddresses,
    serviceProxyName: k8s.serviceProxyName,
  });
  const allSynced = () => informers !== null && informers.all.every((i) => i.synced);

  /** A logger of warnings that says each once for as long as it stays among the warnings it is given. */
  const warner = (more: string) => {
    let warned = new Set<string>();
    return (warnings: string[]) => {
      const fresh = warnings.filter((w) => !warned.has(w));
      warned = new Set(warnings);
      for (const w of fresh.slice(0, MAX_WARNINGS_LOGGED)) log.warn(`kubernetes: ${w}`);
      if (fresh.length > MAX_WARNINGS_LOGGED) {
        log.warn(`kubernetes: and ${fresh.length - MAX_WARNINGS_LOGGED} more ${more}`);
      }
    };
  };
  const warnNew = warner('objects left out');
  const warnHealth = warner('health check node ports not served');

  /**
   * One apply: the services the events since the last one touched, translated again and written (only theirs:
   * writer.applyChanges). The first apply, and the one after an apply that failed, write everything (apply).
   */
  const applyNow = async () => {
    const since = firstEventAt;
    firstEventAt = null;
    const full = needFull;
    if (full) translator.markAllDirty();
    const t = translator.changes();
    const warnings = translator.warnings();
    if (!nodeSeen)
      warnings.push(`no Node named ${k8s.nodeName} in the API server: NodePorts are not served until it appears`);
    let services: LbService[];
    let removedIds: number[] = [];
    let added: Set<number>;
    let left: KeyedService[];
    if (full) {
      const before = new Set(t.upserts.filter((k) => ids.idOf(k.key) !== undefined).map((k) => k.key));
      ({ services, left } = ids.assign(t.upserts));
      added = new Set(t.upserts.filter((k) => !before.has(k.key)).map((k) => ids.idOf(k.key)!));
    } else {
      ({ services, removedIds, added, left } = ids.assignChanges(t.upserts, t.removed));
    }
    // Left out for want of an id: counted among the warnings while they last.
    if (full) leftOut = new Map();
    if (leftOut.size > 0) {
      const touched = new Set([...t.upserts.map((u) => u.owner), ...t.removed.map((k) => k.split(/[: ]/)[0])]);
      for (const owner of touched) leftOut.delete(owner);
    }
    for (const l of left) {
      const w = `${l.owner}: no service id is free for ${frontendText(l.frontend)}; left out`;
      leftOut.set(l.owner, [...(leftOut.get(l.owner) ?? []), w]);
    }
    for (const w of leftOut.values()) warnings.push(...w);
    warnNew(warnings);
    let result;
    try {
      // Adopted: the writer keeps these objects as its model (nothing else holds or changes them) instead of a copy.
      result = full
        ? await writer.apply(services, { adopt: true })
        : await writer.applyChanges(services, removedIds, { adopt: true });
    } catch (e) {
      lastApplyOk = false;
      needFull = true;
      log.error(`kubernetes: services not applied: ${(e as Error).message}; the services in force stay as they are`);
      return;
    }
    needFull = false;
    lastApplyOk = true;
    // The latency is the datapath's: measured before the health checks are bound.
    const ms = since === null ? null : Date.now() - since;
    if (ms !== null) {
      syncLatency.observe(ms / 1000);
      lastSyncMs = ms;
    }
    const nodeAddrs = translator.nodeAddrs;
    const hc = await healthChecks.sync(nodeAddrs, translator.healthChecks());
    healthFailures = hc.notServed.length;
    warnHealth(hc.failures);
    if (hc.opened.length || hc.closed.length) {
      log.info(
        `kubernetes: health check node ports: ` +
          [hc.opened.length ? `opened ${named(hc.opened)}` : '', hc.closed.length ? `closed ${named(hc.closed)}` : '']
            .filter(Boolean)
            .join('; ') +
          ` (${healthChecks.serving().length} served on ${nodeAddrs.join(', ') || 'no address'})`,
      );
    }
    applies += 1;
    // What changed, by id: only the services of this apply are looked at.
    const text = (s: LbService) => `${s.name} ${frontendText(s.frontend)}`;
    const byId = new Map<number, LbService>(services.map((s) => [s.id, s]));
    const gone = full ? [...lbStatus.names.keys()].filter((id) => !byId.has(id)) : removedIds;
    const removedNames = gone.map((id) => lbStatus.names.get(id) || `service ${id}`);
    if (full) lbStatus.names = new Map();
    for (const id of gone) lbStatus.names.delete(id);
    for (const s of services) lbStatus.names.set(s.id, s.name ?? '');
    lbStatus.tablesRebuilt += result.tablesRebuilt;
    const addedNames = [...added].filter((id) => byId.has(id)).map((id) => text(byId.get(id)!));
    const changedNames = result.changedIds
      .filter((id) => !added.has(id) && byId.has(id))
      .map((id) => text(byId.get(id)!));
    const counts = translator.counts;
    const parts = [
      addedNames.length ? `added ${named(addedNames)}` : '',
      removedNames.length ? `removed ${named(removedNames)}` : '',
      changedNames.length ? `changed ${named(changedNames)}` : '',
    ].filter(Boolean);
    const line =
      `${ids.size} frontends of ${counts.services} services` +
      `${parts.length ? `; ${parts.join('; ')}` : ''}; ${lbTouched(result)} entries written or removed, ` +
      `${result.tablesRebuilt} backend tables rebuilt${ms === null ? '' : `, ${ms} ms after the event`}`;
    if (!firstApplied) {
      firstApplied = true;
      log.info(`kubernetes: synced with ${conn.server} (node ${k8s.nodeName}): ${line}`);
    } else if (addedNames.length || removedNames.length) {
      log.info(`kubernetes: ${line}`);
    } else {
      // Endpoints changing (a hundred a second in a large cluster) are not worth an info line each.
      log.debug(`kubernetes: ${line}`);
    }
  };

  const run = async () => {
    pending = null;
    if (stopped) return;
    applying = true;
    try {
      await applyNow();
    } catch (e) {
      needFull = true;
      log.error(`kubernetes: translating the services failed: ${(e as Error).message}; the services in force stay`);
    } finally {
      applying = false;
    }
    if (again) {
      again = false;
      schedule();
    }
  };

  /**
   * An apply at once when none is running (after the events already read in this turn of the event loop, which
   * one watch chunk delivers together); events that arrive during an apply are folded into the next one.
   */
  const schedule = () => {
    if (stopped || !allSynced()) return;
    if (applying) {
      again = true;
      return;
    }
    pending ??= setImmediate(() => void run());
  };

  let lostAt: number | null = null;
  informers = startK8sInformers(conn, k8s.nodeName, {
    change(resource, verb, obj) {
      firstEventAt ??= Date.now();
      if (resource === 'services') {
        if (verb === 'delete') translator.deleteService(obj as K8sService);
        else translator.setService(obj as K8sService);
      } else if (resource === 'endpointslices') {
        if (verb === 'delete') translator.deleteSlice(obj as K8sEndpointSlice);
        else translator.setSlice(obj as K8sEndpointSlice);
      } else if (obj.metadata?.name === k8s.nodeName) {
        nodeSeen = verb !== 'delete';
        translator.setNode(verb === 'delete' ? undefined : (obj as K8sNode));
      }
      schedule();
    },
    synced(resource) {
      log.debug(`kubernetes: ${resource} listed`);
      if (allSynced()) schedule();
    },
    failed(resource, err, restartInMs) {
      const why = describeK8sError(err);
      if (lostAt === null) {
        lostAt = Date.now();
        const what = firstApplied
          ? 'the services in force stay as they are until it answers'
          : 'no service is programmed from it until it answers (the maps keep what they hold)';
        log.warn(
          `kubernetes: ${conn.server} (${conn.source}): ${resource}: ${why}; ${what}; ` +
            `retrying in ${restartInMs / 1000} s, backing off to 30 s`,
        );
      } else {
        log.debug(`kubernetes: ${resource}: ${why}; retrying in ${restartInMs / 1000} s`);
      }
    },
    recovered(resource) {
      log.debug(`kubernetes: ${resource} watched again`);
      if (lostAt !== null && informers!.all.every((i) => !i.failing)) {
        const total = informers!.all.reduce((n, i) => n + i.restarts, 0);
        log.info(
          `kubernetes: ${conn.server} answers again after ${((Date.now() - lostAt) / 1000).toFixed(1)} s ` +
            `(${total} informer restarts so far)`,
        );
        lostAt = null;
      }
    },
  });
  log.info(
    `kubernetes: watching services, endpointslices and node ${k8s.nodeName} at ${conn.server} (${conn.source})` +
      `${restored.length ? `; ${restored.length} services in the maps stay until the first sync` : ''}`,
  );

  return {
    ready: () => firstApplied,
    status: () => ({
      synced: firstApplied,
      restarts: Object.fromEntries(
        K8S_RESOURCES.map((r) => [r, informers!.all.find((i) => i.resource === r)!.restarts]),
      ) as Record<K8sResource, number>,
      applies,
      lastSyncMs,
    }),
    lbStatus,
    metrics: [syncLatency, restarts, syncedGauge, healthGauge],
    async stop() {
      if (stopped) return;
      stopped = true;
      if (pending) clearImmediate(pending);
      await Promise.all([informers!.stop(), healthChecks.stop()]);
    },
  };
}
