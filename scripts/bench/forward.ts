// Benchmark `forward`: a router forwarding UDP between two namespaces, in
// eight modes measured round by round: plain forwarding, nf_conntrack through
// iptables (with and without MASQUERADE), tsct's tc datapath (with and
// without masquerade, and with masquerade and --bpf-fast-path-new), and tsct
// with its XDP fast path (with and without masquerade). Profiles: 64 established UDP flows, a new UDP flow every
// packet, and real TCP connections set up and torn down (tcpconn.c).
//
// The sender (scripts/bench/udpgen.c, AF_PACKET with sendmmsg) runs on CPU 0;
// the router's receive processing runs on CPU 1 (RPS, or for the XDP modes a
// NAPI thread pinned there), where the server's XDP sink also runs. On these
// 2-core machines one sending CPU cannot outrun one forwarding CPU, so
// received packets per second partly measure the sender; the figure that
// separates the modes is the router CPU's nanoseconds per forwarded packet,
// and the capacity it implies (1e9 / ns). It is read off a spinner at the
// lowest priority on CPU 1 (spare.c): the cycles it loses while packets
// flow are the router's. Both figures are reported. The TCP profile, whose
// endpoints cost more than the router, counts both CPUs instead (tcpProfile).
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BpfObject } from 'libbpf-ts';
import { readPinnedMetrics, reasonTotal } from '../../src/metrics/reasons';
import { buildRouterLab, RouterLab } from '../../lab/routerLab';
import { NamespaceLab } from '../../lab/namespaceLab';
import { AgentHandle, startAgentIn, tsctIn } from '../../lab/agentProcess';
import { ensureBpffs } from '../../src/datapath/bpffs';
import { ROOT, buildC, figure, median, fmt, verdict } from './common';

const ROUNDS = Number(process.env.FORWARD_ROUNDS ?? 5);
const PACKETS = Number(process.env.FORWARD_PACKETS ?? 1_500_000);
/** New flows per round: at least 250,000, and fewer than the tables hold, in tsct and in nf_conntrack. */
const NEW_FLOWS = Number(process.env.FORWARD_NEW_FLOWS ?? 300_000);
const FLOWS = 64;
/** TCP connections per round of the tcpconnect profile, and how many are under way at once. */
const CONNS = Number(process.env.FORWARD_CONNS ?? 40_000);
const IN_FLIGHT = 64;
const TCP_PORT = 8080;
const ALL_MODES = [
  'plain',
  'nf',
  'nf-masq',
  'tsct',
  'tsct-masq',
  'tsct-new-masq',
  'tsct-xdp',
  'tsct-xdp-masq',
] as const;
type Mode = (typeof ALL_MODES)[number];
const ALL_PROFILES = ['established', 'newflow', 'tcpconnect'] as const;
type Profile = (typeof ALL_PROFILES)[number];
/** FORWARD_MODES / FORWARD_PROFILES (comma lists) narrow a run, for profiling one case. */
const pick = <T extends string>(all: readonly T[], env?: string): T[] =>
  env ? all.filter((m) => env.split(',').includes(m)) : [...all];
const MODES = pick(ALL_MODES, process.env.FORWARD_MODES);
const PROFILES = pick(ALL_PROFILES, process.env.FORWARD_PROFILES);
/**
 * FORWARD_PERF=DIR records `perf record -C 1 -g` of the router CPU during each
 * measured send, to DIR/PROFILE_MODE_rROUND.data.
 */
const PERF_DIR = process.env.FORWARD_PERF;

const macOf = (lab: RouterLab, ns: string, dev: string) =>
  JSON.parse(lab.lab.exec(ns, 'ip', ['-j', 'link', 'show', dev]))[0].address as string;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nowNs = () => Number(process.hrtime.bigint());

const IPT = [
  ['-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'],
  ['-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP'],
  ['-A', 'FORWARD', '-i', 'eth1', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'ACCEPT'],
];

/**
 * A SCHED_IDLE spinner pinned to one CPU (scripts/bench/spare.c): whatever
 * else runs there takes its cycles first, so the loops it loses while traffic
 * flows are the CPU time the traffic cost on that CPU.
 */
interface SpareCounter {
  count(): number;
  stop(): void;
}

function spareCounter(bin: string, cpu: number): SpareCounter {
  const file = `/dev/shm/tsct-spare-${process.pid}-cpu${cpu}`;
  const proc = spawn('taskset', ['-c', String(cpu), bin, file, '3600'], { stdio: 'ignore' });
  return {
    count: () => {
      try {
        return Number(fs.readFileSync(file).readBigUInt64LE(0));
      } catch {
        return 0; // not started yet
      }
    },
    stop: () => {
      proc.kill();
      fs.rmSync(file, { force: true });
    },
  };
}

/**
 * CPU time taken on the counted CPUs between start() and busyNs(), from their
 * spare loops against an idle rate measured first.
 */
async function cpuMeter(counters: SpareCounter[]) {
  const snap = () => ({ loops: counters.map((c) => c.count()), at: nowNs() });
  const idle0 = snap();
  await sleep(300);
  const idle1 = snap();
  const idleRate = counters.map((_, i) => (idle1.loops[i] - idle0.loops[i]) / (idle1.at - idle0.at));
  if (!idleRate.every((r) => r > 0)) throw new Error('a spare-cycle counter is not counting');
  let start = snap();
  return {
    start: () => {
      start = snap();
    },
    /** The share of each CPU its spinner lost is the share the traffic took. */
    busyNs: () => {
      const end = snap();
      const wall = end.at - start.at;
      return counters.reduce(
        (sum, _, i) => sum + Math.max(0, 1 - (end.loops[i] - start.loops[i]) / wall / idleRate[i]) * wall,
        0,
      );
    },
  };
}

async function main(): Promise<void> {
  ensureBpffs();
  const gen = buildC('udpgen');
  const tcpconn = buildC('tcpconn');
  const spareBin = buildC('spare');
  const spares = new Map<number, SpareCounter>();
  const lab = buildRouterLab('tsct-fwd');
  const root = `/sys/fs/bpf/${lab.lab.id}`;
  const sink = await BpfObject.open(path.join(ROOT, 'test', 'fixtures', 'build', 'forward_sink.bpf.o')).load();
  let agent: AgentHandle | null = null;
  try {
    spares.set(1, spareCounter(spareBin, 1));
    sink.program('sink_drop').attachXdp('eth0', { mode: 'native', netns: NamespaceLab.path(lab.server) });
    const count = sink.map('sink_count');
    const sunk = () => count.lookupPerCpu(Buffer.alloc(4))!.reduce((s, v) => s + Number(v.readBigUInt64LE()), 0);
    const rmac = macOf(lab, lab.router, 'eth1');
    const cmac = macOf(lab, lab.client, 'eth0');
    // The server's XDP sink drops ARP too: fixed neighbours both ways.
    lab.lab.exec(lab.router, 'ip', [
      'neigh',
      'replace',
      lab.addr.server4,
      'lladdr',
      macOf(lab, lab.server, 'eth0'),
      'dev',
      'eth2',
      'nud',
      'permanent',
    ]);
    lab.lab.exec(lab.server, 'ip', [
      'neigh',
      'replace',
      lab.addr.routerServer4,
      'lladdr',
      macOf(lab, lab.router, 'eth2'),
      'dev',
      'eth0',
      'nud',
      'permanent',
    ]);
    /** Steers the router's receive processing, both directions, to the CPUs in MASK (0: where it arrives). */
    const routerRps = (mask: number) => {
      for (const dev of ['eth1', 'eth2'])
        lab.lab.exec(lab.router, 'sh', ['-c', `echo ${mask} > /sys/class/net/${dev}/queues/rx-0/rps_cpus`]);
    };
    routerRps(2); // CPU 1
    // Ports enough for the TCP profile's connections: each ends in an RST, so none waits in TIME_WAIT.
    lab.lab.exec(lab.client, 'sysctl', ['-qw', 'net.ipv4.ip_local_port_range=1024 65535']);
    // XDP_REDIRECT into a veth needs NAPI at its peer (GRO on gives a veth
    // one), and a veth hands XDP the CHECKSUM_PARTIAL skbs of a peer that
    // offloads checksums, which XDP cannot finish: both ends off the router
    // are set so for every mode (it matters for the replies only).
    for (const ns of [lab.client, lab.server]) lab.lab.exec(ns, 'ethtool', ['-K', 'eth0', 'gro', 'on', 'tx', 'off']);
    const send = (profile: string, n: number) => {
      const r = spawnSync(
        'ip',
        [
          'netns',
          'exec',
          lab.client,
          'taskset',
          '-c',
          '0',
          gen,
          'eth0',
          rmac,
          cmac,
          lab.addr.client4,
          lab.addr.server4,
          '9',
          profile === 'newflow' ? 'newflow' : 'flows',
          String(FLOWS),
          String(n),
        ],
        { encoding: 'utf8' },
      );
      if (r.status !== 0) throw new Error(`udpgen failed: ${r.stderr}`);
      return Number(/ns=(\d+)/.exec(r.stdout)![1]);
    };
    /** The TCP profile's server, answering until stopped; resolves once it listens. */
    const serveTcp = async () => {
      const proc = spawn('ip', ['netns', 'exec', lab.server, tcpconn, 'server', String(TCP_PORT), '600'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise((r) => proc.once('close', r));
      await Promise.race([
        (async () => {
          while (!out.includes('listening') && proc.exitCode === null) await sleep(10);
        })(),
        exited.then(() => {
          throw new Error('the TCP server exited before listening');
        }),
      ]);
      return {
        /** Stops it and returns how many connections it took and where they came from. */
        stop: async () => {
          proc.kill('SIGTERM');
          await exited;
          const m = /accepted=(\d+) peer=(\S+)/.exec(out);
          if (!m) throw new Error(`the TCP server did not report: ${out}`);
          return { accepted: Number(m[1]), peer: m[2] };
        },
      };
    };
    const connectTcp = (n: number) => {
      const r = spawnSync(
        'ip',
        [
          'netns',
          'exec',
          lab.client,
          tcpconn,
          'client',
          lab.addr.server4,
          String(TCP_PORT),
          String(IN_FLIGHT),
          String(n),
          '120',
        ],
        { encoding: 'utf8' },
      );
      const m = /conns=(\d+) failed=(\d+) ns=(\d+)/.exec(r.stdout);
      if (r.status !== 0 || !m) throw new Error(`tcpconn failed: ${r.stderr}`);
      return { conns: Number(m[1]), failed: Number(m[2]), ns: Number(m[3]) };
    };
    const reply = (masq: boolean) => {
      const to = masq ? lab.addr.routerServer4 : lab.addr.client4;
      lab.lab.exec(lab.server, 'python3', [
        '-c',
        `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('',9))\nfor p in range(20000,${20000 + FLOWS}): s.sendto(b'r',('${to}',p))`,
      ]);
    };

    const napiThreads = () =>
      spawnSync('ps', ['-eo', 'pid=,comm='], { encoding: 'utf8' })
        .stdout.split('\n')
        .filter((l) => /\snapi\//.test(l))
        .map((l) => l.trim().split(/\s+/)[0]);
    /**
     * XDP on a veth runs in its NAPI context, which the sending CPU schedules:
     * for the XDP modes the router's veths get NAPI (GRO on), threaded, with
     * the threads pinned to CPU 1, where RPS puts the other modes' receive
     * processing. A NAPI thread that drains its ring sleeps and is woken
     * again, a cost per batch the RPS path pays less of; it counts against
     * the XDP modes. A NAPI thread is named after its device, and devices in
     * other namespaces share names: ours are the ones that appear.
     */
    const routerNapi = (on: boolean) => {
      const before = new Set(napiThreads());
      for (const dev of ['eth1', 'eth2']) {
        // Without NAPI (GRO off, no XDP) there is no thread to stop, and the write fails.
        if (!on)
          spawnSync('ip', ['netns', 'exec', lab.router, 'sh', '-c', `echo 0 > /sys/class/net/${dev}/threaded`], {
            stdio: 'ignore',
          });
        lab.lab.exec(lab.router, 'ethtool', ['-K', dev, 'gro', on ? 'on' : 'off']);
        if (on) lab.lab.exec(lab.router, 'sh', ['-c', `echo 1 > /sys/class/net/${dev}/threaded`]);
      }
      if (on)
        for (const pid of napiThreads())
          if (!before.has(pid)) spawnSync('taskset', ['-pc', '1', pid], { stdio: 'ignore' });
    };
    /**
     * The TCP profile cannot make the router the bottleneck: the client's and
     * the server's TCP stacks cost more per packet than forwarding does. So it
     * lets the kernel place everything as it would on a node (no RPS, no
     * threaded NAPI), counts CPU time on both CPUs, and reports connections
     * per second and the whole machine's CPU time per connection; what a mode
     * adds over plain forwarding is its tracking's cost.
     */
    const tcpProfile = (on: boolean) => {
      routerRps(on ? 0 : 2);
      if (on) spares.set(0, spareCounter(spareBin, 0));
      else {
        spares.get(0)?.stop();
        spares.delete(0);
      }
    };
    const setup = async (mode: Mode, profile: Profile) => {
      if (mode.startsWith('nf')) {
        lab.lab.exec(lab.router, 'sysctl', ['-qw', 'net.netfilter.nf_conntrack_max=1048576']);
        for (const rule of IPT) lab.lab.exec(lab.router, 'iptables', rule);
        if (mode === 'nf-masq')
          lab.lab.exec(lab.router, 'iptables', ['-t', 'nat', '-A', 'POSTROUTING', '-o', 'eth2', '-j', 'MASQUERADE']);
      }
      if (mode.startsWith('tsct')) {
        agent = await startAgentIn(lab.router, [
          '--devices',
          'eth1,eth2',
          '--bpf-root',
          root,
          '--bpf-ct-global-tcp-max',
          '65536',
          '--bpf-ct-global-any-max',
          '1048576',
          '--bpf-nat-global-max',
          '1048576',
          '--prometheus-serve-addr',
          'off',
          '--bpf-xdp-fast-path',
          String(mode.startsWith('tsct-xdp')),
          '--bpf-fast-path-new',
          String(mode.startsWith('tsct-new')),
          ...(mode.endsWith('masq') ? ['--masquerade-devices', 'eth2'] : []),
        ]);
      }
      if (mode.startsWith('tsct-xdp') && profile !== 'tcpconnect') routerNapi(true);
    };
    const teardown = async () => {
      lab.lab.exec(lab.router, 'iptables', ['-F']);
      lab.lab.exec(lab.router, 'iptables', ['-t', 'nat', '-F']);
      spawnSync('ip', ['netns', 'exec', lab.router, 'conntrack', '-F'], { stdio: 'ignore' });
      if (agent) await agent.stop();
      agent = null;
      await tsctIn(lab.router, ['uninstall', '--bpf-root', root]);
      routerNapi(false);
    };
    /** What each mode claims, checked while it runs. */
    const verify = async (mode: Mode, profile: Profile) => {
      const nfCount = Number(
        spawnSync('ip', ['netns', 'exec', lab.router, 'conntrack', '-C'], { encoding: 'utf8' }).stdout.trim() || 0,
      );
      if (mode === 'plain' && nfCount !== 0) throw new Error(`plain mode has ${nfCount} nf_conntrack entries`);
      if (mode.startsWith('nf') && nfCount < FLOWS) throw new Error(`${mode} has only ${nfCount} nf_conntrack entries`);
      if (mode.startsWith('tsct')) {
        const n = Number(
          (await tsctIn(lab.router, ['bpf', 'ct', 'list', 'global', '--count', '--bpf-root', root])).stdout.trim(),
        );
        if (n < FLOWS) throw new Error(`${mode} tracks only ${n} connections`);
        if (mode.startsWith('tsct-xdp') && xdpForwarded() < FLOWS)
          throw new Error(`${mode} forwarded fewer than ${FLOWS} packets from XDP`);
        if (mode.endsWith('masq')) {
          const m = Number(
            (
              await tsctIn(lab.router, [
                'bpf',
                'nat',
                'list',
                '--count',
                '--host',
                lab.addr.routerServer4,
                '--bpf-root',
                root,
              ])
            ).stdout.trim(),
          );
          if (m < FLOWS) throw new Error(`tsct-masq has only ${m} NAT entries`);
        }
      }
      if (mode === 'nf-masq') {
        const l = spawnSync(
          'ip',
          ['netns', 'exec', lab.router, 'conntrack', '-L', '-p', profile === 'tcpconnect' ? 'tcp' : 'udp'],
          { encoding: 'utf8' },
        ).stdout;
        if (!l.includes(`dst=${lab.addr.routerServer4}`)) throw new Error('nf-masq did not masquerade');
      }
      if (process.env.FORWARD_DEBUG && mode.startsWith('tsct')) {
        console.error(
          mode,
          profile,
          JSON.stringify(readPinnedMetrics(root).map((x) => `${x.reason}/${x.hook}=${x.count}`)),
        );
      }
    };

    const xdpForwarded = () => reasonTotal(readPinnedMetrics(root), 'XDP_FAST_PATH');

    /**
     * Per profile and mode: what the receiver got per second (packets, or
     * connections) and the CPU ns for each (the router's; in the TCP profile
     * the whole machine's).
     */
    const results: Record<string, { rate: number[]; ns: number[] }> = {};
    for (let round = 0; round < ROUNDS; round++) {
      for (const profile of PROFILES) {
        if (profile === 'tcpconnect') tcpProfile(true);
        for (const mode of MODES) {
          await setup(mode, profile);
          if (profile === 'established') {
            send('established', FLOWS);
            reply(mode.endsWith('masq'));
          }
          const server = profile === 'tcpconnect' ? await serveTcp() : null;
          const meter = await cpuMeter([...spares.values()]);
          const before = sunk();
          const perf = PERF_DIR
            ? spawn(
                'perf',
                ['record', '-q', '-C', '1', '-g', '-o', path.join(PERF_DIR, `${profile}_${mode}_r${round}.data`)],
                { stdio: 'ignore' },
              )
            : null;
          if (perf) await new Promise((r) => setTimeout(r, 300));
          meter.start();
          let ns: number;
          let received: number;
          if (profile === 'tcpconnect') {
            const c = connectTcp(CONNS);
            if (c.failed > CONNS / 100) throw new Error(`${mode}: ${c.failed} of ${CONNS} TCP connections failed`);
            [ns, received] = [c.ns, c.conns];
          } else {
            ns = send(profile, profile === 'newflow' ? NEW_FLOWS : PACKETS);
            received = 0;
          }
          if (perf) {
            perf.kill('SIGINT');
            await new Promise((r) => perf.once('exit', r));
          }
          await sleep(50);
          const busyNs = meter.busyNs();
          if (profile !== 'tcpconnect') received = sunk() - before;
          if (server) {
            const { accepted, peer } = await server.stop();
            const expect = mode.endsWith('masq') ? lab.addr.routerServer4 : lab.addr.client4;
            if (accepted < received || peer !== expect)
              throw new Error(
                `${mode}: the TCP server accepted ${accepted} connections from ${peer}, expected ${received} from ${expect}`,
              );
          }
          await verify(mode, profile);
          await teardown();
          const key = `${profile}_${mode.replace(/-/g, '_')}`;
          results[key] ??= { rate: [], ns: [] };
          results[key].rate.push(received / (ns / 1e9));
          results[key].ns.push(busyNs / Math.max(1, received));
        }
        if (profile === 'tcpconnect') tcpProfile(false);
      }
    }
    const med: Record<string, number> = {};
    const rateMed: Record<string, number> = {};
    for (const [key, r] of Object.entries(results)) {
      const [rate, cost] = key.startsWith('tcpconnect')
        ? ['connections_per_second', 'cpu_ns_per_connection']
        : ['received_pps', 'router_ns_per_packet'];
      figure(`${key}_${rate}_median`, Math.round(median(r.rate)));
      figure(`${key}_${cost}_median`, median(r.ns));
      figure(`${key}_${cost}_min`, Math.min(...r.ns));
      figure(`${key}_${cost}_max`, Math.max(...r.ns));
      med[key] = median(r.ns);
      rateMed[key] = median(r.rate);
    }
    // What a mode adds to a connection's CPU cost over plain forwarding, paired
    // round by round: the endpoints' share is the same in every mode.
    const overPlain: Record<string, number> = {};
    const plainTcp = results.tcpconnect_plain?.ns;
    for (const [key, r] of Object.entries(results)) {
      if (!plainTcp || !key.startsWith('tcpconnect') || key === 'tcpconnect_plain') continue;
      figure(
        `${key}_cpu_ns_per_connection_over_plain_median`,
        (overPlain[key] = median(r.ns.map((ns, i) => ns - plainTcp[i]))),
      );
    }
    // Capacity ratios: a mode that spends fewer router nanoseconds per packet
    // forwards more. The TCP profile's are of connections per second.
    const cap = (a: string, b: string) => (a.startsWith('tcpconnect') ? rateMed[a] / rateMed[b] : med[b] / med[a]);
    const ratios: Array<[string, string, string]> = [
      ['established_tsct_masq_over_nf_masq', 'established_tsct_masq', 'established_nf_masq'],
      ['established_tsct_xdp_masq_over_nf_masq', 'established_tsct_xdp_masq', 'established_nf_masq'],
      ['established_tsct_masq_over_plain', 'established_tsct_masq', 'established_plain'],
      ['established_tsct_xdp_masq_over_plain', 'established_tsct_xdp_masq', 'established_plain'],
      ['established_tsct_over_nf', 'established_tsct', 'established_nf'],
      ['established_tsct_over_plain', 'established_tsct', 'established_plain'],
      ['established_tsct_xdp_over_plain', 'established_tsct_xdp', 'established_plain'],
      ['newflow_tsct_masq_over_nf_masq', 'newflow_tsct_masq', 'newflow_nf_masq'],
      ['newflow_tsct_new_masq_over_nf_masq', 'newflow_tsct_new_masq', 'newflow_nf_masq'],
      ['newflow_tsct_xdp_masq_over_nf_masq', 'newflow_tsct_xdp_masq', 'newflow_nf_masq'],
      ['newflow_tsct_over_nf', 'newflow_tsct', 'newflow_nf'],
      ['newflow_tsct_xdp_over_nf', 'newflow_tsct_xdp', 'newflow_nf'],
      ['tcpconnect_tsct_masq_over_nf_masq', 'tcpconnect_tsct_masq', 'tcpconnect_nf_masq'],
      ['tcpconnect_tsct_new_masq_over_nf_masq', 'tcpconnect_tsct_new_masq', 'tcpconnect_nf_masq'],
      ['tcpconnect_tsct_xdp_masq_over_nf_masq', 'tcpconnect_tsct_xdp_masq', 'tcpconnect_nf_masq'],
      ['tcpconnect_tsct_over_nf', 'tcpconnect_tsct', 'tcpconnect_nf'],
      ['tcpconnect_tsct_xdp_over_nf', 'tcpconnect_tsct_xdp', 'tcpconnect_nf'],
    ];
    const r: Record<string, number> = {};
    for (const [name, a, b] of ratios) if (med[a] && med[b]) figure(name, (r[name] = cap(a, b)));
    if (Object.keys(r).length < ratios.length) return; // a narrowed run: no summary
    const goal = (x: number, min: number) => `${fmt(x)}x (>= ${min}: ${verdict(x >= min)})`;
    figure(
      'summary',
      `router capacity from CPU ns/packet, tsct with masquerade vs nf_conntrack MASQUERADE: established tc ${fmt(r.established_tsct_masq_over_nf_masq)}x, ` +
        `XDP ${goal(r.established_tsct_xdp_masq_over_nf_masq, 1.4)}; new flow per packet tc ${fmt(r.newflow_tsct_masq_over_nf_masq)}x, ` +
        `tc with --bpf-fast-path-new ${goal(r.newflow_tsct_new_masq_over_nf_masq, 2)}, ` +
        `XDP ${goal(r.newflow_tsct_xdp_masq_over_nf_masq, 2)}; established vs plain forwarding: tc masq ${fmt(r.established_tsct_masq_over_plain)}x, ` +
        `XDP masq ${goal(r.established_tsct_xdp_masq_over_plain, 0.9)}, XDP without masquerade ${goal(r.established_tsct_xdp_over_plain, 1.5)}; ` +
        `TCP connections per second with masquerade vs nf_conntrack MASQUERADE: tc ${fmt(r.tcpconnect_tsct_masq_over_nf_masq)}x, ` +
        `tc with --bpf-fast-path-new ${fmt(r.tcpconnect_tsct_new_masq_over_nf_masq)}x, XDP ${fmt(r.tcpconnect_tsct_xdp_masq_over_nf_masq)}x; ` +
        `CPU ns per connection over plain forwarding: nf_conntrack MASQUERADE ${fmt(overPlain.tcpconnect_nf_masq, 0)}, tsct tc masq ${fmt(overPlain.tcpconnect_tsct_masq, 0)}, ` +
        `tc with --bpf-fast-path-new ${fmt(overPlain.tcpconnect_tsct_new_masq, 0)}, XDP masq ${fmt(overPlain.tcpconnect_tsct_xdp_masq, 0)}`,
    );
  } finally {
    if (agent) await (agent as AgentHandle).stop();
    await tsctIn(lab.router, ['uninstall', '--bpf-root', root]);
    sink.close();
    lab.lab.destroy();
    for (const c of spares.values()) c.stop();
  }
}

main().catch((e) => {
  console.error(`forward benchmark could not measure: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
