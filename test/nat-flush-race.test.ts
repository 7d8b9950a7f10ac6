// `tsct bpf nat flush` changes only what it means to change: the connection
// forgets its mapping in the kernel (tsct_nat_forget), so counters the
// datapath writes while the flush runs are never lost to a whole-entry write.
import * as fs from 'node:fs';
import { privTest } from './helpers/privilege';
import { findConn, runPacket } from './helpers/datapath';
import { Datapath } from '../src/datapath/datapath';
import { frame, PROTO } from '../lab/packetCraft';
import { tsctIn } from '../lab/agentProcess';
import { ensureBpffs } from '../src/datapath/bpffs';

const C = '10.200.1.2';
const S = '10.200.2.2';
const NAT4 = '10.200.2.1';

privTest('nat flush racing traffic loses no packet count of the connection', async (t) => {
  ensureBpffs();
  const root = `/sys/fs/bpf/tsct-race-${process.pid.toString(36)}`;
  fs.mkdirSync(root, { recursive: true });
  const dp = await Datapath.load({ sizes: { ctTcp: 4096, ctAny: 4096 }, pinRoot: root });
  try {
    dp.setDevice(1, 0, { snat4: NAT4 });
    const out = frame({ src: C, dst: S, l4: { udp: { sport: 5000, dport: 53 } } });
    let sent = 0;
    const send = async () => {
      const r = await runPacket(dp, out, { hook: 'egress' });
      if (r.verdict !== 0) throw new Error(`packet ${sent} was dropped: ${r.reason}`);
      sent++;
    };
    await send();
    // Traffic and flushes at once: each flush makes the connection forget its
    // mapping while packets keep counting on the same entry.
    let flushing = true;
    const traffic = (async () => {
      while (flushing || sent < 50) await send();
    })();
    let flushed = 0;
    for (let i = 0; i < 15; i++) {
      const r = await tsctIn(null, ['bpf', 'nat', 'flush', '--bpf-root', root]);
      t.is(r.code, 0, r.stderr);
      flushed += Number(/flushed (\d+)/.exec(r.stdout)?.[1] ?? 0);
    }
    flushing = false;
    await traffic;
    const conn = findConn(dp, { family: 4, proto: PROTO.udp, src: C, dst: S, sport: 5000, dport: 53, zone: 0 })!;
    t.true(flushed >= 1, `the flushes removed mappings (${flushed}) while ${sent} packets ran`);
    t.is(conn.packets[0], sent, 'every packet is counted on the connection');
    t.truthy(conn.natAddr, 'the connection took its mapping again');
  } finally {
    dp.close();
    await tsctIn(null, ['uninstall', '--bpf-root', root]);
    fs.rmSync(root, { recursive: true, force: true });
  }
});
