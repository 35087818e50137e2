/**
 * mysql2 3.x: every query() and execute() is timed as `db.query` with system `mysql` and published
 * on `hatch:db.query`; query() texts are commented with the request's ID (outside any request, the
 * run's prefix: src/run.ts); execute() texts never are.
 *
 * Which module: mysql2's `lib/connection.js` (the Connection class), not its main file: the promise
 * API's entry (`mysql2/promise`) does not load the main file in later 3.x releases, while every entry
 * requires lib/connection.js, with `require`, also when the app imports mysql2 as an ES module.
 * Where: Connection#query and #execute (on mysql2's base class: PoolConnection, the pools, pool
 * clusters and the promise API all end there, once per call), Query#start (the moment the text is
 * written to the socket), and Pool#getConnection (context only). The Pool class is not exported by
 * lib/connection.js: its getConnection is wrapped from the first connection a pool connects
 * (Connection#connect, which a pool calls, synchronously, in its first getConnection), before any
 * caller can be queued.
 * - The call is planned when the app makes it, in its context: the context is kept for the comment
 *   and for every callback and event. The comment is applied at Query#start, on the text mysql2
 *   formatted (values inlined), for the one synchronous call that writes it, then the text is put
 *   back: the Query's `sql` (which mysql2 copies into an error's `err.sql`) stays the app's own.
 *   A Query may start inside the query() call (an idle connection) or later (queued behind others):
 *   the plan is handed over through `armed` in the first case, a WeakMap in the second.
 * - execute() is never commented: mysql2 caches prepared statements per connection by their SQL
 *   text, so a per-request comment would prepare a new server-side statement for every request
 *   (until max_prepared_stmt_count refuses more). Timing only.
 * - Callbacks (the app's, or the pool's and the promise API's own) are replaced by a wrapper that
 *   ends the timing and calls them in the caller's context (mysql2 calls them from the socket's,
 *   which is the context of whoever opened the connection). A pool's Query arrives with its callback
 *   on the object: it is swapped there and put back when called.
 * - Without a callback (the event-emitter form, `query().stream()`), the returned command's `emit`
 *   is shadowed on the instance until its 'end': events run in the caller's context, 'error' marks
 *   the outcome. No listener is ever added (an 'error' without listeners must still throw as before).
 * - Pool#getConnection's callback is bound to the caller's context: a pool.query waiting for a free
 *   connection is resumed by whichever request releases one, and would otherwise run (and be
 *   commented) in that request's context.
 * The event's text is the app's SQL before mysql2 inlined the values (`?` placeholders), with the
 * comment as sent: values never reach the timeline or the flight recorder.
 * Results, errors (code, errno, sqlState, sqlMessage, sql) and the caller's objects are left as they
 * are: the comment is prepended on the first line, so a syntax error's "near … at line N" is unchanged.
 * Limitations: a query whose connection dies in the event-emitter form gets no 'end' from mysql2 and
 * is never published; statements run through `connection.prepare()`'s own `execute` are not timed.
 */
import { storage, callIn, bindContext, type RequestContext } from '../../src/context';
import { sqlToSendIn, sqlOperation } from '../../src/sql-comment';
import { runSqlComment } from '../../src/run';
import { channels, type DbQueryEvent } from '../../src/bus';
import { wrap, unwrap } from '../../src/shim';
import { log } from '../../src/log';
import { now } from '../../src/clock';
import type { PatchDefinition } from '../../src/registry';
import { announceConnection, announcePool } from './probe';

type Fn = (...args: unknown[]) => unknown;

/** What the patch uses of mysql2's lib/connection.js: the Connection class (mysql2 3.x). */
export interface Mysql2Exports {
  prototype: object;
  createQuery(sql: unknown, values: unknown, cb: unknown, config: object): object;
}

/** A mysql2 command (Query, Execute) as read here: an EventEmitter, with its callback and text. */
type CommandSeen = { onResult?: unknown; sql?: unknown; emit?: unknown; constructor?: unknown };

interface Plan {
  kind: 'query' | 'execute';
  /** The caller's context (undefined: outside any request). */
  store: RequestContext | undefined;
  /** The app's SQL as it handed it over ('' when it is not a string). */
  template: string;
  /** What the event shows: the template, with the comment as sent. */
  text: string;
  start: number;
  publish: boolean;
  started: boolean;
  done: boolean;
}

/**
 * The text mysql2 sends for the app's `sql`, issued in `store` (undefined: outside any request), or
 * undefined when it goes out unchanged: the one place that decides a mysql2 comment.
 */
function commentFor(sql: string, store: RequestContext | undefined): string | undefined {
  return sqlToSendIn(sql, 'mysql2', store);
}

/** mysql2's Query class (not exported: found through createQuery), to tell a pool's Query from options. */
let QueryClass: { prototype: object } | undefined;
/** The plan of the query() call in progress, for a Query that starts inside it (an idle connection). */
let armed: Plan | undefined;
/** Plans of Queries that were queued, by Query, until their start. */
const planned = new WeakMap<object, Plan>();

function end(p: Plan, err: unknown): void {
  if (p.done) return;
  p.done = true;
  if (!p.publish) return;
  try {
    const event: DbQueryEvent = {
      requestId: p.store?.id,
      system: 'mysql',
      text: p.text,
      operation: sqlOperation(p.template),
      error: !!err,
      start: p.start,
      duration: now() - p.start,
    };
    channels.dbQuery.publish(event);
  } catch (e) {
    log.warnOnce('mysql2-end', `mysql2: recording a query failed: ${(e as Error).message}`);
  }
}

/** The callback, timed, and run in the caller's context; `restore` first puts the command back. */
function wrapCallback(cb: Fn, p: Plan, restore?: () => void): Fn {
  return function (this: unknown, err: unknown) {
    if (restore !== undefined) restore();
    end(p, err);
    return callIn(p.store, cb, this, arguments);
  };
}

/** The event-emitter form: the command's events in the caller's context, its end timed. */
function watchEvents(cmd: CommandSeen, p: Plan): void {
  const original = cmd.emit;
  if (typeof original !== 'function') return;
  const own = Object.getOwnPropertyDescriptor(cmd, 'emit');
  let failed: unknown = null;
  const restore = () => {
    if (own !== undefined) Object.defineProperty(cmd, 'emit', own);
    else delete cmd.emit;
  };
  const emit = function (this: unknown, name: unknown) {
    if (name === 'error') failed = arguments[1] ?? true;
    else if (name === 'end') {
      restore();
      end(p, failed);
    }
    return callIn(p.store, original as Fn, this, arguments);
  };
  Object.defineProperty(cmd, 'emit', { value: emit, writable: true, enumerable: false, configurable: true });
}

interface Call {
  plan: Plan;
  args: unknown[];
  /** The callback was found (and replaced); false: the event-emitter form. */
  callback: boolean;
  /** A pool's Query whose callback was swapped on the object: puts it back. */
  restore?: () => void;
}

/**
 * How mysql2 reads a call (Connection.createQuery and execute: a string or an options object, then
 * values or the callback, then the callback), with the callback replaced; undefined to pass through.
 */
function planCall(kind: Plan['kind'], argv: IArguments): Call | undefined {
  const store = storage.getStore();
  const publish = channels.dbQuery.hasSubscribers;
  if (store === undefined && !publish && (kind === 'execute' || runSqlComment() === undefined)) return undefined;
  const sql = argv[0] as unknown;
  if (sql === null || (typeof sql !== 'string' && typeof sql !== 'object')) return undefined; // mysql2's own error
  const args = Array.prototype.slice.call(argv) as unknown[];
  const command = kind === 'query' && QueryClass !== undefined && (sql as CommandSeen).constructor === QueryClass;
  const text = typeof sql === 'string' ? sql : (sql as CommandSeen).sql;
  const template = typeof text === 'string' ? text : '';
  const plan: Plan = {
    kind,
    store,
    template,
    text: template,
    start: now(),
    publish,
    started: false,
    done: false,
  };
  if (command) {
    const q = sql as CommandSeen;
    const cb = q.onResult;
    if (typeof cb !== 'function') return { plan, args, callback: false };
    const restore = () => {
      if (q.onResult === wrapped) q.onResult = cb;
    };
    const wrapped = wrapCallback(cb as Fn, plan, restore);
    q.onResult = wrapped;
    return { plan, args, callback: true, restore };
  }
  const at = typeof args[1] === 'function' ? 1 : 2;
  if (typeof args[at] !== 'function') return { plan, args, callback: false };
  args[at] = wrapCallback(args[at] as Fn, plan);
  return { plan, args, callback: true };
}

/**
 * The wrappers of query(), execute() and Query#start are methods, as mysql2's own are (class methods
 * in every supported version), so the shim hands them out as they are (src/shim.ts markWrapper).
 */
function wrapCall(kind: Plan['kind']) {
  return (original: Fn): Fn =>
    ({
      wrapper(this: object) {
        let call: Call | undefined;
        try {
          announceConnection(this);
          call = planCall(kind, arguments);
        } catch (err) {
          log.warnOnce(
            `mysql2-${kind}`,
            `mysql2: instrumenting ${kind}() failed (${(err as Error).message}); it runs uninstrumented`,
          );
          call = undefined;
        }
        if (call === undefined) return original.apply(this, arguments as unknown as unknown[]);
        const p = call.plan;
        const prev = armed;
        armed = p;
        let ret: unknown;
        try {
          ret = original.apply(this, call.args);
        } catch (err) {
          call.restore?.();
          end(p, err);
          throw err;
        } finally {
          armed = prev;
        }
        try {
          if (ret !== null && typeof ret === 'object') {
            if (kind === 'query' && !p.started) planned.set(ret, p);
            if (!call.callback) watchEvents(ret as CommandSeen, p);
          }
        } catch (err) {
          log.warnOnce(`mysql2-${kind}-after`, `mysql2: instrumenting ${kind}() failed: ${(err as Error).message}`);
        }
        return ret;
      },
    }).wrapper;
}

/** Query#start: the planned comment, on the text mysql2 formatted, for the one call that writes it. */
function wrapStart(original: Fn): Fn {
  return {
    start(this: CommandSeen) {
      let p = planned.get(this);
      if (p !== undefined) planned.delete(this);
      else if (armed !== undefined && armed.kind === 'query' && !armed.started) p = armed;
      if (p === undefined) return original.apply(this, arguments as unknown as unknown[]);
      p.started = true;
      const sql = this.sql;
      let text: string | undefined;
      try {
        if (typeof sql === 'string') {
          text = commentFor(sql, p.store);
          // Values inlined by mysql2 stay out of the event: it shows the app's own text, as it would be sent.
          if (p.publish) p.text = sql === p.template ? (text ?? sql) : (commentFor(p.template, p.store) ?? p.template);
        }
      } catch (err) {
        log.warnOnce(
          'mysql2-start',
          `mysql2: commenting a query failed (${(err as Error).message}); it is sent as it is`,
        );
        text = undefined;
      }
      if (text === undefined) return original.apply(this, arguments as unknown as unknown[]);
      this.sql = text;
      try {
        return original.apply(this, arguments as unknown as unknown[]);
      } finally {
        this.sql = sql;
      }
    },
  }.start;
}

function wrapGetConnection(original: Fn) {
  return function getConnection(this: object, cb?: unknown) {
    let bound: Fn | undefined;
    try {
      announcePool(this);
      if (typeof cb === 'function') bound = bindContext(cb as Fn);
    } catch (err) {
      log.warnOnce(
        'mysql2-pool',
        `mysql2: instrumenting getConnection failed (${(err as Error).message}); it runs uninstrumented`,
      );
      bound = undefined;
    }
    if (bound === undefined) return original.apply(this, arguments as unknown as unknown[]);
    return original.call(this, bound);
  };
}

/** The Pool prototypes (mysql2's base pool, per copy of mysql2) whose getConnection was wrapped. */
const pools = new Set<object>();

/** A pool's first connect: its class's getConnection is wrapped, once per class. */
function coverPool(pool: unknown): void {
  if (pool === null || typeof pool !== 'object') return;
  announcePool(pool);
  const proto = Object.getPrototypeOf(pool) as object | null;
  if (proto === null) return;
  const at = holder(proto, 'getConnection');
  if (!pools.has(at) && wrap(at, 'getConnection', wrapGetConnection)) pools.add(at);
}

function wrapConnect(original: Fn) {
  return function connect(this: { _pool?: unknown }) {
    try {
      if (this._pool !== undefined) coverPool(this._pool);
    } catch (err) {
      log.warnOnce(
        'mysql2-connect',
        `mysql2: instrumenting a pool failed (${(err as Error).message}); it runs uninstrumented`,
      );
    }
    return original.apply(this, arguments as unknown as unknown[]);
  };
}

/** The object in `proto`'s chain that holds `name` itself (later 3.x releases moved them to base classes). */
function holder(proto: object, name: string): object {
  for (
    let o: object | null = proto;
    o !== null && o !== Object.prototype;
    o = Object.getPrototypeOf(o) as object | null
  )
    if (Object.prototype.hasOwnProperty.call(o, name)) return o;
  throw new Error(`${name} not found`);
}

function queryClassOf(Connection: Mysql2Exports): { prototype: object } {
  // A Query made and dropped: mysql2 exports no Query class, and its file moves between versions.
  const q = Connection.createQuery('', undefined, undefined, {}) as CommandSeen;
  const C = q.constructor as unknown;
  const proto = typeof C === 'function' ? (C as { prototype?: { start?: unknown } }).prototype : undefined;
  if (proto === undefined || typeof proto.start !== 'function') throw new Error('Query.prototype.start not found');
  return C as { prototype: object };
}

/** Where the patch wraps, found before anything is wrapped: a mysql2 that lacks one is left untouched. */
function places(Connection: Mysql2Exports): Array<[object, string, (f: Fn) => Fn]> {
  const conn = Connection.prototype;
  return [
    [holder(conn, 'query'), 'query', wrapCall('query')],
    [holder(conn, 'execute'), 'execute', wrapCall('execute')],
    [holder(conn, 'connect'), 'connect', wrapConnect],
    [holder(queryClassOf(Connection).prototype, 'start'), 'start', wrapStart],
  ];
}

export const mysql2Patch: Pick<PatchDefinition<Mysql2Exports>, 'patch' | 'unpatch'> = {
  patch(Connection) {
    const found = places(Connection);
    QueryClass = queryClassOf(Connection);
    for (const [o, name, make] of found) wrap(o, name, make);
  },
  unpatch(Connection) {
    for (const at of pools) unwrap(at, 'getConnection');
    pools.clear();
    let found: ReturnType<typeof places>;
    try {
      found = places(Connection);
    } catch {
      return; // patch() found nothing either, so it wrapped nothing
    }
    for (const [o, name] of found) unwrap(o, name);
  },
};
