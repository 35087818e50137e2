/**
 * Check-ins, the dead man's switch a cron job needs, in the healthchecks.io convention (any
 * compatible server works), with HATCH_CHECKIN_URL:
 * - at start, `GET <url>/start?rid=<run-id>`;
 * - at the end (src/ending.ts), a POST to `<url>?rid=…` when the run ends with exit code 0,
 *   `<url>/<exit code>?rid=…` for another code (healthchecks counts any code but 0 as a failure),
 *   `<url>/fail?rid=…` for a death by signal. Its body is the end of the run's log: the flight
 *   recorder's last lines that fit in MAX_BODY bytes, then one line saying how the run ended.
 * A server (the process listened for connections) sends only the start ping.
 *
 * Neither blocks nor fails the app:
 * - the start ping goes out on the event loop through Node's own http.request (the original, not
 *   the agent's wrapper: the agent's pings are no app traffic), its socket unref'd, so it never
 *   keeps the process alive; an end that comes before its answer aborts it (its bytes, once
 *   written, still reach the server before the end ping, which is only sent after);
 * - the end ping is synchronous (src/sync-http.ts: a child process), since the loop is ending;
 * - each is bounded by HATCH_CHECKIN_TIMEOUT_MS; a failure is logged once, in one line (the URL is
 *   a secret of sorts: only its origin is printed).
 * Limitations: a run that ends in its first tick (before the start ping's connection opens) sends
 * only the end ping; a host name the resolver hangs on keeps a natural end waiting for the resolver
 * (getaddrinfo cannot be cancelled), the exit paths (process.exit, crash, signal) do not wait.
 */
import type * as http from 'node:http';
import type { Config } from './config';
import { onEnding, offEnding, type Ending } from './ending';
import { currentRun } from './run';
import { syncRequest } from './sync-http';
import { originalOf } from './shim';
import { log } from './log';

/** The end ping's body at most, bytes (healthchecks keeps 100 kB; a run's last lines are enough). */
export const MAX_BODY = 10_000;

/** The start ping is sent once per process, however often the agent is stopped and started. */
let startSent = false;

/** Whether the process serves connections: a server patch saw one listen, or one still listens. */
function isServer(): boolean {
  if (currentRun().server) return true;
  try {
    const info = (process as { getActiveResourcesInfo?: () => string[] }).getActiveResourcesInfo?.() ?? [];
    return info.includes('TCPServerWrap') || info.includes('PipeServerWrap');
  } catch {
    return false;
  }
}

function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return 'the check-in URL';
  }
}

/** The lines that fit in MAX_BODY bytes, the newest kept, then the ending's own line. */
export function endBody(lines: readonly string[], last: string): string {
  let budget = MAX_BODY - Buffer.byteLength(last) - 1;
  const kept: string[] = [];
  for (let i = lines.length - 1; i >= 0 && budget > 0; i--) {
    const n = Buffer.byteLength(lines[i]!) + 1;
    if (n > budget) break;
    kept.push(lines[i]!);
    budget -= n;
  }
  kept.reverse().push(last);
  const body = kept.join('\n') + '\n';
  // A single ending line longer than the whole budget (a huge error message): cut.
  return Buffer.byteLength(body) <= MAX_BODY ? body : Buffer.from(body).subarray(0, MAX_BODY).toString('utf8');
}

/** How the run ended, in one line of text. */
export function endLine(job: string, runId: string, e: Ending): string {
  const how =
    e.outcome === 'signal'
      ? `killed by ${e.signal}`
      : e.crash !== undefined
        ? `${e.crash.origin}: ${e.crash.name}: ${e.crash.message.split('\n')[0]}; exit code ${e.code}`
        : `exit code ${e.code}`;
  return `hatch-agent: job ${job} run ${runId} ended (${e.outcome}) after ${Math.round(e.duration)} ms: ${how}`;
}

export class Checkins {
  private startReq: http.ClientRequest | undefined;
  private readonly url: string;
  private readonly timeoutMs: number;

  constructor(
    config: Pick<Config, 'checkinUrl' | 'checkinTimeoutMs'>,
    /** The run's log lines so far, oldest first (the flight recorder's). */
    private readonly lines: () => readonly string[],
  ) {
    this.url = config.checkinUrl!;
    this.timeoutMs = config.checkinTimeoutMs;
  }

  start(): void {
    onEnding(this.onEnd);
    if (!startSent) {
      startSent = true;
      this.sendStart();
    }
  }

  stop(): void {
    offEnding(this.onEnd);
  }

  private failed(what: string, why: string): void {
    log.warnOnce(
      'checkin',
      `check-in: ${what} to ${origin(this.url)} (HATCH_CHECKIN_URL) failed: ${why}; the app goes on without it`,
    );
  }

  private sendStart(): void {
    const target = `${this.url}/start?rid=${encodeURIComponent(currentRun().id)}`;
    try {
      const mod = (target.startsWith('https:') ? require('node:https') : require('node:http')) as typeof http;
      const request = originalOf(mod.request);
      const req = request(target, { method: 'GET', agent: false, headers: { 'user-agent': 'hatch-agent' } }, (res) => {
        this.startReq = undefined;
        res.resume();
        if ((res.statusCode ?? 0) >= 400) this.failed('the start ping', `status ${res.statusCode}`);
      });
      this.startReq = req;
      req.on('socket', (s) => s.unref());
      req.setTimeout(this.timeoutMs, () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', (err) => {
        this.startReq = undefined;
        this.failed('the start ping', err.message);
      });
      req.end();
    } catch (err) {
      this.failed('the start ping', (err as Error).message);
    }
  }

  private readonly onEnd = (e: Ending): void => {
    // Still waiting for the start ping's answer: aborted (what it wrote is on its way already).
    const pending = this.startReq;
    this.startReq = undefined;
    if (pending !== undefined) {
      pending.removeAllListeners('error');
      pending.on('error', () => {});
      pending.destroy();
    }
    if (isServer()) return;
    const run = currentRun();
    const rid = `?rid=${encodeURIComponent(run.id)}`;
    const url =
      e.outcome === 'signal'
        ? `${this.url}/fail${rid}`
        : e.code === 0
          ? `${this.url}${rid}`
          : `${this.url}/${e.code}${rid}`;
    let lines: readonly string[] = [];
    try {
      lines = this.lines();
    } catch {
      // the log could not be read: the ending line alone
    }
    const body = endBody(lines, endLine(run.job, run.id, e));
    const r = syncRequest({
      url,
      method: 'POST',
      headers: { 'content-type': 'text/plain; charset=utf-8', 'user-agent': 'hatch-agent' },
      body,
      timeoutMs: this.timeoutMs,
    });
    if (r.error !== undefined) this.failed('the end ping', r.error);
    else if ((r.status ?? 0) >= 400) this.failed('the end ping', `status ${r.status}`);
  };
}
