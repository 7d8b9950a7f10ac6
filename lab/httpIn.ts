// HTTP GET from inside a lab namespace (the agent and Prometheus listen on
// that namespace's loopback), through a child process that enters it.
import { execFile } from 'node:child_process';
import { NamespaceLab } from './namespaceLab';

const GET = `
const t0 = Date.now();
fetch(process.argv[1]).then(async (r) => {
  const body = await r.text();
  process.stdout.write(JSON.stringify({ status: r.status, ms: Date.now() - t0, body }));
}, (e) => { process.stdout.write(JSON.stringify({ status: 0, ms: Date.now() - t0, body: String(e.cause ?? e) })); });
`;

export interface HttpResult {
  status: number;
  ms: number;
  body: string;
}

export function httpGetIn(ns: string, url: string): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    execFile(
      'nsenter',
      [`--net=${NamespaceLab.path(ns)}`, process.execPath, '-e', GET, url],
      { maxBuffer: 1 << 26, timeout: 20_000 },
      (err, stdout) => {
        if (err && !stdout) return reject(err);
        resolve(JSON.parse(stdout));
      },
    );
  });
}
