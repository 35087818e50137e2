/**
 * What the agent knows about pg's Pools and Clients, for the health hatch (src/instances.ts's
 * ResourceKind): the one place that reads their private fields. The patches announce each Pool at
 * its first connect and each Client at its connect (one that never connected has nothing to check).
 *
 * A probe is `SELECT 1` through the app's own Pool or Client, never a new connection, and never
 * queued behind the app's queries: a Client runs one query at a time, so while the app's query runs a
 * probe would wait behind it (failing the check on a long report query) and would put the app's next
 * query behind a queued one, which pg >= 8.19 answers with a DeprecationWarning on the app's stderr.
 * A busy Client is reported connected, not probed. A Pool's probe waits for a free client, as the
 * app's own pool.query would.
 * Limitations: the fields read are pg 8.x's (`_clients`, `_queryQueue`/`queryQueue`,
 * `readyForQuery`, `_queryable`, `_connected`, `_ending`, `_ended`); a later pg that renames them
 * makes Clients look idle (probed) or unlisted, never breaks the app.
 */
import type * as Pg from 'pg';
import { channels, type InstanceEvent } from '../../src/bus';
import type { ResourceKind } from '../../src/instances';

/** A Pool and a Client as read here: pg's types, and the private fields they leave out (unchecked). */
type PoolSeen = Pg.Pool & { _clients?: unknown };
type ClientSeen = Pg.Client & {
  release?: unknown;
  readyForQuery?: unknown;
  _queryQueue?: unknown;
  queryQueue?: unknown;
  _queryable?: unknown;
  _connected?: unknown;
  _ending?: unknown;
  _ended?: unknown;
};

/** Where a pg connection points, as read from a Client, a Pool's options or a connection string. */
type ConnParams = { host?: unknown; port?: unknown; database?: unknown };

/** `host:port/database` of a pg connection's parameters (a Client, or a Pool's options); '' for none. */
function target(o: ConnParams | undefined): string {
  if (!o || typeof o !== 'object') return '';
  return `${o.host ?? 'localhost'}:${o.port ?? 5432}/${o.database ?? ''}`;
}

/** A connection string's host, port and database (its credentials are left out). */
function parseConn(s: unknown): ConnParams | undefined {
  if (typeof s !== 'string') return undefined;
  try {
    const u = new URL(s);
    return { host: u.hostname, port: u.port || 5432, database: u.pathname.slice(1) };
  } catch {
    return undefined;
  }
}

async function selectOne(instance: { query(text: string): Promise<unknown> }): Promise<string> {
  await instance.query('SELECT 1');
  return 'SELECT 1 answered';
}

export const pgPoolKind: ResourceKind<PoolSeen> = {
  system: 'pg',
  kind: 'pool',
  // pools have their own room, so a pool created late is still remembered among churning clients
  max: 100,
  target(pool) {
    const opts = pool.options;
    return target(opts?.host || opts?.database ? opts : parseConn(opts?.connectionString));
  },
  listed: (pool) => !(pool.ending || pool.ended),
  // Clients a pool made are checked through their pool, not one by one.
  parts: (pool) => (Array.isArray(pool._clients) ? pool._clients : []),
  probe: (pool) => selectOne(pool),
};

export const pgClientKind: ResourceKind<ClientSeen> = {
  system: 'pg',
  kind: 'client',
  max: 1000,
  target: (client) => target(client),
  // A client checked out of a pool (it has `release`) belongs to the pool; an ended one has nothing to check.
  listed: (client) => !(typeof client.release === 'function' || client._ending || client._ended || !client._connected),
  async probe(client) {
    const queue = client._queryQueue ?? client.queryQueue;
    const queued = Array.isArray(queue) ? queue.length : 0;
    if (client.readyForQuery === false || queued > 0) {
      if (client._queryable === false) throw new Error('connection lost');
      return `busy with the app's query${queued ? ` (${queued} queued)` : ''}; connected, not probed`;
    }
    return selectOne(client);
  },
};

function announce(of: ResourceKind, instance: object): void {
  if (channels.instance.hasSubscribers) channels.instance.publish({ of, instance } satisfies InstanceEvent);
}

/**
 * The pool announced last (held weakly: an app's dropped pool is not kept). A pool connects for
 * every pool.query(), and an app mostly has one: announcing it again each time was an event and a
 * registry look-up per query for a pool the registry already knew.
 */
let lastPool: WeakRef<object> | undefined;

export const announcePool = (pool: object): void => {
  if (!channels.instance.hasSubscribers || lastPool?.deref() === pool) return;
  lastPool = new WeakRef(pool);
  announce(pgPoolKind, pool);
};
export const announceClient = (client: object): void => announce(pgClientKind, client);
