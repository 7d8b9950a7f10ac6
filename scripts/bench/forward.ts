// Benchmark `forward`: a router forwarding UDP between two namespaces, in
// seven modes measured round by round: plain forwarding, nf_conntrack through
// iptables (with and without MASQUERADE), tsct's tc datapath (with and
// without masquerade), and tsct with its XDP fast path (with and without
// masquerade). Profiles: 64 established flows, and a new flow every packet.
//
// The sender (scripts/bench/udpgen.c, AF_PACKET with sendmmsg) runs on CPU 0;
// the router's receive processing runs on CPU 1 (RPS, or for the XDP modes a
// NAPI thread pinned there), where the server's XDP sink also runs. On these
// 2-core machines one sending CPU cannot outrun one forwarding CPU, so
// received packets per second partly measure the sender; the figure that
// separates the modes is the router CPU's nanoseconds per forwarded packet,
// and the capacity it implies (1e9 / ns). It is read off a spinner at the
// lowest priority on CPU 1 (spare.c): the cycles it loses while packets
// flow are the router's. Both figures are reported.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BpfMap, BpfObject } from 'libbpf-ts';
import { readMetrics } from '../../src/datapath/datapath';
import { buildRouterLab, RouterLab } from '../../src/lab/routerLab';
import { NamespaceLab } from '../../src/lab/namespaceLab';
import { AgentHandle, startAgentIn, tsctIn } from '../../src/lab/agentProcess';
import { ensureBpffs } from '../../src/datapath/bpffs';
import { ROOT, buildC, figure, median, fmt, verdict } from './common';

const ROUNDS = Number(process.env.FORWARD_ROUNDS ?? 5);
const PACKETS = Number(process.env.FORWARD_PACKETS ?? 1_500_000);
/** New flows per round: at least 250,000, and fewer than the tables hold, in tsct and in nf_conntrack. */
const NEW_FLOWS = Number(process.env.FORWARD_NEW_FLOWS ?? 300_000);
const FLOWS = 64;
const ALL_MODES = ['plain', 'nf', 'nf-masq', 'tsct', 'tsct-masq', 'tsct-xdp', 'tsct-xdp-masq'] as const;
type Mode = (typeof ALL_MODES)[number];
const ALL_PROFILES = ['established', 'newflow'] as const;
/** FORWARD_MODES / FORWARD_PROFILES (comma lists) narrow a run, for profiling one case. */
const pick = <T extends string>(all: readonly T[], env?: string): T[] => (env ? all.filter((m) => env.split(',').includes(m)) : [...all]);
const MODES = pick(ALL_MODES, process.env.FORWARD_MODES);
const PROFILES = pick(ALL_PROFILES, process.env.FORWARD_PROFILES);
/** FORWARD_PERF=DIR records `perf record -C 1 -g` of the router CPU during each measured send, to DIR/PROFILE_MODE_rROUND.data. */
const PERF_DIR = process.env.FORWARD_PERF;

const macOf = (lab: RouterLab, ns: string, dev: string) => JSON.parse(lab.lab.exec(ns, 'ip', ['-j', 'link', 'show', dev]))[0].address as string;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nowNs = () => Number(process.hrtime.bigint());

const IPT = [
  ['-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'],
  ['-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP'],
  ['-A', 'FORWARD', '-i', 'eth1', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'ACCEPT'],
];

async function main(): Promise<void> {
  ensureBpffs();
  const gen = buildC('udpgen');
  // The router CPU's cost is read off a SCHED_IDLE spinner on CPU 1 (scripts/bench/spare.c).
  const spareFile = `/dev/shm/tsct-spare-${process.pid}`;
  const spareBin = buildC('spare');
  let spareProc: ReturnType<typeof spawn> | null = null;
  const spareCount = () => {
    try {
      return Number(fs.readFileSync(spareFile).readBigUInt64LE(0));
    } catch {
      return 0;
    }
  };
  /** Spare loops per ns on CPU 1 while the router is idle. */
  const spareRate = async () => {
    const [c0, t0] = [spareCount(), nowNs()];
    await sleep(300);
    return (spareCount() - c0) / (nowNs() - t0);
  };
  const lab = buildRouterLab('tsct-fwd');
  const root = `/sys/fs/bpf/${lab.lab.id}`;
  const sink = await BpfObject.open(path.join(ROOT, 'test', 'fixtures', 'build', 'forward_sink.bpf.o')).load();
  let agent: AgentHandle | null = null;
  try {
    spareProc = spawn('taskset', ['-c', '1', spareBin, spareFile, '3600'], { stdio: 'ignore' });
    sink.program('sink_drop').attachXdp('eth0', { mode: 'native', netns: NamespaceLab.path(lab.server) });
    const count = sink.map('sink_count');
    const sunk = () => count.lookupPerCpu(Buffer.alloc(4))!.reduce((s, v) => s + Number(v.readBigUInt64LE()), 0);
    const rmac = macOf(lab, lab.router, 'eth1');
    const cmac = macOf(lab, lab.client, 'eth0');
    // The server's XDP sink drops ARP too: fixed neighbours both ways.
    lab.lab.exec(lab.router, 'ip', ['neigh', 'replace', lab.addr.server4, 'lladdr', macOf(lab, lab.server, 'eth0'), 'dev', 'eth2', 'nud', 'permanent']);
    lab.lab.exec(lab.server, 'ip', ['neigh', 'replace', lab.addr.routerServer4, 'lladdr', macOf(lab, lab.router, 'eth2'), 'dev', 'eth0', 'nud', 'permanent']);
    lab.lab.exec(lab.router, 'sh', ['-c', 'echo 2 > /sys/class/net/eth1/queues/rx-0/rps_cpus']);
    // XDP_REDIRECT into a veth needs NAPI at its peer (GRO on gives a veth
    // one), and a veth hands XDP the CHECKSUM_PARTIAL skbs of a peer that
    // offloads checksums, which XDP cannot finish: both ends off the router
    // are set so for every mode (it matters for the replies only).
    for (const ns of [lab.client, lab.server]) lab.lab.exec(ns, 'ethtool', ['-K', 'eth0', 'gro', 'on', 'tx', 'off']);
    const send = (profile: string, n: number) => {
      const r = spawnSync('ip', ['netns', 'exec', lab.client, 'taskset', '-c', '0', gen, 'eth0', rmac, cmac, lab.addr.client4, lab.addr.server4, '9', profile === 'newflow' ? 'newflow' : 'flows', String(FLOWS), String(n)], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`udpgen failed: ${r.stderr}`);
      return Number(/ns=(\d+)/.exec(r.stdout)![1]);
    };
    const reply = (masq: boolean) => {
      const to = masq ? lab.addr.routerServer4 : lab.addr.client4;
      lab.lab.exec(lab.server, 'python3', ['-c', `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('',9))\nfor p in range(20000,${20000 + FLOWS}): s.sendto(b'r',('${to}',p))`]);
    };

    /**
     * XDP on a veth runs in its NAPI context, which the sending CPU schedules:
     * for the XDP modes the router's veths get NAPI (GRO on), threaded, with
     * the threads pinned to CPU 1, where RPS puts the other modes' receive
     * processing. A NAPI thread that drains its ring sleeps and is woken
     * again, a cost per batch the RPS path pays less of; it counts against
     * the XDP modes.
     */
    const routerNapi = (on: boolean) => {
      for (const dev of ['eth1', 'eth2']) {
        lab.lab.exec(lab.router, 'ethtool', ['-K', dev, 'gro', on ? 'on' : 'off']);
        if (on) lab.lab.exec(lab.router, 'sh', ['-c', `echo 1 > /sys/class/net/${dev}/threaded`]);
      }
      if (!on) return;
      for (const line of spawnSync('ps', ['-eo', 'pid=,comm='], { encoding: 'utf8' }).stdout.split('\n')) {
        const m = /^\s*(\d+)\s+napi\/eth[12]-/.exec(line);
        if (m) spawnSync('taskset', ['-pc', '1', m[1]], { stdio: 'ignore' });
      }
    };
    const setup = async (mode: Mode) => {
      if (mode.startsWith('nf')) {
        lab.lab.exec(lab.router, 'sysctl', ['-qw', 'net.netfilter.nf_conntrack_max=1048576']);
        for (const rule of IPT) lab.lab.exec(lab.router, 'iptables', rule);
        if (mode === 'nf-masq') lab.lab.exec(lab.router, 'iptables', ['-t', 'nat', '-A', 'POSTROUTING', '-o', 'eth2', '-j', 'MASQUERADE']);
      }
      if (mode.startsWith('tsct')) {
        agent = await startAgentIn(lab.router, [
          '--devices', 'eth1,eth2', '--bpf-root', root, '--bpf-ct-global-tcp-max', '65536', '--bpf-ct-global-any-max', '1048576', '--bpf-nat-global-max', '1048576',
          '--prometheus-serve-addr', 'off', '--bpf-xdp-fast-path', String(mode.startsWith('tsct-xdp')), ...(mode.endsWith('masq') ? ['--masquerade-devices', 'eth2'] : []),
        ]);
      }
      if (mode.startsWith('tsct-xdp')) routerNapi(true);
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
    const verify = async (mode: Mode, profile: string) => {
      const nfCount = Number(spawnSync('ip', ['netns', 'exec', lab.router, 'conntrack', '-C'], { encoding: 'utf8' }).stdout.trim() || 0);
      if (mode === 'plain' && nfCount !== 0) throw new Error(`plain mode has ${nfCount} nf_conntrack entries`);
      if (mode.startsWith('nf') && nfCount < FLOWS) throw new Error(`${mode} has only ${nfCount} nf_conntrack entries`);
      if (mode.startsWith('tsct')) {
        const n = Number((await tsctIn(lab.router, ['bpf', 'ct', 'list', 'global', '--count', '--bpf-root', root])).stdout.trim());
        if (n < FLOWS) throw new Error(`${mode} tracks only ${n} connections`);
        if (mode.startsWith('tsct-xdp') && xdpForwarded() < FLOWS) throw new Error(`${mode} forwarded fewer than ${FLOWS} packets from XDP`);
        if (mode.endsWith('masq')) {
          const m = Number((await tsctIn(lab.router, ['bpf', 'nat', 'list', '--count', '--host', lab.addr.routerServer4, '--bpf-root', root])).stdout.trim());
          if (m < FLOWS) throw new Error(`tsct-masq has only ${m} NAT entries`);
        }
      }
      if (mode === 'nf-masq') {
        const l = spawnSync('ip', ['netns', 'exec', lab.router, 'conntrack', '-L', '-p', 'udp'], { encoding: 'utf8' }).stdout;
        if (!l.includes(`dst=${lab.addr.routerServer4}`)) throw new Error('nf-masq did not masquerade');
      }
      if (process.env.FORWARD_DEBUG && mode.startsWith('tsct')) {
        const m = BpfMap.openPinned(`${root}/tsct_metrics`);
        console.error(mode, profile, JSON.stringify(readMetrics(m).map((x) => `${x.reason}/${x.hook}=${x.count}`)));
        m.close();
      }
    };

    const xdpForwarded = () => {
      const m = BpfMap.openPinned(`${root}/tsct_metrics`);
      try {
        return readMetrics(m).filter((x) => x.reason === 'XDP_FAST_PATH').reduce((n, x) => n + x.count, 0);
      } finally {
        m.close();
      }
    };

    const results: Record<string, { pps: number[]; ns: number[] }> = {};
    for (let round = 0; round < ROUNDS; round++) {
      for (const profile of PROFILES) {
        for (const mode of MODES) {
          await setup(mode);
          if (profile === 'established') {
            send('established', FLOWS);
            reply(mode.endsWith('masq'));
          }
          const idleRate = await spareRate();
          if (!(idleRate > 0)) throw new Error('the spare-cycle counter on CPU 1 is not counting');
          const before = sunk();
          const perf = PERF_DIR ? spawn('perf', ['record', '-q', '-C', '1', '-g', '-o', path.join(PERF_DIR, `${profile}_${mode}_r${round}.data`)], { stdio: 'ignore' }) : null;
          if (perf) await new Promise((r) => setTimeout(r, 300));
          const [spare0, w0] = [spareCount(), nowNs()];
          const ns = send(profile, profile === 'newflow' ? NEW_FLOWS : PACKETS);
          if (perf) {
            perf.kill('SIGINT');
            await new Promise((r) => perf.once('exit', r));
          }
          await sleep(50);
          const [spare1, w1] = [spareCount(), nowNs()];
          const received = sunk() - before;
          // The share of CPU 1 the spinner lost is the share the router took.
          const busyNs = Math.max(0, 1 - (spare1 - spare0) / (w1 - w0) / idleRate) * (w1 - w0);
          await verify(mode, profile);
          await teardown();
          const key = `${profile}_${mode.replace(/-/g, '_')}`;
          results[key] ??= { pps: [], ns: [] };
          results[key].pps.push(received / (ns / 1e9));
          results[key].ns.push(busyNs / Math.max(1, received));
        }
      }
    }
    const med: Record<string, number> = {};
    for (const [key, r] of Object.entries(results)) {
      figure(`${key}_received_pps_median`, Math.round(median(r.pps)));
      figure(`${key}_router_ns_per_packet_median`, median(r.ns));
      figure(`${key}_router_ns_per_packet_min`, Math.min(...r.ns));
      figure(`${key}_router_ns_per_packet_max`, Math.max(...r.ns));
      med[key] = median(r.ns);
    }
    // Capacity ratios: a mode that spends fewer router nanoseconds per packet forwards more.
    const cap = (a: string, b: string) => med[b] / med[a];
    const ratios: Array<[string, string, string]> = [
      ['established_tsct_masq_over_nf_masq', 'established_tsct_masq', 'established_nf_masq'],
      ['established_tsct_xdp_masq_over_nf_masq', 'established_tsct_xdp_masq', 'established_nf_masq'],
      ['established_tsct_masq_over_plain', 'established_tsct_masq', 'established_plain'],
      ['established_tsct_xdp_masq_over_plain', 'established_tsct_xdp_masq', 'established_plain'],
      ['established_tsct_over_nf', 'established_tsct', 'established_nf'],
      ['established_tsct_over_plain', 'established_tsct', 'established_plain'],
      ['established_tsct_xdp_over_plain', 'established_tsct_xdp', 'established_plain'],
      ['newflow_tsct_masq_over_nf_masq', 'newflow_tsct_masq', 'newflow_nf_masq'],
      ['newflow_tsct_xdp_masq_over_nf_masq', 'newflow_tsct_xdp_masq', 'newflow_nf_masq'],
      ['newflow_tsct_over_nf', 'newflow_tsct', 'newflow_nf'],
      ['newflow_tsct_xdp_over_nf', 'newflow_tsct_xdp', 'newflow_nf'],
    ];
    const r: Record<string, number> = {};
    for (const [name, a, b] of ratios) if (med[a] && med[b]) figure(name, (r[name] = cap(a, b)));
    if (Object.keys(r).length < ratios.length) return; // a narrowed run: no summary
    const goal = (x: number, min: number) => `${fmt(x)}x (>= ${min}: ${verdict(x >= min)})`;
    figure(
      'summary',
      `router capacity from CPU ns/packet, tsct with masquerade vs nf_conntrack MASQUERADE: established tc ${fmt(r.established_tsct_masq_over_nf_masq)}x, ` +
        `XDP ${goal(r.established_tsct_xdp_masq_over_nf_masq, 1.4)}; new flow per packet tc ${fmt(r.newflow_tsct_masq_over_nf_masq)}x, ` +
        `XDP ${goal(r.newflow_tsct_xdp_masq_over_nf_masq, 2)}; established vs plain forwarding: tc masq ${fmt(r.established_tsct_masq_over_plain)}x, ` +
        `XDP masq ${goal(r.established_tsct_xdp_masq_over_plain, 0.9)}, XDP without masquerade ${goal(r.established_tsct_xdp_over_plain, 1.5)}`,
    );
  } finally {
    if (agent) await (agent as AgentHandle).stop();
    await tsctIn(lab.router, ['uninstall', '--bpf-root', root]);
    sink.close();
    lab.lab.destroy();
    spareProc?.kill();
    fs.rmSync(spareFile, { force: true });
  }
}

main().catch((e) => {
  console.error(`forward benchmark could not measure: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
