/**
 * What the agent knows about node-redis clients, for the health hatch (src/instances.ts
 * ResourceKind). A client is announced at its `connect()` (./index.ts).
 *
 * A probe is `PING` through the app's own client (`sendCommand(['PING'])`): no new connection.
 * Redis answers a connection's commands in order, so a PING behind the app's commands (a BLPOP,
 * a long pipeline) would wait for them and fail the check for nothing. node-redis keeps its queue
 * private, so the commands queue's patch counts each queue's commands in flight itself, and the
 * probe's PING passes a gate there: the first command its own synchronous call adds is looked at
 * before it is queued, and on a queue with commands in flight it is not queued at all (the probe
 * answers busy, not probed). Only the probe's own command meets the gate.
 * A client that is not ready (reconnecting, its server not answering) fails its check; one in
 * pub/sub mode is reported, not probed; a closed one is not listed.
 * Limitations: commands in flight before the hatches were turned on are not counted; the fields
 * read (`isOpen`, `isReady`, `isPubSubActive`, `options`) are node-redis 4 to 6's public getters,
 * and 4.1 has no `isReady` (its probe, sent while it reconnects, fails by the health timeout).
 */
import { channels, type InstanceEvent } from '../../src/bus';
import type { ResourceKind } from '../../src/instances';

interface ClientSeen {
  isOpen?: unknown;
  isReady?: unknown;
  isPubSubActive?: unknown;
  options?: {
    url?: unknown;
    database?: unknown;
    socket?: { host?: unknown; port?: unknown; path?: unknown };
  };
  sendCommand?: (args: string[]) => Promise<unknown>;
}

/**
 * Commands in flight per commands queue, held on the queue (node-redis's own internal object, never
 * the app's) under a symbol of ours: a command's start and end are a property read and write, not
 * lookups and writes in a WeakMap.
 */
const IN_FLIGHT = Symbol('hatch-agent.inFlight');
type Counted = { [IN_FLIGHT]?: number };

export function started(queue: object): void {
  const q = queue as Counted;
  q[IN_FLIGHT] = (q[IN_FLIGHT] ?? 0) + 1;
}
export function settled(queue: object): void {
  const q = queue as Counted;
  const n = q[IN_FLIGHT] ?? 0;
  if (n > 0) q[IN_FLIGHT] = n - 1;
}

function inFlight(queue: object): number {
  return (queue as Counted)[IN_FLIGHT] ?? 0;
}

class Busy extends Error {
  constructor(readonly queued: number) {
    super('busy');
  }
}

/** Open only during a probe's own synchronous `sendCommand` call. */
let probing = false;

/** At the gate: undefined lets the command through; a rejected promise keeps the probe's PING out of a busy queue. */
export function gate(queue: object): Promise<never> | undefined {
  if (!probing) return undefined;
  probing = false;
  const n = inFlight(queue);
  return n > 0 ? Promise.reject(new Busy(n)) : undefined;
}

function target(c: ClientSeen): string {
  const o = c.options;
  if (!o) return '';
  const s = o.socket;
  if (typeof s?.path === 'string' && s.path) return s.path;
  let host = s?.host;
  let port = s?.port;
  if ((host === undefined || port === undefined) && typeof o.url === 'string') {
    try {
      const u = new URL(o.url);
      host ??= u.hostname;
      port ??= u.port || 6379;
    } catch {
      // an unparsable URL: node-redis reports it itself
    }
  }
  return `${String(host ?? 'localhost')}:${String(port ?? 6379)}/${String(o.database ?? 0)}`;
}

export const nodeRedisKind: ResourceKind<ClientSeen> = {
  system: 'redis',
  kind: 'node-redis',
  max: 100,
  target,
  listed: (c) => c.isOpen !== false,
  async probe(c) {
    // node-redis 4.1 (@redis/client 1.1) has no isReady: its PING waits in the offline queue while
    // it reconnects, and the check fails by its timeout instead.
    if (c.isReady === false || (c.isReady === undefined && c.isOpen !== true))
      throw new Error('not connected (not ready)');
    if (c.isPubSubActive === true) return 'in pub/sub mode; connected, not probed';
    if (typeof c.sendCommand !== 'function') throw new Error('no sendCommand()');
    let sent: Promise<unknown>;
    probing = true;
    try {
      sent = c.sendCommand(['PING']);
    } finally {
      probing = false;
    }
    try {
      return `PING answered ${String(await sent)}`;
    } catch (err) {
      if (err instanceof Busy) return `busy with ${err.queued} of the app's commands; connected, not probed`;
      throw err;
    }
  },
};

export function announceClient(client: object): void {
  if (channels.instance.hasSubscribers)
    channels.instance.publish({ of: nodeRedisKind, instance: client } satisfies InstanceEvent);
}
