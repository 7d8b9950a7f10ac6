// A load balancer lab: a client, a router running the agent, and N backend
// namespaces each behind its own router link (eth2, eth3, ...), IPv4 and
// IPv6. Each backend runs a name server: TCP and UDP on a port, answering
// every connection or datagram with its name, so that a client sees which
// backend served it. Addresses live only inside these namespaces; the
// service addresses (10.200.100.0/24, fd00:200:100::/64) are routed nowhere:
// only the datapath's translation makes them reachable.
import { ChildProcess } from 'node:child_process';
import { NamespaceLab } from './namespaceLab';
import { AgentHandle, startAgentIn, tsctIn } from './agentProcess';
import { labAgentArgs } from './routerAgent';

export interface LbBackendHost {
  ns: string;
  name: string;
  addr4: string;
  addr6: string;
}

export interface LbLab {
  lab: NamespaceLab;
  client: string;
  router: string;
  backends: LbBackendHost[];
  client4: string;
  client6: string;
  /** The router's devices, for --devices: eth1 (client side), eth2.. (backends). */
  devices: string;
}

export function buildLbLab(prefix: string, n = 3): LbLab {
  const lab = new NamespaceLab(prefix);
  try {
    const client = lab.addNamespace('client');
    const router = lab.addNamespace('router');
    lab.link(
      { ns: client, dev: 'eth0', addrs: ['10.200.1.2/24', 'fd00:200:1::2/64'] },
      { ns: router, dev: 'eth1', addrs: ['10.200.1.1/24', 'fd00:200:1::1/64'] },
    );
    lab.exec(client, 'ip', ['route', 'add', 'default', 'via', '10.200.1.1']);
    lab.exec(client, 'ip', ['-6', 'route', 'add', 'default', 'via', 'fd00:200:1::1']);
    const backends: LbBackendHost[] = [];
    for (let i = 0; i < n; i++) {
      const net = 10 + i;
      const ns = lab.addNamespace(`be${i + 1}`);
      lab.link(
        { ns, dev: 'eth0', addrs: [`10.200.${net}.2/24`, `fd00:200:${net}::2/64`] },
        { ns: router, dev: `eth${i + 2}`, addrs: [`10.200.${net}.1/24`, `fd00:200:${net}::1/64`] },
      );
      lab.exec(ns, 'ip', ['route', 'add', 'default', 'via', `10.200.${net}.1`]);
      lab.exec(ns, 'ip', ['-6', 'route', 'add', 'default', 'via', `fd00:200:${net}::1`]);
      backends.push({ ns, name: `be${i + 1}`, addr4: `10.200.${net}.2`, addr6: `fd00:200:${net}::2` });
    }
    lab.exec(router, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    const devices = ['eth1', ...backends.map((_, i) => `eth${i + 2}`)].join(',');
    return { lab, client, router, backends, client4: '10.200.1.2', client6: 'fd00:200:1::2', devices };
  } catch (e) {
    lab.destroy();
    throw e;
  }
}

const NAME_SERVER = `
const net = require('net'), dgram = require('dgram');
const [name, port, maxSeconds] = process.argv.slice(1);
// TCP: the name, then an echo of what the client sends (a live connection to watch).
net.createServer((s) => { s.write(name + '\\n'); s.on('data', (d) => s.write(d)); s.on('error', () => {}); })
  .listen(Number(port), '::', () => console.log('ready'));
const u = dgram.createSocket({ type: 'udp6' });
u.on('message', (m, r) => u.send(name + ' ' + m.toString(), r.port, r.address));
u.bind(Number(port), '::');
setTimeout(() => process.exit(0), Number(maxSeconds) * 1000);
`;

/** Starts a name server on a backend; resolves once it listens. It exits by itself after maxSeconds. */
export function startNameServer(
  lab: NamespaceLab,
  b: LbBackendHost,
  port: number,
  maxSeconds = 120,
): Promise<ChildProcess> {
  const child = lab.spawn(b.ns, process.execPath, ['-e', NAME_SERVER, b.name, String(port), String(maxSeconds)]);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`name server on ${b.name} did not start`)), 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.on('exit', (code) => reject(new Error(`name server on ${b.name} exited (${code})`)));
  });
}

const WHO_SERVES = `
const net = require('net'), dgram = require('dgram');
const [host, port, count, proto, deadlineMs] = process.argv.slice(1);
const seen = {};
let done = 0, failed = 0;
const finish = () => { console.log(JSON.stringify({ seen, failed })); process.exit(0); };
setTimeout(finish, Number(deadlineMs));
function tcp() {
  const s = net.connect({ host, port: Number(port) });
  let d = '';
  s.setTimeout(3000, () => s.destroy(new Error('timeout')));
  s.on('data', (b) => { d += b; if (d.includes('\\n')) s.end(); });
  s.on('close', () => { const n = d.split('\\n')[0]; if (n) seen[n] = (seen[n] || 0) + 1; else failed++; next(); });
  s.on('error', () => {});
}
function udp() {
  // A connected socket: only a reply from the service address itself is taken.
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const t = setTimeout(() => { failed++; s.close(); next(); }, 2000);
  s.on('message', (m) => { clearTimeout(t); const n = m.toString().split(' ')[0]; seen[n] = (seen[n] || 0) + 1; s.close(); next(); });
  // ICMP unreachable on a connected socket: refused.
  s.on('error', () => { clearTimeout(t); failed++; s.close(); next(); });
  s.connect(Number(port), host, () => s.send('who'));
}
function next() { if (++done >= Number(count)) finish(); else (proto === 'udp' ? udp : tcp)(); }
done = -1; next();
`;

/** `count` new connections (or UDP sockets) to host:port, one after another: which backend answered how often. */
export function whoServes(
  lab: NamespaceLab,
  ns: string,
  host: string,
  port: number,
  count: number,
  proto: 'tcp' | 'udp',
): { seen: Record<string, number>; failed: number } {
  const out = lab.exec(ns, process.execPath, ['-e', WHO_SERVES, host, String(port), String(count), proto, '60000'], {
    timeoutMs: 90_000,
  });
  return JSON.parse(out.trim().split('\n').pop()!);
}

/** The agent on the lab's router, with its own bpf-root; stop() and cleanup() undo it. */
export async function startLbAgent(l: LbLab, extra: string[] = []): Promise<{ agent: AgentHandle; root: string }> {
  const root = `/sys/fs/bpf/${l.lab.id}`;
  const agent = await startAgentIn(
    l.router,
    labAgentArgs(root, l.devices, ['--prometheus-serve-addr', 'off', ...extra]),
  );
  return { agent, root };
}

export async function cleanupLbLab(l: LbLab, root: string, agent: AgentHandle | null): Promise<void> {
  if (agent) await agent.stop();
  await tsctIn(l.router, ['uninstall', '--bpf-root', root]);
  l.lab.destroy();
}

const TCP_OUTCOME = `
const net = require('net');
const [host, port] = process.argv.slice(1);
const t0 = Date.now();
const s = net.connect({ host, port: Number(port) });
const done = (outcome) => { console.log(JSON.stringify({ outcome, ms: Date.now() - t0 })); process.exit(0); };
s.setTimeout(5000, () => done('timeout'));
s.on('connect', () => done('connected'));
s.on('error', (e) => done(e.code === 'ECONNREFUSED' ? 'refused' : e.code));
`;

/** What a TCP connect to host:port gets: connected, refused (an RST), timeout or the error code; and how fast. */
export function tcpConnectOutcome(
  lab: NamespaceLab,
  ns: string,
  host: string,
  port: number,
): { outcome: string; ms: number } {
  return JSON.parse(
    lab.exec(ns, process.execPath, ['-e', TCP_OUTCOME, host, String(port)], { timeoutMs: 15_000 }).trim(),
  );
}

const LIVE_CLIENT = `
const net = require('net');
const [host, port, gapMs, maxSeconds] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port) });
let name = null, echoes = 0, buf = '';
const say = (o) => console.log(JSON.stringify(o));
const end = (o) => { say(o); process.exit(0); };
setTimeout(() => end({ done: true, echoes }), Number(maxSeconds) * 1000);
s.on('data', (d) => {
  buf += d;
  if (name === null && buf.includes('\\n')) { name = buf.split('\\n')[0]; buf = ''; say({ name }); }
  else if (name !== null) { echoes += buf.length; buf = ''; say({ echoes }); }
});
const tick = setInterval(() => { if (name !== null) s.write('x'); }, Number(gapMs));
s.on('error', (e) => { clearInterval(tick); end({ error: e.code, echoes }); });
s.on('close', () => { clearInterval(tick); end({ closed: true, echoes }); });
`;

/** Waits (at most timeoutMs) for a live connection to echo `n` more bytes; says how many it echoed meanwhile. */
export async function moreEchoes(
  live: LiveClient,
  n = 3,
  timeoutMs = 4000,
): Promise<{ ok: boolean; before: number; after: number }> {
  const before = live.echoes();
  for (let waited = 0; waited < timeoutMs && live.echoes() < before + n; waited += 100) {
    await new Promise((r) => setTimeout(r, 100));
  }
  return { ok: live.echoes() >= before + n, before, after: live.echoes() };
}

export interface LiveClient {
  /** The backend's name, once the connection is up. */
  name: Promise<string>;
  /** Echoes so far. */
  echoes(): number;
  /** Resolves with how the connection ended: {error: 'ECONNRESET'} for an RST. */
  ended: Promise<{ error?: string; closed?: boolean; done?: boolean; echoes: number }>;
}

/** A TCP connection that sends a byte every gapMs and counts the echoes, for at most maxSeconds. */
export function liveTcpClient(lab: NamespaceLab, ns: string, host: string, port: number, gapMs = 100, maxSeconds = 60) {
  const child = lab.spawn(ns, process.execPath, [
    '-e',
    LIVE_CLIENT,
    host,
    String(port),
    String(gapMs),
    String(maxSeconds),
  ]);
  let echoes = 0;
  let resolveName: (n: string) => void = () => undefined;
  let resolveEnd: (v: { error?: string; closed?: boolean; done?: boolean; echoes: number }) => void = () => undefined;
  const name = new Promise<string>((r) => (resolveName = r));
  const ended = new Promise<{ error?: string; closed?: boolean; done?: boolean; echoes: number }>(
    (r) => (resolveEnd = r),
  );
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const msg = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      if (msg.name) resolveName(msg.name);
      else if (msg.echoes !== undefined && !('error' in msg || 'closed' in msg || 'done' in msg)) echoes = msg.echoes;
      else resolveEnd(msg);
    }
  });
  child.on('close', () => resolveEnd({ closed: true, echoes }));
  return { name, echoes: () => echoes, ended } satisfies LiveClient;
}

const UDP_STREAM = `
const dgram = require('dgram');
const [host, port, localPort, gapMs, seconds] = process.argv.slice(1);
const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
const pending = new Map(), lost = [], served = {};
let sent = 0, got = 0;
s.on('message', (m) => {
  const [name, , seq] = m.toString().split(' ');
  if (pending.has(seq)) { clearTimeout(pending.get(seq)); pending.delete(seq); got++; served[name] = (served[name] || 0) + 1; }
});
s.on('error', () => {});
s.bind(Number(localPort), () => {
  s.connect(Number(port), host, () => {
    const tick = setInterval(() => {
      const seq = String(++sent);
      pending.set(seq, setTimeout(() => { pending.delete(seq); lost.push(Number(seq)); }, 1500));
      s.send('ping ' + seq);
    }, Number(gapMs));
    setTimeout(() => { clearInterval(tick); setTimeout(() => { console.log(JSON.stringify({ sent, got, lost, served })); process.exit(0); }, 1600); }, Number(seconds) * 1000);
  });
});
`;

/** One UDP flow (a fixed source port) sending a request every gapMs for `seconds`: replies lost, and who served. */
export function startUdpStream(
  lab: NamespaceLab,
  ns: string,
  host: string,
  port: number,
  seconds: number,
  gapMs = 100,
) {
  const child = lab.spawn(ns, process.execPath, [
    '-e',
    UDP_STREAM,
    host,
    String(port),
    '40123',
    String(gapMs),
    String(seconds),
  ]);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise<{ sent: number; got: number; lost: number[]; served: Record<string, number> }>((resolve, reject) =>
    child.on('close', () => {
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!));
      } catch {
        reject(new Error(`the UDP stream printed nothing: ${out}`));
      }
    }),
  );
}

export interface EcmpLab {
  lab: NamespaceLab;
  client: string;
  routers: [string, string];
  backends: LbBackendHost[];
  client4: string;
}

/**
 * Two routers in front of the same backends: the client reaches the service
 * through router 1 (10.200.1.1) or router 2 (10.200.5.1), as an ECMP next hop
 * change would move it; both routers and three backends share one link (a
 * bridge in a namespace of its own), the backends' replies going through
 * router 1.
 */
export function buildEcmpLab(prefix: string): EcmpLab {
  const lab = new NamespaceLab(prefix);
  try {
    const client = lab.addNamespace('client');
    const r1 = lab.addNamespace('r1');
    const r2 = lab.addNamespace('r2');
    const sw = lab.addNamespace('sw');
    lab.exec(sw, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
    lab.exec(sw, 'ip', ['link', 'set', 'br0', 'up']);
    lab.link({ ns: client, dev: 'eth0', addrs: ['10.200.1.2/24'] }, { ns: r1, dev: 'eth1', addrs: ['10.200.1.1/24'] });
    lab.link({ ns: client, dev: 'eth1', addrs: ['10.200.5.2/24'] }, { ns: r2, dev: 'eth1', addrs: ['10.200.5.1/24'] });
    const port = (ns: string, dev: string, addr: string, swDev: string) => {
      lab.link({ ns, dev, addrs: [addr] }, { ns: sw, dev: swDev });
      lab.exec(sw, 'ip', ['link', 'set', swDev, 'master', 'br0']);
    };
    port(r1, 'eth2', '10.200.10.1/24', 'p-r1');
    port(r2, 'eth2', '10.200.10.2/24', 'p-r2');
    const backends: LbBackendHost[] = [];
    for (let i = 0; i < 3; i++) {
      const ns = lab.addNamespace(`be${i + 1}`);
      port(ns, 'eth0', `10.200.10.${11 + i}/24`, `p-be${i + 1}`);
      lab.exec(ns, 'ip', ['route', 'add', 'default', 'via', '10.200.10.1']);
      backends.push({ ns, name: `be${i + 1}`, addr4: `10.200.10.${11 + i}`, addr6: '' });
    }
    for (const r of [r1, r2]) lab.exec(r, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    // Router 2 reaches the client's own address over its link to it.
    lab.exec(r2, 'ip', ['route', 'add', '10.200.1.2/32', 'via', '10.200.5.2']);
    lab.exec(client, 'sysctl', ['-qw', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.eth1.rp_filter=0']);
    return { lab, client, routers: [r1, r2], backends, client4: '10.200.1.2' };
  } catch (e) {
    lab.destroy();
    throw e;
  }
}
