/**
 * One HTTP(S) request made synchronously, for the moments when the event loop is ending (an 'exit'
 * listener, a crash, a signal the process is about to die of): nothing asynchronous started there
 * would ever finish.
 *
 * How: child_process.spawnSync of this same Node (`process.execPath -e <script>`), which makes the
 * request with node:http or node:https and prints the status. The body goes in on the child's
 * stdin; the child is killed (SIGKILL) when the timeout passes, so the caller waits at most
 * `timeoutMs` (plus the kill). The child gets the parent's environment without NODE_OPTIONS and
 * without any HATCH_* variable, so it never loads the agent (which would ping again).
 *
 * Cost: the child's start, plus 10-20 ms for its request; all of it is added to the exit that makes
 * it (the parent waits, idle). Measured on the shared 2-CPU test machine (Node 20, a 10 kB POST to a
 * server on 127.0.0.1 in another process, 10 requests): median 187 ms against 176 ms for
 * `node -e 0` at load average 4, 224 ms against 201 ms at load 11; `node -e 0` takes about 100 ms
 * there at load 2 (bench/RESULTS.md, start-up). `node bench/script.mjs --checkin` measures it in a
 * whole exit.
 * Limitations: no redirects are followed; proxies from the environment are not used; options that
 * only NODE_OPTIONS gave (a CA file through --use-openssl-ca) do not reach the child
 * (NODE_EXTRA_CA_CERTS does); the answer's body is not read.
 */
import type * as ChildProcess from 'node:child_process';

export interface SyncRequest {
  url: string;
  /** GET when not given. */
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** The whole request, the child's start included, ms. */
  timeoutMs: number;
}

export interface SyncResult {
  /** The response's status, when one came. */
  status?: number;
  /** Why there is none: refused, timed out, a bad URL, … */
  error?: string;
}

// The child: its request from argv, its body from stdin; prints `<status>` or `E<reason>` and ends
// as soon as the status is known (the body of the answer is not waited for).
const CHILD = `
const d = JSON.parse(process.argv[1]);
const body = require('node:fs').readFileSync(0);
const say = (s) => { process.stdout.write(s); process.exit(0); };
try {
  const u = new URL(d.url);
  const mod = require(u.protocol === 'https:' ? 'node:https' : 'node:http');
  const headers = Object.assign({}, d.headers, { 'content-length': String(body.length) });
  const req = mod.request(u, { method: d.method, headers, agent: false }, (res) => say(String(res.statusCode)));
  req.on('error', (e) => say('E' + (e.code || e.message)));
  req.end(body);
} catch (e) { say('E' + e.message); }
`;

function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (k !== 'NODE_OPTIONS' && !k.startsWith('HATCH_')) env[k] = v;
  return env;
}

/** Makes the request and waits for its status, at most `timeoutMs`. Never throws. */
export function syncRequest(r: SyncRequest): SyncResult {
  try {
    const desc = JSON.stringify({ url: r.url, method: r.method ?? 'GET', headers: r.headers ?? {} });
    // Loaded at the first request, not at start-up (node:child_process brings node:net with it).
    const { spawnSync } = require('node:child_process') as typeof ChildProcess;
    const out = spawnSync(process.execPath, ['-e', CHILD, desc], {
      input: r.body ?? '',
      timeout: r.timeoutMs,
      killSignal: 'SIGKILL',
      env: childEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
      maxBuffer: 64 * 1024,
      windowsHide: true,
    });
    if (out.error !== undefined) {
      const code = (out.error as NodeJS.ErrnoException).code;
      return { error: code === 'ETIMEDOUT' ? `timed out after ${r.timeoutMs} ms` : out.error.message };
    }
    if (out.signal !== null) return { error: `timed out after ${r.timeoutMs} ms` };
    const said = out.stdout.toString('utf8').trim();
    if (/^\d{3}$/.test(said)) return { status: Number(said) };
    if (said.startsWith('E')) return { error: said.slice(1) || 'failed' };
    return { error: `the request's process ended with ${out.status ?? '?'}` };
  } catch (err) {
    return { error: (err as Error).message };
  }
}
