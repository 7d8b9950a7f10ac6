// The stateful firewall end to end: real traffic from a client namespace
// through a router namespace running `tsct agent` on eth1 (LAN) and eth2 (WAN)
// to a server namespace, the rules loaded with the real CLI (`tsct policy
// apply` / `import-iptables`) inside the router's namespace. One lab and one
// agent serve the file's tests, run one after another; each test loads its own
// rules. Every probe is bounded (a connect gives up after PROBE_S seconds);
// the lab, its pins, the stored policy file and every process go at the end,
// also when a test fails.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import test, { ExecutionContext } from 'ava';
import { lockPathFor } from '../src/agent/lock';
import { AgentHandle, CliResult, startAgentIn, tsctIn } from '../lab/agentProcess';
import { buildRouterLab, RouterLab } from '../lab/routerLab';
import { labAgentArgs } from '../lab/routerAgent';
import { injectFrames } from '../lab/inject';
import { ethernet, ipPacket } from '../lab/packetCraft';
import { udpExchange, udpToClosedPort } from '../lab/traffic';
import { privTestSerial } from './helpers/privilege';

const CLIENT = '10.200.1.2';
/** The LAN behind the router's eth1, by address (see the in-dev test at the end for why not by device). */
const LAN = '10.200.1.0/24';
const SERVER = '10.200.2.2';
/** TCP ports the server listens on (each answers one HTTP request), its UDP echo port, a port it leaves closed. */
const SERVER_TCP = [80, 2222, 8080, 8081, 8082, 8083, 8084];
const UDP_ECHO = 5300;
const UDP_CLOSED = 5301;
const UDP_OTHER = 5302;
/** The client listens here, for connections opened from the WAN side. */
const CLIENT_TCP = 8090;
const PROBE_S = 3;
const TEST_TIMEOUT_MS = 300_000;

const SERVERS = `
const net = require('net'), dgram = require('dgram');
const [tcp, udp, maxSeconds] = process.argv.slice(1);
const ports = tcp.split(',').filter(Boolean).map(Number);
let listening = 0;
for (const port of ports)
  net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => s.end('HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nhello from port ' + port + '\\n'));
  }).listen(port, '0.0.0.0', () => { if (++listening === ports.length) console.log('ready'); });
for (const port of udp.split(',').filter(Boolean).map(Number)) {
  const u = dgram.createSocket('udp4');
  u.on('message', (m, r) => u.send(m, r.port, r.address));
  u.bind(port, '0.0.0.0');
}
setTimeout(() => process.exit(0), Number(maxSeconds) * 1000);
`;

interface Env {
  lab: RouterLab;
  root: string;
  dir: string;
  agent: AgentHandle;
}

let started: Promise<Env> | null = null;
let cleanup: (() => Promise<void>) | null = null;

async function startServers(lab: RouterLab, ns: string, tcp: number[], udp: number[]): Promise<void> {
  const child = lab.lab.spawn(ns, process.execPath, ['-e', SERVERS, tcp.join(','), udp.join(','), '900']);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`servers in ${ns} did not start`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => reject(new Error(`servers in ${ns} exited (${code})`)));
  });
}

/** The shared lab and agent, started by the first test that needs them. */
function env(): Promise<Env> {
  started ??= (async () => {
    const lab = buildRouterLab('tsct-fwe2e');
    const root = `/sys/fs/bpf/${lab.lab.id}`;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${lab.lab.id}-`));
    let agent: AgentHandle | null = null;
    cleanup = async () => {
      if (agent) await agent.stop();
      await tsctIn(lab.router, ['uninstall', '--bpf-root', root]);
      lab.lab.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(root, { recursive: true, force: true });
      fs.rmSync(lockPathFor(root).replace(/\.lock$/, '.policy.json'), { force: true });
    };
    agent = await startAgentIn(
      lab.router,
      labAgentArgs(root, 'eth1,eth2', ['--prometheus-serve-addr', 'off']),
      240_000,
    );
    await startServers(lab, lab.server, SERVER_TCP, [UDP_ECHO]);
    await startServers(lab, lab.client, [CLIENT_TCP], []);
    return { lab, root, dir, agent };
  })();
  return started;
}

test.after.always(async () => {
  if (started) await started.catch(() => undefined);
  if (cleanup) await cleanup();
});

/** 'connected', 'refused', 'timeout', or what else happened. */
type Outcome = string;

/** A TCP connect from ns, given up after PROBE_S seconds: what the caller saw, and how long it took. */
function tcpProbe(e: Env, ns: string, host: string, port: number): { outcome: Outcome; ms: number } {
  const t0 = Date.now();
  const r = spawnSync(
    'ip',
    ['netns', 'exec', ns, 'timeout', String(PROBE_S), 'bash', '-c', `exec 3<>/dev/tcp/${host}/${port}`],
    { timeout: 30_000, encoding: 'utf8' },
  );
  const ms = Date.now() - t0;
  if (r.status === 0) return { outcome: 'connected', ms };
  if (r.status === 124) return { outcome: 'timeout', ms };
  if (/refused/i.test(r.stderr)) return { outcome: 'refused', ms };
  return { outcome: `exit ${r.status}: ${r.stderr.trim()}`, ms };
}

const fromClient = (e: Env, port: number) => tcpProbe(e, e.lab.client, SERVER, port).outcome;
const fromServer = (e: Env, port: number) => tcpProbe(e, e.lab.server, CLIENT, port).outcome;

/** curl from the client to the server, from a given local port; the body, or '' and why. */
function curl(e: Env, port: number, localPort: number): { body: string; code: number | null; err: string } {
  const r = spawnSync(
    'ip',
    [
      'netns',
      'exec',
      e.lab.client,
      'curl',
      '-sS',
      '-m',
      '10',
      '--local-port',
      String(localPort),
      `http://${SERVER}:${port}/`,
    ],
    { timeout: 30_000, encoding: 'utf8' },
  );
  return { body: r.stdout ?? '', code: r.status, err: r.stderr ?? '' };
}

function tsct(e: Env, ...args: string[]): Promise<CliResult> {
  return tsctIn(e.lab.router, [...args, '--bpf-root', e.root]);
}

async function apply(t: ExecutionContext, e: Env, name: string, text: string): Promise<void> {
  const file = path.join(e.dir, name);
  fs.writeFileSync(file, text);
  const r = await tsct(e, 'policy', 'apply', '-f', file);
  t.is(r.code, 0, `apply ${name}: ${r.stderr}`);
}

async function flushAll(t: ExecutionContext, e: Env): Promise<void> {
  const p = await tsct(e, 'policy', 'flush');
  t.is(p.code, 0, p.stderr);
  const c = await tsct(e, 'bpf', 'ct', 'flush', 'global');
  t.is(c.code, 0, c.stderr);
}

interface JsonConn {
  proto: string;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  flags: string[] | string;
}

async function conns(t: ExecutionContext, e: Env): Promise<JsonConn[]> {
  const r = await tsct(e, 'bpf', 'ct', 'list', 'global', '-o', 'json');
  t.is(r.code, 0, r.stderr);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as JsonConn);
}

const touches = (c: JsonConn, proto: string, port: number) =>
  c.proto.toLowerCase() === proto && (c.sport === port || c.dport === port);

/** Seed 002's router policy on the forward hook. */
const SEED_002 = `# seed 002: established and related pass, new TCP to port 80 from the LAN, the rest dropped
hooks:
  forward:
    policy: drop
    rules:
      - ct-state: [ESTABLISHED, RELATED]
        action: accept
      - ct-state: INVALID
        action: drop
        comment: invalid
      - protocol: tcp
        dport: 80
        src: ${LAN}
        ct-state: NEW
        action: accept
        comment: web from the LAN
      - protocol: udp
        dport: [${UDP_ECHO}, ${UDP_CLOSED}]
        src: ${LAN}
        ct-state: NEW
        action: accept
`;

privTestSerial(
  "seed 002 on the router's forward hook: LAN to port 80 works, the WAN side and other ports are dropped, an ICMP error passes as related, a SYN+FIN is dropped as invalid, denied connections leave no entry",
  async (t) => {
    t.timeout(TEST_TIMEOUT_MS);
    const e = await env();
    await flushAll(t, e);
    // Without rules every probe connects: what the rules then stop is theirs.
    t.is(fromClient(e, 80), 'connected');
    t.is(fromClient(e, 2222), 'connected');
    t.is(fromServer(e, CLIENT_TCP), 'connected', 'the server can reach the client without rules');
    t.is(udpToClosedPort(e.lab.lab, e.lab.client, SERVER, UDP_OTHER), 'refused');
    await flushAll(t, e);

    await apply(t, e, 'seed-002.yaml', SEED_002);
    const http = curl(e, 80, 40080);
    t.is(http.code, 0, `curl: ${http.err}`);
    t.regex(http.body, /hello from port 80/, 'the LAN client gets the reply of port 80');
    t.is(fromServer(e, CLIENT_TCP), 'timeout', 'a new connection from the WAN side is dropped');
    t.is(fromClient(e, 2222), 'timeout', 'another port from the LAN is dropped');
    t.true(udpExchange(e.lab.lab, e.lab.client, SERVER, UDP_ECHO, 3).ok, 'the allowed UDP flow gets its replies');
    t.is(
      udpToClosedPort(e.lab.lab, e.lab.client, SERVER, UDP_CLOSED),
      'refused',
      "the server's port unreachable about an allowed flow passes as related",
    );
    t.is(
      udpToClosedPort(e.lab.lab, e.lab.client, SERVER, UDP_OTHER),
      'timeout',
      'a UDP port the rules do not allow is dropped before the server can answer',
    );

    // A SYN+FIN to the allowed port, from the client's device to the router's: +inv, dropped by the INVALID rule.
    const mac = (ns: string, dev: string) => e.lab.lab.exec(ns, 'cat', [`/sys/class/net/${dev}/address`]).trim();
    const synFin = ethernet(
      ipPacket({ src: CLIENT, dst: SERVER, l4: { tcp: { sport: 40099, dport: 80, flags: 'SF', seq: 7 } } }),
      { src: mac(e.lab.client, 'eth0'), dst: mac(e.lab.router, 'eth1') },
    );
    t.is(injectFrames(e.lab.lab, e.lab.client, 'eth0', [synFin]), 1);

    const list = await conns(t, e);
    t.false(
      list.some((c) => touches(c, 'tcp', 40099)),
      'the SYN+FIN left no entry',
    );
    t.true(
      list.some((c) => c.proto.toLowerCase() === 'tcp' && c.sport === 40080 && c.dport === 80 && c.src === CLIENT),
      `the allowed connection is in the table: ${JSON.stringify(list)}`,
    );
    t.true(
      list.some((c) => touches(c, 'udp', UDP_CLOSED)),
      'the allowed UDP flow the ICMP error was about is tracked',
    );
    for (const [proto, port] of [
      ['tcp', 2222],
      ['tcp', CLIENT_TCP],
      ['udp', UDP_OTHER],
    ] as const) {
      t.false(
        list.some((c) => touches(c, proto, port)),
        `the denied ${proto} connection to ${port} left no entry: ${JSON.stringify(list.filter((c) => touches(c, proto, port)))}`,
      );
    }

    const shown = await tsct(e, 'policy', 'list');
    t.is(shown.code, 0, shown.stderr);
    const webLine = shown.stdout.split('\n').find((l) => l.includes('web from the LAN'));
    t.truthy(webLine, shown.stdout);
    t.true(Number(webLine!.trim().split(/\s+/)[0]) >= 1, `the port 80 rule counted its SYN: ${webLine}`);
    const invLine = shown.stdout.split('\n').find((l) => l.includes('/* invalid */'));
    t.truthy(invLine, shown.stdout);
    t.is(Number(invLine!.trim().split(/\s+/)[0]), 1, `the INVALID rule dropped the SYN+FIN: ${invLine}`);
    t.regex(shown.stdout, /^Chain forward \(policy DROP [1-9]\d* packets/m, 'the denied packets met the policy');
  },
);

privTestSerial(
  'reject with tcp-reset: the client is refused at once; reject of UDP gives port unreachable',
  async (t) => {
    t.timeout(TEST_TIMEOUT_MS);
    const e = await env();
    await flushAll(t, e);
    t.is(fromClient(e, 8081), 'connected', 'the server listens on the port the rules reject');
    await flushAll(t, e);
    await apply(
      t,
      e,
      'reject.yaml',
      `hooks:
  forward:
    policy: drop
    rules:
      - ct-state: [ESTABLISHED, RELATED]
        action: accept
      - protocol: tcp
        dport: 8080
        src: ${LAN}
        action: accept
      - protocol: tcp
        dport: 8081
        action: reject with tcp-reset
      - protocol: udp
        dport: ${UDP_ECHO}
        action: reject
`,
    );
    t.is(fromClient(e, 8080), 'connected');
    const rejected = tcpProbe(e, e.lab.client, SERVER, 8081);
    t.is(rejected.outcome, 'refused', 'the RST says connection refused');
    t.true(rejected.ms < (PROBE_S * 1000) / 2, `refused at once, not after a timeout: ${rejected.ms} ms`);
    t.is(fromClient(e, 8082), 'timeout', 'the policy drops, it does not reject');
    t.is(
      udpToClosedPort(e.lab.lab, e.lab.client, SERVER, UDP_ECHO),
      'refused',
      'the open UDP echo port is rejected with a port unreachable before the server sees it',
    );
    const list = await conns(t, e);
    t.false(
      list.some((c) => touches(c, 'tcp', 8081) || touches(c, 'udp', UDP_ECHO)),
      `rejected connections leave no entry: ${JSON.stringify(list)}`,
    );
  },
);

privTestSerial('custom chains: jump, an explicit return and the end of a chain decide real connections', async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  const e = await env();
  await flushAll(t, e);
  await apply(
    t,
    e,
    'chains.yaml',
    `hooks:
  forward:
    policy: drop
    rules:
      - ct-state: [ESTABLISHED, RELATED]
        action: accept
      - protocol: tcp
        src: ${LAN}
        action: jump lan
      - protocol: tcp
        dport: 8082
        action: accept
        comment: reached when lan returns
chains:
  lan:
    - protocol: tcp
      dport: 8080
      action: accept
    - action: jump check
    - protocol: tcp
      dport: 8081
      action: accept
      comment: reached when check falls off its end
    - protocol: tcp
      dport: 8082
      action: return
    - action: drop
  check:
    - protocol: tcp
      dport: 8083
      action: reject with tcp-reset
    - src: 10.200.1.0/24
      protocol: tcp
      dport: 8084
      action: return
`,
  );
  const seen = Object.fromEntries([8080, 8081, 8082, 8083, 8084].map((p) => [p, fromClient(e, p)]));
  t.deepEqual(seen, {
    8080: 'connected', // lan accepts
    8081: 'connected', // check ends without a verdict, lan goes on and accepts
    8082: 'connected', // lan returns to forward, which accepts
    8083: 'refused', // check rejects inside two levels of jumps
    8084: 'timeout', // check returns, lan drops
  });
  t.is(fromServer(e, CLIENT_TCP), 'timeout', 'the WAN side never enters lan: the policy drops');
});

/** The filter table the iptables test writes, as iptables commands (run in the router's namespace). */
const IPTABLES_RULES: string[][] = [
  ['-P', 'FORWARD', 'DROP'],
  ['-N', 'LAN_WEB'],
  ['-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'],
  ['-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP'],
  ['-A', 'FORWARD', '-s', LAN, '-p', 'tcp', '-j', 'LAN_WEB'],
  ['-A', 'FORWARD', '-s', LAN, '-p', 'tcp', '--dport', '8082', '-j', 'ACCEPT'],
  [
    '-A',
    'FORWARD',
    '-s',
    LAN,
    '-p',
    'udp',
    '--dport',
    String(UDP_ECHO),
    '-m',
    'state',
    '--state',
    'NEW',
    '-j',
    'ACCEPT',
  ],
  ['-A', 'FORWARD', '-s', LAN, '-p', 'udp', '-j', 'REJECT', '--reject-with', 'icmp-port-unreachable'],
  [
    '-A',
    'LAN_WEB',
    '-p',
    'tcp',
    '-m',
    'multiport',
    '--dports',
    '80,8080',
    '-m',
    'comment',
    '--comment',
    'web',
    '-j',
    'ACCEPT',
  ],
  [
    '-A',
    'LAN_WEB',
    '-s',
    '10.200.1.0/24',
    '-p',
    'tcp',
    '--dport',
    '8081',
    '-j',
    'REJECT',
    '--reject-with',
    'tcp-reset',
  ],
  ['-A', 'LAN_WEB', '-p', 'tcp', '--dport', '8082', '-j', 'RETURN'],
  ['-A', 'LAN_WEB', '-p', 'tcp', '--dport', '8083', '-j', 'DROP'],
];

/** What the iptables test probes: each decided by the filter table above. */
function probeAll(e: Env): Record<string, Outcome> {
  const out: Record<string, Outcome> = {};
  for (const p of [80, 8080, 8081, 8082, 8083, 8084]) out[`tcp ${p}`] = fromClient(e, p);
  out[`udp ${UDP_ECHO}`] = udpExchange(e.lab.lab, e.lab.client, SERVER, UDP_ECHO, 2).ok ? 'answered' : 'no answer';
  out[`udp ${UDP_OTHER}`] = udpToClosedPort(e.lab.lab, e.lab.client, SERVER, UDP_OTHER);
  out[`wan tcp ${CLIENT_TCP}`] = fromServer(e, CLIENT_TCP);
  return out;
}

privTestSerial(
  'import-iptables on a real iptables-save dump decides the same connections as iptables did; what it cannot map it refuses by line',
  async (t) => {
    t.timeout(TEST_TIMEOUT_MS);
    const e = await env();
    const ipt = (...args: string[]) => e.lab.lab.exec(e.lab.router, 'iptables', args, { timeoutMs: 30_000 });
    await flushAll(t, e);
    let byIptables: Record<string, Outcome>;
    let dump: string;
    try {
      for (const rule of IPTABLES_RULES) ipt(...rule);
      dump = e.lab.lab.exec(e.lab.router, 'iptables-save', ['-t', 'filter']);
      t.log(dump);
      byIptables = probeAll(e);
    } finally {
      // The router's own filter table only; the agent decides from here on.
      ipt('-F');
      ipt('-X');
      ipt('-P', 'FORWARD', 'ACCEPT');
    }
    t.deepEqual(
      byIptables,
      {
        'tcp 80': 'connected',
        'tcp 8080': 'connected',
        'tcp 8081': 'refused',
        'tcp 8082': 'connected',
        'tcp 8083': 'timeout',
        'tcp 8084': 'timeout',
        [`udp ${UDP_ECHO}`]: 'answered',
        [`udp ${UDP_OTHER}`]: 'refused',
        [`wan tcp ${CLIENT_TCP}`]: 'timeout',
      },
      'iptables decided as its rules say',
    );
    await flushAll(t, e);

    const file = path.join(e.dir, 'filter.rules');
    fs.writeFileSync(file, dump);
    const imported = await tsct(e, 'policy', 'import-iptables', '-f', file);
    t.is(imported.code, 0, imported.stderr);
    t.regex(imported.stdout, /applied/);
    t.deepEqual(probeAll(e), byIptables, 'tsct decides every probe as iptables did');

    // A match the importer does not map, as iptables-save writes it: refused by its line, nothing changes.
    const limited = dump.replace(
      /^COMMIT$/m,
      `-A FORWARD -s 10.200.1.0/24 -p tcp -m tcp --dport 8084 -m limit --limit 10/sec -j ACCEPT\nCOMMIT`,
    );
    const limitLine = limited.split('\n').findIndex((l) => l.includes('-m limit')) + 1;
    const limitedFile = path.join(e.dir, 'limited.rules');
    fs.writeFileSync(limitedFile, limited);
    const refused = await tsct(e, 'policy', 'import-iptables', '-f', limitedFile);
    t.not(refused.code, 0);
    t.is(refused.stderr.trim().split('\n').length, 1, refused.stderr);
    t.true(refused.stderr.includes(`limited.rules:${limitLine}:`), `names line ${limitLine}: ${refused.stderr}`);
    t.regex(refused.stderr, /limit/);
    t.is(fromClient(e, 8084), 'timeout', 'the refused dump changed nothing');
    t.is(fromClient(e, 8080), 'connected');
  },
);

/** Bad rules files: the one-line error must name the file and this line, and say what is wrong. */
const BAD_FILES: Array<{ name: string; text: string; line: number; why: RegExp }> = [
  {
    name: 'unknown-field.yaml',
    text: `hooks:
  forward:
    policy: drop
    rules:
      - protocol: tcp
        dports: 8080
        action: accept
`,
    line: 6,
    why: /dports/,
  },
  {
    name: 'bad-cidr.yaml',
    text: `hooks:
  forward:
    policy: drop
    rules:
      - protocol: tcp
        src: 10.200.1.0/33
        action: accept
`,
    line: 6,
    why: /10\.200\.1\.0\/33/,
  },
  {
    name: 'jump-loop.yaml',
    text: `hooks:
  forward:
    policy: accept
    rules:
      - action: jump a
chains:
  a:
    - protocol: tcp
      action: jump b
  b:
    - action: jump a
`,
    line: 11,
    why: /loop a → b → a/,
  },
];

privTestSerial(
  'bad rules files through the CLI: non-zero exit, one line naming file:line, live rules unchanged',
  async (t) => {
    t.timeout(TEST_TIMEOUT_MS);
    const e = await env();
    await flushAll(t, e);
    await apply(t, e, 'seed-002.yaml', SEED_002);
    t.is(fromClient(e, 80), 'connected');
    t.is(fromClient(e, 8080), 'timeout');
    const before = (await tsct(e, 'policy', 'list')).stdout;
    for (const bad of BAD_FILES) {
      const file = path.join(e.dir, bad.name);
      fs.writeFileSync(file, bad.text);
      const r = await tsct(e, 'policy', 'apply', '-f', file);
      t.not(r.code, 0, `${bad.name} is refused`);
      const lines = r.stderr.trim().split('\n');
      t.is(lines.length, 1, `${bad.name}: one line: ${r.stderr}`);
      t.regex(lines[0], new RegExp(`${bad.name.replace(/\./g, '\\.')}:${bad.line}:`), lines[0]);
      t.regex(lines[0], bad.why, lines[0]);
      t.log(lines[0]);
    }
    t.is(fromClient(e, 80), 'connected', 'port 80 still allowed');
    t.is(fromClient(e, 8080), 'timeout', 'port 8080 still dropped');
    t.is(fromServer(e, CLIENT_TCP), 'timeout', 'the WAN side still dropped');
    const after = (await tsct(e, 'policy', 'list')).stdout;
    const rulesOf = (s: string) => s.replace(/^\s*\d+\s+\d+\s+/gm, '').replace(/\d+ packets, \d+ bytes/g, '');
    t.is(rulesOf(after), rulesOf(before), 'policy list shows the same rules');
  },
);

// Device names are resolved in the namespace the CLI runs in (netlink, not
// /sys/class/net, which under `nsenter --net=` still shows the host's devices):
// a rule on the LAN device matches what enters through it.
privTestSerial('in-dev eth1 / -i eth1 loaded by the CLI in the router namespace matches the LAN device', async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  const e = await env();
  await flushAll(t, e);
  await apply(
    t,
    e,
    'in-dev.yaml',
    `hooks:
  forward:
    policy: drop
    rules:
      - ct-state: [ESTABLISHED, RELATED]
        action: accept
      - protocol: tcp
        dport: 8080
        in-dev: eth1
        action: accept
`,
  );
  const byRules = fromClient(e, 8080);
  t.log(`rules file, in-dev: eth1, client -> ${SERVER}:8080 SYN: expected connected, actual ${byRules}`);
  await flushAll(t, e);
  const dump = path.join(e.dir, 'in-dev.rules');
  fs.writeFileSync(
    dump,
    `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i eth1 -p tcp -m tcp --dport 8080 -j ACCEPT
COMMIT
`,
  );
  const imported = await tsct(e, 'policy', 'import-iptables', '-f', dump);
  t.is(imported.code, 0, imported.stderr);
  const byDump = fromClient(e, 8080);
  t.log(`iptables dump, -i eth1, client -> ${SERVER}:8080 SYN: expected connected, actual ${byDump}`);
  await flushAll(t, e);
  t.deepEqual({ byRules, byDump }, { byRules: 'connected', byDump: 'connected' });
});
