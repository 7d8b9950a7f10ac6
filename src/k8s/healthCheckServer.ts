// kube-proxy's service health server (pkg/proxy/healthcheck/service_health.go): for every healthCheckNodePort
// the translation gives (a LoadBalancer service of externalTrafficPolicy Local), an HTTP server on this node's
// addresses at that port, which a cloud load balancer asks whether to send the service's traffic here. It
// answers every request (any path, any method) as kube-proxy does:
// - 200 when the node has local ready endpoints and the agent is healthy, 503 otherwise (none, or only
//   terminating ones: a terminating pod still serves its connections, but the load balancer must stop sending
//   new ones here);
// - headers Content-Type: application/json, X-Content-Type-Options: nosniff, X-Load-Balancing-Endpoint-Weight
//   (the count);
// - the body kube-proxy writes, tab-indented and without a final newline:
//   {"service":{"namespace":"ns","name":"svc"},"localEndpoints":N,"serviceProxyHealthy":true}.
//
// Diff-based, as kube-proxy's SyncServices: a service whose port and addresses are unchanged keeps its servers
// (and its open connections); its endpoint count changes in place. A changed port or address set closes the
// servers and opens new ones; a service no longer given is closed. A port that cannot be bound is reported for
// that service and tried again at the next sync; the others are unaffected.
//
// The addresses are the Node object's (those inside --nodeport-addresses, as the NodePort frontends), where
// kube-proxy asks the host's interfaces: a Node address that is not one of this host's (an ExternalIP a cloud
// translates) cannot be bound, so it is skipped and said once, and the service is served on the rest.
import * as http from 'node:http';
import type { HealthCheck } from './serviceTranslate';

export interface HealthCheckServersOptions {
  /**
   * serviceProxyHealthy in the answer (kube-proxy: its own healthz): false makes every health check answer 503,
   * whatever its count.
   */
  healthy?: () => boolean;
}

export interface HealthCheckSyncResult {
  /** `namespace/name port P` of the services whose servers were opened (again) by this sync. */
  opened: string[];
  /** Those closed: no longer given, or opened again on another port or address set. */
  closed: string[];
  /**
   * One line per service (or address) that could not be served: `namespace/name: healthCheckNodePort P on
   * ADDR: why`. A service all of whose binds failed serves nothing and is tried again at the next sync.
   */
  failures: string[];
  /** namespace/name of the services given that serve on no address now. */
  notServed: string[];
}

export interface HealthCheckServing {
  namespace: string;
  name: string;
  port: number;
  /** The addresses actually listened on. */
  addrs: string[];
  localEndpoints: number;
}

interface Instance {
  check: HealthCheck;
  /** The addresses asked for (the key of the address set); `servers` holds the ones bound. */
  wanted: string;
  servers: Array<{ addr: string; server: http.Server }>;
}

function keyOf(c: { namespace: string; name: string }): string {
  return `${c.namespace}/${c.name}`;
}

/** kube-proxy's body: Go's dedent of its template is JSON.stringify's tab indentation, key for key. */
export function healthCheckBody(c: HealthCheck, healthy: boolean): string {
  return JSON.stringify(
    {
      service: { namespace: c.namespace, name: c.name },
      localEndpoints: c.localEndpoints,
      serviceProxyHealthy: healthy,
    },
    null,
    '\t',
  );
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // A load balancer's probe may keep its connection alive: a closed health check must not linger on it.
    server.closeAllConnections();
  });
}

function why(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'EADDRINUSE') return 'EADDRINUSE (the port is in use)';
  if (err.code === 'EADDRNOTAVAIL') return 'EADDRNOTAVAIL (not an address of this host)';
  if (err.code === 'EACCES') return 'EACCES (not allowed to bind it)';
  return err.code ?? err.message;
}

export class HealthCheckServers {
  private readonly instances = new Map<string, Instance>();
  private readonly healthy: () => boolean;
  /** Syncs and the stop run one after the other: a stop during a sync closes what that sync opened. */
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(opts: HealthCheckServersOptions = {}) {
    this.healthy = opts.healthy ?? (() => true);
  }

  /** Serves exactly these health checks on these addresses; see the result for what changed and what failed. */
  sync(addrs: readonly string[], checks: readonly HealthCheck[]): Promise<HealthCheckSyncResult> {
    const run = this.queue.then(() => this.syncNow([...addrs], checks));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** What is served now, by namespace/name. */
  serving(): HealthCheckServing[] {
    return [...this.instances.values()]
      .filter((i) => i.servers.length > 0)
      .map((i) => ({ ...i.check, addrs: i.servers.map((s) => s.addr) }))
      .sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : 1));
  }

  /** Closes every server; later syncs do nothing. */
  stop(): Promise<void> {
    this.stopped = true;
    const run = this.queue.then(async () => {
      await Promise.all([...this.instances.values()].map((i) => this.close(i)));
      this.instances.clear();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async syncNow(addrs: string[], checks: readonly HealthCheck[]): Promise<HealthCheckSyncResult> {
    const result: HealthCheckSyncResult = { opened: [], closed: [], failures: [], notServed: [] };
    if (this.stopped) return result;
    const wanted = new Map(checks.map((c) => [keyOf(c), c]));
    const addrKey = [...addrs].sort().join(',');
    // Closed first: a service moved to a port another one gives up is bound after that one let it go.
    for (const [key, inst] of this.instances) {
      const c = wanted.get(key);
      if (c && c.port === inst.check.port && addrKey === inst.wanted) continue;
      await this.close(inst);
      this.instances.delete(key);
      result.closed.push(`${key} port ${inst.check.port}`);
    }
    for (const [key, c] of wanted) {
      const have = this.instances.get(key);
      if (have) {
        // The handler reads the instance's check at each request: a new count is served from now on.
        have.check = { ...c };
        continue;
      }
      const inst: Instance = { check: { ...c }, wanted: addrKey, servers: [] };
      const skipped: string[] = [];
      let failed: string | null = null;
      for (const addr of addrs) {
        try {
          inst.servers.push({ addr, server: await this.listen(inst, addr) });
        } catch (e) {
          const line = `${key}: healthCheckNodePort ${c.port} on ${addr}: ${why(e)}`;
          if ((e as NodeJS.ErrnoException).code === 'EADDRNOTAVAIL') {
            skipped.push(line);
            continue;
          }
          failed = line;
          break;
        }
      }
      if (failed !== null || inst.servers.length === 0) {
        // Nothing half-open: the port is given back, so that whoever holds it can be told apart next time.
        await this.close(inst);
        result.notServed.push(key);
        if (failed !== null) result.failures.push(`${failed}; not served, tried again at the next change`);
        else if (addrs.length > 0) {
          result.failures.push(
            `${key}: healthCheckNodePort ${c.port}: none of the node addresses ${addrs.join(', ')} is this ` +
              `host's (EADDRNOTAVAIL); not served`,
          );
        }
        continue;
      }
      result.failures.push(...skipped.map((s) => `${s}; served on the other addresses`));
      this.instances.set(key, inst);
      result.opened.push(`${key} port ${c.port}`);
    }
    return result;
  }

  private listen(inst: Instance, addr: string): Promise<http.Server> {
    const server = http.createServer((_req, res) => {
      const c = inst.check;
      const healthy = this.healthy();
      const body = healthCheckBody(c, healthy);
      res.writeHead(c.localEndpoints !== 0 && healthy ? 200 : 503, {
        'Content-Type': 'application/json',
        'X-Content-Type-Options': 'nosniff',
        'X-Load-Balancing-Endpoint-Weight': String(c.localEndpoints),
        'Content-Length': Buffer.byteLength(body),
      });
      res.end(body);
    });
    // A probe that sends nothing must not hold a socket for Node's default of 5 minutes.
    server.requestTimeout = 10_000;
    server.headersTimeout = 10_000;
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      server.once('error', onError);
      server.listen({ host: addr, port: inst.check.port, exclusive: true }, () => {
        server.off('error', onError);
        // Errors after the bind (a socket reset) are the client's; the server stays.
        server.on('error', () => undefined);
        resolve(server);
      });
    });
  }

  private async close(inst: Instance): Promise<void> {
    await Promise.all(inst.servers.map((s) => closeServer(s.server)));
  }
}
