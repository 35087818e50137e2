/**
 * What the agent knows about mysql2's Pools and Connections, for the health hatch (src/instances.ts's
 * ResourceKind): the one place that reads their private fields. ./query.ts announces each Pool at its
 * first connection's connect and at its getConnection calls (every pool.query and pool.execute goes
 * through one), and each Connection that is not a pool's at its first query or execute.
 *
 * A probe is `SELECT 1` through the app's own Pool or Connection, never a new connection, and never
 * queued behind the app's queries: a Connection runs one command at a time, so a probe sent while the
 * app's query runs would wait behind it (failing the check on a long report query) and hold up the
 * app's next one. A busy Connection is reported connected, not probed. A Pool's probe waits for a
 * free connection, as the app's own pool.query would. The probe's query is the app's object's own,
 * so it is timed (and commented with the hatch request's ID) like any other.
 * mysql2 closes a Connection after a fatal error (it never reconnects one): it is then no longer
 * listed, like one the app closed, and the app's new one is announced at its first query. A Pool's
 * probe fails while its server is down.
 * Limitations: the fields read are mysql2 3.x's (`config.connectionConfig`, `_allConnections`,
 * `_closed`, `_pool`, `_command`, `_commands`, `_closing`, `_fatalError`, `_protocolError`); a later
 * mysql2 that renames them makes Connections look idle (probed) or Pools' connections listed on their
 * own, never breaks the app.
 */
import { channels, type InstanceEvent } from '../../src/bus';
import type { ResourceKind } from '../../src/instances';

/** Where a connection points, as mysql2's ConnectionConfig holds it (unchecked). */
type Target = { host?: unknown; port?: unknown; database?: unknown; socketPath?: unknown };
type Callback = (err: unknown, rows?: unknown) => void;
type Queryable = { query(sql: string, cb: Callback): unknown };

export type PoolSeen = Queryable & {
  config?: { connectionConfig?: Target };
  _allConnections?: unknown;
  _closed?: unknown;
};
export type ConnectionSeen = Queryable & {
  config?: Target;
  _pool?: unknown;
  _command?: unknown;
  _commands?: unknown;
  _closing?: unknown;
  _fatalError?: unknown;
  _protocolError?: unknown;
};

/** `host:port/database` (or the socket's path), without credentials; '' when it cannot tell. */
function target(c: Target | undefined): string {
  if (!c || typeof c !== 'object') return '';
  const where =
    typeof c.socketPath === 'string' && c.socketPath ? c.socketPath : `${c.host ?? 'localhost'}:${c.port ?? 3306}`;
  return `${where}/${typeof c.database === 'string' ? c.database : ''}`;
}

/** The items of mysql2's queues: an array, a denque (3.0-3.1x: toArray) or its own ring queue (get, length). */
function items(q: unknown): object[] {
  if (Array.isArray(q)) return q as object[];
  if (q === null || typeof q !== 'object') return [];
  const o = q as { toArray?: unknown; get?: unknown; length?: unknown };
  if (typeof o.toArray === 'function') return (o.toArray as () => object[])();
  if (typeof o.get === 'function' && typeof o.length === 'number') {
    const out: object[] = [];
    for (let i = 0; i < o.length; i++) out.push((o.get as (i: number) => object)(i));
    return out;
  }
  return [];
}

function selectOne(instance: Queryable): Promise<string> {
  return new Promise((resolve, reject) => {
    instance.query('SELECT 1', (err) => (err ? reject(err as Error) : resolve('SELECT 1 answered')));
  });
}

export const mysqlPoolKind: ResourceKind<PoolSeen> = {
  system: 'mysql',
  kind: 'pool',
  max: 100,
  target: (pool) => target(pool.config?.connectionConfig),
  listed: (pool) => !pool._closed,
  // Connections a pool made are checked through their pool, not one by one.
  parts: (pool) => items(pool._allConnections),
  probe: (pool) => selectOne(pool),
};

export const mysqlConnectionKind: ResourceKind<ConnectionSeen> = {
  system: 'mysql',
  kind: 'connection',
  max: 1000,
  target: (conn) => target(conn.config),
  // One the app closed (end, destroy) has nothing to check; a pool's belongs to the pool.
  listed: (conn) => !conn._closing && !conn._pool,
  probe(conn) {
    const lost = conn._fatalError ?? conn._protocolError;
    if (lost) return Promise.reject(new Error(`connection lost: ${(lost as Error).message ?? String(lost)}`));
    const queued = Array.isArray(conn._commands) ? conn._commands.length : items(conn._commands).length;
    if (conn._command || queued > 0)
      return Promise.resolve(`busy with the app's query${queued ? ` (${queued} queued)` : ''}; connected, not probed`);
    return selectOne(conn);
  },
};

const announced = new WeakSet<object>();

function announce(of: ResourceKind, instance: object): void {
  if (!channels.instance.hasSubscribers || announced.has(instance)) return;
  announced.add(instance);
  channels.instance.publish({ of, instance } satisfies InstanceEvent);
}

export const announcePool = (pool: object): void => announce(mysqlPoolKind, pool);
/** A Connection of the app's own (a pool's connections are checked through their pool). */
export function announceConnection(conn: object): void {
  if (!(conn as ConnectionSeen)._pool) announce(mysqlConnectionKind, conn);
}
