/**
 * What an outgoing call carries: `X-Request-ID` (unless the caller set it, or the host is outside
 * HATCH_PROPAGATE_HOSTS) and a W3C `traceparent` whose trace-id is the request ID when the ID is
 * 32 hex digits (a UUID, dashes removed, qualifies), so services traced by OpenTelemetry or
 * Datadog join the same trace. Incoming, a valid traceparent's trace-id becomes the request ID
 * when there is no usable X-Request-ID. Settings (HATCH_REQUEST_ID_HEADER, HATCH_PROPAGATE_HOSTS,
 * HATCH_TRACEPARENT) are read from the active configuration when a call needs them.
 */
import { randomSpanId, ZERO_SPAN } from './random';
import { activeConfig, type Config } from './config';
import { isValidRequestId, newRequestId } from './request-id';
import { channels } from './bus';

/** Host patterns: `api.example.com`, `*.internal` (any subdomain), `host:8080` (that port only). */
export function hostMatcher(patterns: string[] | undefined): (hostname: string, port: string) => boolean {
  if (patterns === undefined) return () => true;
  const rules = patterns.map((p) => {
    const [host, port] = p.toLowerCase().split(':') as [string, string | undefined];
    return { wildcard: host.startsWith('*.'), host: host.startsWith('*.') ? host.slice(1) : host, port };
  });
  return (hostname, port) => {
    const h = hostname.toLowerCase();
    return rules.some(
      (r) => (r.port === undefined || r.port === port) && (r.wildcard ? h.endsWith(r.host) : h === r.host),
    );
  };
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;
const ZERO_TRACE = '0'.repeat(32);

/** The trace-id of a valid version-00 traceparent, else undefined. */
export function traceIdOf(header: unknown): string | undefined {
  if (typeof header !== 'string' || header.length !== 55) return undefined;
  const m = TRACEPARENT.exec(header);
  if (!m || m[1] === ZERO_TRACE || m[2] === ZERO_SPAN) return undefined;
  return m[1];
}

const HEX32 = /^[0-9a-fA-F]{32}$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** A traceparent for an outgoing call from the request `id`, when the ID can be a trace-id. */
export function traceparentFor(id: string): string | undefined {
  let trace: string;
  if (id.length === 36 && UUID.test(id)) {
    // The dashes cut out with slices: a global replace cost twice as much, per outgoing call.
    trace = id.slice(0, 8) + id.slice(9, 13) + id.slice(14, 18) + id.slice(19, 23) + id.slice(24);
  } else if (id.length === 32 && HEX32.test(id)) {
    trace = id;
  } else {
    return undefined;
  }
  trace = trace.toLowerCase();
  if (trace === ZERO_TRACE) return undefined;
  // From a batch: a require() and randomBytes(8) per outgoing call (a Buffer and its backing store
  // each time) were about a tenth of a /fetch request's CPU.
  return `00-${trace}-${randomSpanId()}-01`;
}

/**
 * Whether a header list already names `name` (lower-case), in any case: a flat
 * [name, value, name, value, …] array or an object's own keys. The one check every patch uses
 * before adding a header, so the app's own header always wins and none is doubled.
 */
export function hasHeaderNamed(headers: unknown, name: string): boolean {
  // A name of another length is not lower-cased (a new string for each mixed-case key): lower-casing
  // keeps a string's length, but for `İ`, whose lower case holds a non-ASCII mark no name here has.
  if (Array.isArray(headers)) {
    for (let i = 0; i < headers.length; i += 2) {
      const k = String(headers[i]);
      if (k.length === name.length && k.toLowerCase() === name) return true;
    }
    return false;
  }
  if (headers !== null && typeof headers === 'object') {
    for (const k of Object.keys(headers)) if (k.length === name.length && k.toLowerCase() === name) return true;
  }
  return false;
}

// The host matcher is derived from the active configuration once per configuration object, not per
// outgoing call: the configuration is replaced only when the agent starts.
let matcherOf: Config | undefined;
let matcher: (hostname: string, port: string) => boolean = () => true;
function allowed(config: Config): (hostname: string, port: string) => boolean {
  if (matcherOf !== config) {
    matcher = hostMatcher(config.propagateHosts);
    matcherOf = config;
  }
  return matcher;
}

/** Whether an incoming traceparent's trace-id may become the request ID (HATCH_TRACEPARENT). */
export function traceparentEnabled(): boolean {
  return activeConfig().traceparent;
}

/**
 * The headers an outgoing call to hostname:port should carry for request `id` (lower-case names),
 * or undefined when the host is outside the allowlist.
 */
export function outgoingHeaders(id: string, hostname: string, port: string): Array<[string, string]> | undefined {
  const config = activeConfig();
  if (!allowed(config)(hostname, port)) return undefined;
  const out: Array<[string, string]> = [[config.requestIdHeader, id]];
  if (config.traceparent) {
    const tp = traceparentFor(id);
    if (tp !== undefined) out.push(['traceparent', tp]);
  }
  return out;
}

/**
 * The ID an incoming request gets (the http and http2 server patches): the caller's header when it
 * passes the allowlist (an invalid one is counted as errors{kind=invalid_request_id}), else the
 * trace-id of a valid W3C traceparent, joining the request to its caller's trace, else a new UUID.
 */
export function incomingRequestId(raw: unknown, traceparent: unknown): string {
  if (raw !== undefined) {
    if (isValidRequestId(raw)) return raw;
    if (channels.error.hasSubscribers) channels.error.publish({ kind: 'invalid_request_id' });
  }
  return (traceparentEnabled() ? traceIdOf(traceparent) : undefined) ?? newRequestId();
}
