// Benchmark `forward`: a router forwarding UDP between two namespaces, in five
// modes measured round by round: plain forwarding, nf_conntrack through
// iptables (with and without MASQUERADE), and tsct (with and without
// masquerade). Profiles: 64 established flows, and a new flow every packet.
//
// The sender (scripts/bench/udpgen.c, AF_PACKET with sendmmsg) runs on CPU 0;
// RPS steers the router's receive processing to CPU 1, where the server's XDP
// sink also runs (the same cost in every mode). On these 2-core machines one
// sending CPU cannot outrun one forwarding CPU, so received packets per second
// mostly measure the sender; the figure that separates the modes is the
// router CPU's nanoseconds per packet, and the capacity it implies
// (1e9 / ns). Both are reported.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BpfObject } from 'libbpf-ts';
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
const MODES = ['plain', 'nf', 'nf-masq', 'tsct', 'tsct-masq'] as const;
type Mode = (typeof MODES)[number];
const PROFILES = ['established', 'newflow'] as const;

const macOf = (lab: RouterLab, ns: string, dev: string) => JSON.parse(lab.lab.exec(ns, 'ip', ['-j', 'link', 'show', dev]))[0].address as string;

function cpuBusyTicks(cpu: number): number {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${cpu} `))!;
  const f = line.split(/\s+/).slice(1).map(Number);
  return f.reduce((a, b) => a + b, 0) - f[3] - f[4]; // all but idle and iowait
}

const IPT = [
  ['-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'],
  ['-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP'],
  ['-A', 'FORWARD', '-i', 'eth1', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'ACCEPT'],
];

async function main(): Promise<void> {
  ensureBpffs();
  const gen = buildC('udpgen');
  const lab = buildRouterLab('tsct-fwd');
  const root = `/sys/fs/bpf/${lab.lab.id}`;
  const sink = await BpfObject.open(path.join(ROOT, 'test', 'fixtures', 'build', 'forward_sink.bpf.o')).load();
  let agent: AgentHandle | null = null;
  try {
    sink.program('sink_drop').attachXdp('eth0', { mode: 'native', netns: NamespaceLab.path(lab.server) });
    const count = sink.map('sink_count');
    const sunk = () => count.lookupPerCpu(Buffer.alloc(4))!.reduce((s, v) => s + Number(v.readBigUInt64LE()), 0);
    const rmac = macOf(lab, lab.router, 'eth1');
    const cmac = macOf(lab, lab.client, 'eth0');
    // The server's XDP sink drops ARP too: fixed neighbours both ways.
    lab.lab.exec(lab.router, 'ip', ['neigh', 'replace', lab.addr.server4, 'lladdr', macOf(lab, lab.server, 'eth0'), 'dev', 'eth2', 'nud', 'permanent']);
    lab.lab.exec(lab.server, 'ip', ['neigh', 'replace', lab.addr.routerServer4, 'lladdr', macOf(lab, lab.router, 'eth2'), 'dev', 'eth0', 'nud', 'permanent']);
    lab.lab.exec(lab.router, 'sh', ['-c', 'echo 2 > /sys/class/net/eth1/queues/rx-0/rps_cpus']);

    const send = (profile: string, n: number) => {
      const r = spawnSync('ip', ['netns', 'exec', lab.client, 'taskset', '-c', '0', gen, 'eth0', rmac, cmac, lab.addr.client4, lab.addr.server4, '9', profile === 'newflow' ? 'newflow' : 'flows', String(FLOWS), String(n)], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`udpgen failed: ${r.stderr}`);
      return Number(/ns=(\d+)/.exec(r.stdout)![1]);
    };
    const reply = (masq: boolean) => {
      const to = masq ? lab.addr.routerServer4 : lab.addr.client4;
      lab.lab.exec(lab.server, 'python3', ['-c', `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('',9))\nfor p in range(20000,${20000 + FLOWS}): s.sendto(b'r',('${to}',p))`]);
    };

    const setup = async (mode: Mode) => {
      if (mode.startsWith('nf')) {
        lab.lab.exec(lab.router, 'sysctl', ['-qw', 'net.netfilter.nf_conntrack_max=1048576']);
        for (const rule of IPT) lab.lab.exec(lab.router, 'iptables', rule);
        if (mode === 'nf-masq') lab.lab.exec(lab.router, 'iptables', ['-t', 'nat', '-A', 'POSTROUTING', '-o', 'eth2', '-j', 'MASQUERADE']);
      }
      if (mode.startsWith('tsct')) {
        agent = await startAgentIn(lab.router, ['--devices', 'eth1,eth2', '--bpf-root', root, '--bpf-ct-global-tcp-max', '65536', '--bpf-ct-global-any-max', '1048576', '--bpf-nat-global-max', '1048576', '--prometheus-serve-addr', 'off', ...(mode === 'tsct-masq' ? ['--masquerade-devices', 'eth2'] : [])]);
      }
    };
    const teardown = async () => {
      lab.lab.exec(lab.router, 'iptables', ['-F']);
      lab.lab.exec(lab.router, 'iptables', ['-t', 'nat', '-F']);
      spawnSync('ip', ['netns', 'exec', lab.router, 'conntrack', '-F'], { stdio: 'ignore' });
      if (agent) await agent.stop();
      agent = null;
      await tsctIn(lab.router, ['uninstall', '--bpf-root', root]);
    };
    /** What each mode claims, checked while it runs. */
    const verify = async (mode: Mode, profile: string) => {
      const nfCount = Number(spawnSync('ip', ['netns', 'exec', lab.router, 'conntrack', '-C'], { encoding: 'utf8' }).stdout.trim() || 0);
      if (mode === 'plain' && nfCount !== 0) throw new Error(`plain mode has ${nfCount} nf_conntrack entries`);
      if (mode.startsWith('nf') && nfCount < FLOWS) throw new Error(`${mode} has only ${nfCount} nf_conntrack entries`);
      if (mode.startsWith('tsct')) {
        const n = Number((await tsctIn(lab.router, ['bpf', 'ct', 'list', 'global', '--count', '--bpf-root', root])).stdout.trim());
        if (n < FLOWS) throw new Error(`${mode} tracks only ${n} connections`);
        if (mode === 'tsct-masq') {
          const m = Number((await tsctIn(lab.router, ['bpf', 'nat', 'list', '--count', '--host', lab.addr.routerServer4, '--bpf-root', root])).stdout.trim());
          if (m < FLOWS) throw new Error(`tsct-masq has only ${m} NAT entries`);
        }
      }
      if (mode === 'nf-masq') {
        const l = spawnSync('ip', ['netns', 'exec', lab.router, 'conntrack', '-L', '-p', 'udp'], { encoding: 'utf8' }).stdout;
        if (!l.includes(`dst=${lab.addr.routerServer4}`)) throw new Error('nf-masq did not masquerade');
      }
      void profile;
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
          const before = sunk();
          const busy0 = cpuBusyTicks(1);
          const ns = send(profile, profile === 'newflow' ? NEW_FLOWS : PACKETS);
          await new Promise((r) => setTimeout(r, 50));
          const received = sunk() - before;
          const busyNs = (cpuBusyTicks(1) - busy0) * 1e7; // USER_HZ ticks of 10 ms
          await verify(mode, profile);
          await teardown();
          const key = `${profile}_${mode.replace('-', '_')}`;
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
    const estVsNf = cap('established_tsct_masq', 'established_nf_masq');
    const estVsPlain = cap('established_tsct_masq', 'established_plain');
    const newVsNf = cap('newflow_tsct_masq', 'newflow_nf_masq');
    figure('established_tsct_masq_over_nf_masq', estVsNf);
    figure('established_tsct_masq_over_plain', estVsPlain);
    figure('established_tsct_over_nf', cap('established_tsct', 'established_nf'));
    figure('newflow_tsct_masq_over_nf_masq', newVsNf);
    figure('newflow_tsct_over_nf', cap('newflow_tsct', 'newflow_nf'));
    figure(
      'summary',
      `router capacity from CPU ns/packet, tsct masq vs nf_conntrack MASQUERADE: established ${fmt(estVsNf)}x (>= 1.4: ${verdict(estVsNf >= 1.4)}), ` +
        `new flow per packet ${fmt(newVsNf)}x (>= 2: ${verdict(newVsNf >= 2)}); established tsct masq vs plain forwarding ${fmt(estVsPlain)}x (>= 0.9: ${verdict(estVsPlain >= 0.9)})`,
    );
  } finally {
    if (agent) await (agent as AgentHandle).stop();
    await tsctIn(lab.router, ['uninstall', '--bpf-root', root]);
    sink.close();
    lab.lab.destroy();
  }
}

main().catch((e) => {
  console.error(`forward benchmark could not measure: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
