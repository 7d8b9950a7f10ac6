// Bounded real traffic inside lab namespaces, with Node's own sockets run in
// child processes there: an echo server, a TCP client that sends and reads
// back, UDP request and reply. Every loop has a count and a deadline.
import { ChildProcess } from 'node:child_process';
import { NamespaceLab } from './namespaceLab';

const ECHO_SERVER = `
const net = require('net'), dgram = require('dgram');
const [port, maxSeconds] = process.argv.slice(1).map(Number);
net.createServer((s) => { s.on('data', (d) => s.write(d)); s.on('error', () => {}); }).listen(port, '::', () => console.log('ready'));
// port + 1 answers "address port" of the peer it sees, and closes: what masquerading shows a server.
net.createServer((s) => { s.end(s.remoteAddress.replace(/^::ffff:/, '') + ' ' + s.remotePort + '\\n'); s.on('error', () => {}); }).listen(port + 1, '::');
const u = dgram.createSocket({ type: 'udp6' });
u.on('message', (m, r) => u.send(m, r.port, r.address));
u.bind(port, '::');
setTimeout(() => process.exit(0), maxSeconds * 1000);
`;

const TCP_CLIENT = `
const net = require('net');
const [host, port, rounds, bytes, gapMs, localPort, deadlineMs] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port), localPort: Number(localPort) || undefined });
let sent = 0, got = 0, round = 0;
const chunk = Buffer.alloc(Number(bytes), 97);
const deadline = setTimeout(() => { console.log(JSON.stringify({ ok: false, why: 'timeout', round, got })); process.exit(1); }, Number(deadlineMs) || 60000);
function next() {
  if (round === Number(rounds)) { s.end(); return; }
  round++; sent += chunk.length; s.write(chunk);
}
s.on('connect', () => { console.log(JSON.stringify({ connected: true, localPort: s.localPort })); next(); });
s.on('data', (d) => { got += d.length; if (got === sent) setTimeout(next, Number(gapMs)); });
s.on('close', () => { clearTimeout(deadline); console.log(JSON.stringify({ ok: got === sent && round === Number(rounds), rounds: round, got })); process.exit(got === sent ? 0 : 1); });
s.on('error', (e) => { console.log(JSON.stringify({ ok: false, why: e.message, round, got })); process.exit(1); });
`;

const UDP_CLIENT = `
const dgram = require('dgram');
const [host, port, count] = process.argv.slice(1);
const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
let got = 0, sent = 0;
s.on('message', () => { got++; if (got === Number(count)) { console.log(JSON.stringify({ ok: true, got, localPort: s.address().port })); process.exit(0); } else send(); });
function send() { sent++; s.send(Buffer.from('ping ' + sent), Number(port), host); }
setTimeout(() => { console.log(JSON.stringify({ ok: false, got })); process.exit(1); }, 10000);
send();
`;

/** Starts the echo server (TCP and UDP on `port`); resolves once it listens. It exits by itself after maxSeconds. */
export function startEchoServer(lab: NamespaceLab, ns: string, port: number, maxSeconds = 120): Promise<ChildProcess> {
  const child = lab.spawn(ns, process.execPath, ['-e', ECHO_SERVER, String(port), String(maxSeconds)]);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('echo server did not start')), 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.on('exit', (code) => reject(new Error(`echo server exited (${code})`)));
  });
}

export interface TcpClientResult {
  ok: boolean;
  rounds?: number;
  got?: number;
  why?: string;
  localPort?: number;
}

/**
 * A TCP client: `rounds` exchanges of `bytes` bytes, `gapMs` apart, then a
 * clean close. Resolves with the outcome; onConnect gets the local port.
 */
export function tcpExchange(
  lab: NamespaceLab,
  ns: string,
  o: {
    host: string;
    port: number;
    rounds: number;
    bytes: number;
    gapMs: number;
    localPort?: number;
    deadlineMs?: number;
  },
  onConnect?: (localPort: number) => void,
): Promise<TcpClientResult> {
  const child = lab.spawn(ns, process.execPath, [
    '-e',
    TCP_CLIENT,
    o.host,
    String(o.port),
    String(o.rounds),
    String(o.bytes),
    String(o.gapMs),
    String(o.localPort ?? 0),
    String(o.deadlineMs ?? 60000),
  ]);
  return new Promise((resolve) => {
    let localPort: number | undefined;
    let last: TcpClientResult = { ok: false, why: 'no output' };
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          const msg = JSON.parse(line);
          if (msg.connected) {
            localPort = msg.localPort;
            onConnect?.(msg.localPort);
          } else last = msg;
        } catch {
          // not ours
        }
      }
    });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    // 'close', not 'exit': only then has all of its output been read.
    child.on('close', (code, signal) => {
      if (last.why === 'no output')
        last = { ...last, why: `no output (exit ${code ?? signal}${err ? `: ${err.trim().slice(-300)}` : ''})` };
      resolve({ ...last, localPort });
    });
  });
}

export function udpExchange(
  lab: NamespaceLab,
  ns: string,
  host: string,
  port: number,
  count: number,
): { ok: boolean; got: number; localPort?: number } {
  const out = lab.exec(ns, process.execPath, ['-e', UDP_CLIENT, host, String(port), String(count)], {
    timeoutMs: 15_000,
  });
  return JSON.parse(out.trim().split('\n').pop()!);
}

export function ping(lab: NamespaceLab, ns: string, host: string, count = 3): void {
  lab.exec(ns, 'ping', [...(host.includes(':') ? ['-6'] : []), '-c', String(count), '-i', '0.2', '-W', '2', host], {
    timeoutMs: 15_000,
  });
}

const WHOAMI_CLIENT = `
const net = require('net');
const [host, port, localPort] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port), localPort: Number(localPort) || undefined });
let d = '';
s.on('data', (b) => (d += b));
s.on('end', () => { console.log(d.trim()); process.exit(0); });
s.on('error', (e) => { console.log('error ' + e.message); process.exit(1); });
setTimeout(() => { console.log('error timeout'); process.exit(1); }, 5000);
`;

/** The peer address and port the echo server's whoami port (port + 1) sees for a connection from ns. */
export function whoami(
  lab: NamespaceLab,
  ns: string,
  host: string,
  port: number,
  localPort?: number,
): { addr: string; port: number } {
  const out = lab
    .exec(ns, process.execPath, ['-e', WHOAMI_CLIENT, host, String(port + 1), String(localPort ?? 0)], {
      timeoutMs: 10_000,
    })
    .trim();
  const [addr, p] = out.split(' ');
  return { addr, port: Number(p) };
}

const UDP_REFUSED = `
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect((host, port))
s.send(b'anyone?')
try:
    s.recv(100)
    print('answered')
except ConnectionRefusedError:
    print('refused')
except socket.timeout:
    print('timeout')
`;

/** Sends one UDP datagram to a closed port; 'refused' when the ICMP port unreachable came back to the sender. */
export function udpToClosedPort(lab: NamespaceLab, ns: string, host: string, port: number): string {
  return lab.exec(ns, 'python3', ['-c', UDP_REFUSED, host, String(port)], { timeoutMs: 10_000 }).trim();
}

const UDP_BURST = `
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
got = 0
for i in range(n):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(b'burst %d' % i, (host, port))
    try:
        s.recvfrom(100)
        got += 1
    except socket.timeout:
        pass
    s.close()
print(got)
`;

/** n UDP request/reply exchanges, each from a new socket (a new connection); returns how many replies came back. */
export function udpBurst(lab: NamespaceLab, ns: string, host: string, port: number, n: number): number {
  return Number(
    lab.exec(ns, 'python3', ['-c', UDP_BURST, host, String(port), String(n)], { timeoutMs: 120_000 }).trim(),
  );
}
