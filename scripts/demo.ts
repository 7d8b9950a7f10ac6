// The demo: a namespace lab (client and server joined by a veth pair), a BPF
// program attached at tc ingress and XDP on the server's side, bounded real
// traffic, and what the program counted, read back through libbpf-ts.
// Everything lives in namespaces the demo creates and removes.
import * as path from 'node:path';
import { BpfObject, queryTc, queryXdp, detachTc, detachXdp } from 'libbpf-ts';
import { NamespaceLab } from '../src/lab/namespaceLab';
import { ensureBpffs } from '../src/datapath/bpffs';

const ROOT = path.resolve(__dirname, '..', '..');

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the demo builds network namespaces and loads BPF: run it as root');
  ensureBpffs();
  const lab = new NamespaceLab('tsct-demo');
  try {
    const client = lab.addNamespace('client');
    const server = lab.addNamespace('server');
    lab.link({ ns: client, dev: 'eth0', addrs: ['10.200.0.1/24'] }, { ns: server, dev: 'eth0', addrs: ['10.200.0.2/24'] });
    const netns = NamespaceLab.path(server);
    console.log(`lab ${lab.id}: ${client} 10.200.0.1 <-> ${server} 10.200.0.2`);

    const obj = await BpfObject.open(path.join(ROOT, 'test', 'fixtures', 'build', 'binding.bpf.o')).load();
    const tc = obj.program('count_tc').attachTc('eth0', 'ingress', { netns });
    const xdp = obj.program('count_xdp').attachXdp('eth0', { mode: 'generic', netns });
    console.log(`attached tc ingress (prog ${queryTc('eth0', 'ingress', { netns })}) and XDP (prog ${queryXdp('eth0', { netns })}) on ${server}/eth0 (ifindex ${tc.ifindex}, ${xdp.mode})`);

    console.log('ping -c 5 10.200.0.2 from the client ...');
    lab.exec(client, 'ping', ['-c', '5', '-i', '0.2', '-W', '2', '10.200.0.2']);

    const counts = obj.map('test_counts');
    const names = ['tc packets', 'tc echo requests', 'XDP packets', 'XDP echo requests'];
    names.forEach((name, slot) => {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(slot);
      const perCpu = counts.lookupPerCpu(key)!.map((v) => v.readBigUInt64LE());
      console.log(`  ${name.padEnd(18)} ${perCpu.reduce((a, b) => a + b, 0n)}  (per CPU: ${perCpu.join(' ')})`);
    });

    detachXdp('eth0', { netns, expectedProgId: xdp.progId });
    detachTc('eth0', 'ingress', { netns });
    obj.close();
    console.log('detached; removing the lab');
  } finally {
    lab.destroy();
  }
}

main().catch((e) => {
  console.error(`tsct demo: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
