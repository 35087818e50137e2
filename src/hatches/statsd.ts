/**
 * The statsd hatch and the health hatch's StatsD probe: each sends one counter line,
 * `<prefix>hatch.<name>:1|c`, through the sink's transport, unbuffered, and reports what the
 * transport saw. UDP confirms nothing: `sent` means the host resolved and the datagram left
 * without a socket error.
 */
import { segment } from '../sinks/statsd/series';
import type { StatsdTransport } from '../sinks/statsd/transport';
import { jsonPage } from './pages';
import { cleanMsg, type HatchDeps, type Reply } from './reply';

export const STATSD_NOTE =
  'StatsD is UDP: its check passes when the host resolves and the probe left without a socket error; receipt cannot be confirmed.';

/** `<prefix>hatch.<name>:1|c`, the name made metric-safe (at most 64 characters). */
export function hatchLine(prefix: string, name: string): string {
  const safe = name
    .split('.')
    .map((p) => segment(p.slice(0, 64)))
    .join('.')
    .slice(0, 64);
  return `${prefix}hatch.${safe}:1|c`;
}

/** The health check: resolves with the transport's detail, rejects when the send failed. */
export async function statsdProbe(statsd: StatsdTransport, prefix: string): Promise<string> {
  const r = await statsd.send(hatchLine(prefix, 'probe'));
  if (!r.ok) throw new Error(r.detail);
  return r.detail;
}

/** `/statsd?msg=…`: a test counter `hatch.test.<msg>`, answered with the exact line sent. */
export async function statsdHatch(deps: HatchDeps, query: URLSearchParams): Promise<Reply> {
  const statsd = deps.statsd;
  if (!statsd) {
    const json = { error: 'the StatsD sink is off (HATCH_STATSD=off)' };
    return { status: 503, json, html: jsonPage('statsd hatch', json) };
  }
  const line = hatchLine(deps.config.statsdPrefix, 'test.' + cleanMsg(query.get('msg'), 'ping'));
  const r = await statsd.send(line);
  const json = { line, sent: r.ok, detail: r.detail };
  return { status: r.ok ? 200 : 502, json, html: jsonPage('statsd hatch', json) };
}
