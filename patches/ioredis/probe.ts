/**
 * What the agent knows about ioredis clients, for the health hatch (src/instances.ts ResourceKind)
 * and for leaving other libraries' connections alone: the one place that reads ioredis's fields.
 *
 * A probe is `PING` through the app's own client: no new connection. Redis answers a connection's
 * commands in order, so a PING sent while the app's commands are in flight would wait behind them
 * (behind a BLPOP, for as long as it blocks) and fail the check for nothing: a client with commands
 * in flight or queued offline is reported busy, not probed. A client that is not `ready`
 * (connecting, reconnecting: its server is not answering) fails its check; one in subscriber mode
 * (RESP2) is reported, not probed; an ended one is not listed.
 * Connections another library makes for itself (BullMQ's, Bull's) are found at construction from
 * the stack: they are neither timed (./index.ts) nor announced here.
 * Limitations: the fields read are ioredis 5/6's (`status`, `commandQueue`, `offlineQueue`,
 * `condition.subscriber`, `options`); a later ioredis that renames them makes a client look idle
 * (probed) or its target unknown, never breaks the app.
 */
import { channels, type InstanceEvent } from '../../src/bus';
import type { ResourceKind } from '../../src/instances';

interface ClientSeen {
  status?: unknown;
  commandQueue?: { length?: unknown };
  offlineQueue?: { length?: unknown };
  condition?: { subscriber?: unknown } | null;
  options?: { host?: unknown; port?: unknown; db?: unknown; path?: unknown; sentinels?: unknown; name?: unknown };
  ping?: () => Promise<unknown>;
}

/** Packages whose own connections are theirs, not the app's. */
const OWNERS = /[\\/]node_modules[\\/](bullmq|bull)[\\/]/;
const owned = new WeakSet<object>();

export function libraryOwned(client: object): boolean {
  return owned.has(client);
}

/** The file of each frame: our own formatter, so an app's (source-map-support's) is not run for it. */
function fileNames(_err: Error, frames: NodeJS.CallSite[]): string {
  return frames.map((f) => f.getFileName() ?? '').join('\n');
}

/** Whether a client being constructed now is made by BullMQ or Bull (one stack trace per client). */
export function markIfLibraryOwned(client: object): boolean {
  const limit = Error.stackTraceLimit;
  const prepare = Error.prepareStackTrace;
  // Put back exactly: an own property where there was none would be a difference the app could see.
  const hadOwn = Object.prototype.hasOwnProperty.call(Error, 'prepareStackTrace');
  let stack: unknown;
  try {
    Error.stackTraceLimit = 30;
    Error.prepareStackTrace = fileNames;
    stack = new Error().stack;
  } finally {
    if (hadOwn) Error.prepareStackTrace = prepare;
    else delete (Error as { prepareStackTrace?: unknown }).prepareStackTrace;
    Error.stackTraceLimit = limit;
  }
  if (typeof stack === 'string' && OWNERS.test(stack)) {
    owned.add(client);
    return true;
  }
  return false;
}

function count(q: { length?: unknown } | undefined): number {
  return typeof q?.length === 'number' ? q.length : 0;
}

export const ioredisKind: ResourceKind<ClientSeen> = {
  system: 'redis',
  kind: 'ioredis',
  max: 100,
  target(c) {
    const o = c.options;
    if (!o) return '';
    if (typeof o.path === 'string' && o.path) return o.path;
    if (Array.isArray(o.sentinels)) return `sentinel ${String(o.name ?? '')}`;
    return `${String(o.host ?? 'localhost')}:${String(o.port ?? 6379)}/${String(o.db ?? 0)}`;
  },
  listed: (c) => c.status !== 'end',
  async probe(c) {
    if (c.status !== 'ready') throw new Error(`not connected (status ${String(c.status)})`);
    if (c.condition?.subscriber) return 'in subscriber mode; connected, not probed';
    const busy = count(c.commandQueue) + count(c.offlineQueue);
    if (busy > 0) return `busy with ${busy} of the app's commands; connected, not probed`;
    if (typeof c.ping !== 'function') throw new Error('no ping()');
    const reply = await c.ping();
    return `PING answered ${String(reply)}`;
  },
};

export function announceClient(client: object): void {
  if (channels.instance.hasSubscribers)
    channels.instance.publish({ of: ioredisKind, instance: client } satisfies InstanceEvent);
}
