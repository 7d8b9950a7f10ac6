// Sends raw Ethernet frames out of a device inside a lab namespace, through
// an AF_PACKET socket (python3's, since Node has none). For frames the kernel's
// test-run refuses, such as IP headers cut short. Bounded: the frames given, once.
import { NamespaceLab } from './namespaceLab';

const SENDER = `
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
n = 0
for line in sys.stdin:
    line = line.strip()
    if line:
        s.send(bytes.fromhex(line))
        n += 1
print(n)
`;

/** Sends each frame once out of `dev` in namespace `ns`; returns how many were sent. */
export function injectFrames(lab: NamespaceLab, ns: string, dev: string, frames: Buffer[]): number {
  const out = lab.exec(ns, 'python3', ['-c', SENDER, dev], {
    input: frames.map((f) => f.toString('hex')).join('\n') + '\n',
    timeoutMs: 10_000,
  });
  return Number(out.trim());
}
