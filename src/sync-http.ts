/**
 * One HTTP(S) request made synchronously, for the moments the event loop is gone or about to be:
 * the process's 'exit' event, an uncaught exception, a signal the process is about to die of.
 *
 * How: child_process.spawnSync runs this Node (process.execPath) on a small program given with
 * `-e`; the body goes in on stdin, the answer comes out on stdout as one JSON object. The child's
 * own timer answers `timed out` a little before the deadline; spawnSync kills it (SIGKILL) at
 * `timeoutMs` in any case, so the caller is never held longer. The child gets the parent's
 * environment without NODE_OPTIONS (which may preload this agent) and none of its flags.
 * Cost: starting a Node child, about 40-60 ms on a 2-CPU machine, plus the request itself (see
 * src/sinks/flight-recorder.ts's header for the measured figure).
 * Limitations: no proxy support (node:http has none); redirects are not followed; the answer's
 * body is not read, only its status.
 */
import type * as ChildProcess from 'node:child_process';

export interface SyncRequest {
  url: string;
  method: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  timeoutMs: number;
}

export interface SyncResponse {
  /** The answer's status, when one came. */
  status?: number;
  /** Why no answer came (refused, DNS, timed out, …). */
  error?: string;
}

// The child: argv = [url, method, headers as JSON, deadline (epoch ms)], body on stdin.
const CHILD = `
const [url, method, headers, deadline] = process.argv.slice(1);
let said = false;
function answer(r) { if (said) return; said = true; process.stdout.write(JSON.stringify(r), () => process.exit(0)); }
try {
  const body = require('node:fs').readFileSync(0);
  const u = new URL(url);
  const mod = require(u.protocol === 'https:' ? 'node:https' : 'node:http');
  const left = Math.max(1, Number(deadline) - Date.now());
  setTimeout(() => answer({ error: 'timed out' }), left).unref();
  const h = JSON.parse(headers);
  h['content-length'] = String(body.length);
  const req = mod.request(u, { method, headers: h, agent: false }, (res) => { answer({ status: res.statusCode }); res.resume(); });
  req.on('error', (e) => answer({ error: e.code || e.message }));
  req.end(body);
} catch (e) { answer({ error: String(e && e.message) }); }
`;

/** Makes the request and waits for its status, at most timeoutMs. Never throws. */
export function syncRequest({ url, method, headers = {}, body = '', timeoutMs }: SyncRequest): SyncResponse {
  try {
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    // The child's own deadline comes first, so a slow server is reported as such, not as a kill.
    const deadline = Date.now() + Math.max(1, timeoutMs - 25);
    // Loaded here, not at start-up: most processes never make one.
    const { spawnSync } = require('node:child_process') as typeof ChildProcess;
    const r = spawnSync(process.execPath, ['-e', CHILD, url, method, JSON.stringify(headers), String(deadline)], {
      input: body,
      env,
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
      stdio: ['pipe', 'pipe', 'ignore'],
      windowsHide: true,
    });
    if (r.error !== undefined) {
      const code = (r.error as NodeJS.ErrnoException).code;
      return { error: code === 'ETIMEDOUT' ? `timed out after ${timeoutMs} ms` : r.error.message };
    }
    const out = String(r.stdout ?? '');
    if (out === '') return { error: r.signal !== null ? `timed out after ${timeoutMs} ms` : 'no answer' };
    const parsed = JSON.parse(out) as SyncResponse;
    if (parsed.error === 'timed out') return { error: `timed out after ${timeoutMs} ms` };
    return typeof parsed.status === 'number' ? { status: parsed.status } : { error: String(parsed.error) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}
