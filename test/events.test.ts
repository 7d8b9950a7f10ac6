// The connection event stream: `tsct bpf ct events` prints [NEW] and
// [DESTROY] for real connections; a full ring buffer loses events, says so,
// and never costs a packet.
import { ChildProcess, spawn } from 'node:child_process';
import { privTest } from './helpers/privilege';
import { RouterLab } from '../lab/routerLab';
import { withRouterAgent } from '../lab/routerAgent';
import { NamespaceLab } from '../lab/namespaceLab';
import { tcpExchange, udpBurst } from '../lab/traffic';
import { TSCT_BIN } from '../lab/agentProcess';
import { readPinnedMetrics, reasonTotal } from '../src/metrics/reasons';
import { BpfMap } from 'libbpf-ts';
import * as path from 'node:path';

/**
 * Waits until a reader holds its lease on the event ring: the datapath writes
 * events only then, and a reader's node process can take seconds to start on
 * a loaded machine. The lease is a CLOCK_MONOTONIC deadline, as hrtime is.
 */
async function readerReady(root: string): Promise<void> {
  const m = BpfMap.openPinned(path.join(root, 'tsct_events_reader'));
  const lease = () => m.lookup(Buffer.alloc(4))?.readBigUInt64LE() ?? 0n;
  try {
    // A new lease: later than an earlier reader's, which outlives it by up to 10 s.
    const before = lease();
    for (let i = 0; i < 150; i++) {
      const now = lease();
      if (now > before && now > process.hrtime.bigint()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('the event reader did not take its lease within 15 s');
  } finally {
    m.close();
  }
}

function startEvents(ns: string, root: string, json: boolean): { child: ChildProcess; lines: string[] } {
  const child = spawn(
    'nsenter',
    [
      `--net=${NamespaceLab.path(ns)}`,
      process.execPath,
      TSCT_BIN,
      'bpf',
      'ct',
      'events',
      '--bpf-root',
      root,
      ...(json ? ['-o', 'json'] : []),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const lines: string[] = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts.filter(Boolean));
  });
  return { child, lines };
}

async function until(check: () => boolean, seconds: number): Promise<boolean> {
  for (let i = 0; i < seconds * 5 && !check(); i++) await new Promise((r) => setTimeout(r, 200));
  return check();
}

async function withAgent(extra: string[], fn: (lab: RouterLab, root: string) => Promise<void>): Promise<void> {
  await withRouterAgent({ prefix: 'tsct-ev', args: extra, echo: { port: 8080, seconds: 90 } }, (lab, root) =>
    fn(lab, root),
  );
}

privTest('the event stream shows [NEW] and [DESTROY] for a real connection', async (t) => {
  const short = ['tcp-fin', 'tcp-close-wait', 'tcp-last-ack', 'tcp-time-wait', 'tcp-close'].flatMap((s) => [
    `--bpf-ct-timeout-regular-${s}`,
    '1s',
  ]);
  await withAgent([...short, '--conntrack-gc-interval', '1s'], async (lab, root) => {
    // One reader at a time: readers of a ring share its consumer position.
    const plain = startEvents(lab.router, root, false);
    try {
      await readerReady(root);
      const r = await tcpExchange(lab.lab, lab.client, {
        host: lab.addr.server4,
        port: 8080,
        rounds: 3,
        bytes: 100,
        gapMs: 10,
      });
      t.true(r.ok);
      const mine = (l: string) => l.includes(`sport=${r.localPort} `);
      t.true(
        await until(() => plain.lines.some((l) => l.includes('[DESTROY]') && mine(l)), 15),
        plain.lines.join('\n'),
      );
      const newLine = plain.lines.find((l) => l.includes('[NEW]') && mine(l))!;
      t.regex(
        newLine,
        new RegExp(
          `^ +\\[NEW\\] tcp +6 \\d+ SYN_SENT src=${lab.addr.client4} dst=${lab.addr.server4} sport=${r.localPort} dport=8080 \\[UNREPLIED\\] src=${lab.addr.server4}`,
        ),
      );
      const destroy = plain.lines.find((l) => l.includes('[DESTROY]') && mine(l))!;
      t.regex(
        destroy,
        /packets=\d+ bytes=\d+ .*packets=\d+ bytes=\d+ \[ASSURED\]/,
        'the destroy line carries the final counters',
      );
    } finally {
      plain.child.kill('SIGINT');
    }
    const json = startEvents(lab.router, root, true);
    try {
      await readerReady(root);
      const r = await tcpExchange(lab.lab, lab.client, {
        host: lab.addr.server4,
        port: 8080,
        rounds: 1,
        bytes: 10,
        gapMs: 0,
      });
      const mine = (l: string) => l.includes(`"sport":${r.localPort},`);
      t.true(
        await until(() => json.lines.some((l) => mine(l) && JSON.parse(l).type === 'DESTROY'), 15),
        json.lines.join('\n'),
      );
      const first = JSON.parse(json.lines.find(mine)!);
      t.like(first, { type: 'NEW', proto: 'TCP', src: lab.addr.client4, dst: lab.addr.server4, dport: 8080 });
    } finally {
      json.child.kill('SIGINT');
    }
  });
});

privTest(
  'with a tiny ring buffer and a burst of connections, events are lost and counted, and every packet is forwarded',
  async (t) => {
    await withAgent(['--bpf-events-ring-size', '4096'], async (lab, root) => {
      const events = startEvents(lab.router, root, false);
      try {
        await readerReady(root);
        events.child.kill('SIGSTOP'); // a consumer that does not keep up
        const replies = udpBurst(lab.lab, lab.client, lab.addr.server4, 8080, 300);
        t.is(replies, 300, 'every request and every reply got through');
        events.child.kill('SIGCONT');
        t.true(
          await until(() => events.lines.some((l) => l.includes('[LOST]')), 10),
          events.lines.slice(-5).join('\n'),
        );
        const lostLine = events.lines.find((l) => l.includes('[LOST]'))!;
        const lost = Number(/\[LOST\] (\d+) events lost/.exec(lostLine)![1]);
        t.true(lost > 0 && lost < 300, `lost ${lost} of 300`);
        const metrics = readPinnedMetrics(root);
        const counted = reasonTotal(metrics, 'EVENT_LOST');
        // Ephemeral ports can repeat within 300 sockets: count connections as the datapath created them.
        const created = reasonTotal(metrics, 'CT_NEW');
        t.is(counted, lost, 'the loss is counted in tsct_metrics');
        t.true(created >= 290, `the burst created its connections (${created})`);
        const reported = () => events.lines.filter((l) => l.includes('[NEW]')).length;
        t.true(
          await until(() => reported() + lost === created, 10),
          `every connection was either reported or counted as lost: ${reported()} + ${lost} of ${created}`,
        );
      } finally {
        events.child.kill('SIGCONT');
        events.child.kill('SIGINT');
      }
    });
  },
);

privTest(
  'with no reader no events are written or lost, and a reader started later sees only what follows',
  async (t) => {
    await withAgent(['--bpf-events-ring-size', '4096'], async (lab, root) => {
      // Ten times what the ring holds, with nobody reading.
      t.is(udpBurst(lab.lab, lab.client, lab.addr.server4, 8080, 300), 300);
      const metrics = readPinnedMetrics(root);
      t.true(reasonTotal(metrics, 'CT_NEW') >= 290, 'the burst created its connections');
      t.is(reasonTotal(metrics, 'EVENT_LOST'), 0, 'no reader, so nothing was lost');
      const events = startEvents(lab.router, root, false);
      try {
        await readerReady(root);
        const r = await tcpExchange(lab.lab, lab.client, {
          host: lab.addr.server4,
          port: 8080,
          rounds: 1,
          bytes: 10,
          gapMs: 0,
        });
        t.true(r.ok);
        t.true(
          await until(() => events.lines.some((l) => l.includes('[NEW]') && l.includes(`sport=${r.localPort} `)), 10),
          events.lines.join('\n'),
        );
        t.false(
          events.lines.some((l) => l.includes('[NEW] udp')),
          `the burst before the reader started is not replayed: ${events.lines
            .filter((l) => l.includes('udp'))
            .slice(0, 3)
            .join(' | ')}`,
        );
        t.false(events.lines.some((l) => l.includes('[LOST]')));
      } finally {
        events.child.kill('SIGINT');
      }
    });
  },
);
