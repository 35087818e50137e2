/**
 * postgres.js (npm `postgres`) 3.x: every query (tagged templates, `sql.unsafe`, `sql.file`, the
 * queries of `sql.begin` and `sql.reserve`, cursors and `forEach`) is timed as `db.query` with
 * system `pg` on `hatch:db.query`, in the context of the code that ran it, and commented as
 * src/sql-comment.ts sqlToSend says where that cannot multiply server-side prepared statements.
 *
 * How: postgres.js's Query class (one per build: `cjs/` for require, `src/` for import) is not
 * exported, so it is found once, when the package is handed over, as the prototype of a query of a
 * throwaway instance (`postgres({ max: 1, no_subscribe: true, … }).unsafe('')`: no socket, no
 * timer, nothing runs). Its `handle` method, which every way of running a query calls first, in
 * the caller's context (`await`, `.then`, `.execute()`, `.forEach`, a cursor's first `next`), is
 * wrapped: on the first call of each query it notes the start, binds the `forEach`/cursor callbacks
 * (postgres.js calls them from its socket) to the caller's context, and wraps the query's own
 * `resolve`/`reject`, which postgres.js calls once when the query ends (a cursor iterator sets new
 * ones at each step: for cursors they are accessors, so each one set is wrapped).
 *
 * Comments. postgres.js names prepared statements by their text (`prepare: true`, the default), so
 * a per-request comment would prepare a new statement on the server for every request. A query is
 * commented only when it will not be prepared: its own `prepare: false` (`sql.unsafe`'s default,
 * `.simple()`), or an instance made with `prepare: false`. The instance's setting is not reachable
 * from a query, so it is learnt from the first of its queries postgres.js builds (its `prepare`
 * field, set as it builds it): that query goes out uncommented. `describe()` always prepares and is
 * never commented. The text is decided in the caller's context (when `handle` runs) and swapped in
 * through an accessor on the query's `strings`, read by postgres.js when it builds the statement
 * (perhaps later, on another connection's turn); the app's text is what the query's `string` and
 * an error's `query` show, `origin` (the error's stack) is computed from the app's strings, and a
 * server error's `position` is mapped back past the comment, so the app sees what it sees
 * without the agent. Only the result's `statement.string` (the statement postgres.js sent) shows it.
 * Limitations: the text of nested fragments (`${sql`…`}`) is checked for comments (sqlcommenter)
 * one level deep; `sql.file` queries (read later) are timed, not commented; the queries postgres.js
 * runs for itself (array types, fetched at a connection's start) are timed in the context of the
 * query that opened the connection.
 */
import { storage, bindContext } from '../src/context';
import { sqlToSend, sqlCommentWanted, positionInText, sqlOperation, hasAnyComment } from '../src/sql-comment';
import { channels, type DbQueryEvent } from '../src/bus';
import { wrap, unwrap } from '../src/shim';
import { log } from '../src/log';
import { activeConfig } from '../src/config';
import { now } from '../src/clock';
import type { PatchDefinition } from '../src/registry';

type Fn = (...args: unknown[]) => unknown;

/** A postgres.js Query as read here (its fields as postgres.js 3.x sets them), unchecked. */
interface QueryLike {
  strings?: unknown;
  args?: unknown;
  options?: { prepare?: unknown; simple?: unknown };
  canceller?: unknown;
  executed?: boolean;
  onlyDescribe?: boolean;
  prepare?: unknown;
  string?: unknown;
  cursorRows?: unknown;
  cursorFn?: unknown;
  forEachFn?: unknown;
  resolve?: unknown;
  reject?: unknown;
}

/** The package's export: the factory `postgres(url?, options?)`. */
type Factory = (...args: unknown[]) => { unsafe?: (text: string) => unknown };

interface Pending {
  start: number;
  requestId: string | undefined;
  /** The app's text as far as known at the start (strings joined): the operation is read from it. */
  sql: string;
  /** The text sent, when it was commented. */
  sent: string | undefined;
  /** A server position in the text built (with the comment) as one in the app's text. */
  map: ((position: number) => number) | undefined;
  publish: boolean;
  done: boolean;
  q: QueryLike;
}

/** Per instance (keyed by its cancel function, which all its queries share): whether it prepares by default. */
const prepares = new WeakMap<object, boolean>();
/** Per instance not yet known: a query of it, whose `prepare` postgres.js sets when it builds it. */
const probes = new WeakMap<object, QueryLike>();

/** Whether the instance prepares tagged queries: true, false, or undefined while not known. */
function instancePrepares(q: QueryLike): boolean | undefined {
  const key = q.canceller;
  if (typeof key !== 'function') return undefined;
  const known = prepares.get(key);
  if (known !== undefined) return known;
  const probe = probes.get(key);
  if (probe !== undefined && typeof probe.prepare === 'boolean') {
    prepares.set(key, probe.prepare);
    probes.delete(key);
    return probe.prepare;
  }
  if (probe === undefined) probes.set(key, q);
  return undefined;
}

/**
 * A query postgres.js builds now (it reads `strings` first, then sets `prepare`): while its instance
 * is not known, the next query's decision reads its `prepare`. Builds are synchronous, one at a
 * time, so only the instance's first query built goes out before the instance is known.
 */
function noteBuilt(q: QueryLike): void {
  const key = q.canceller;
  const opts = q.options;
  if (typeof key !== 'function' || prepares.has(key)) return;
  if (opts !== null && typeof opts === 'object' && 'prepare' in opts) return;
  probes.set(key, q);
}

/** Whether postgres.js will send this query unprepared (so a comment makes no new server statement). */
function unprepared(q: QueryLike): boolean | undefined {
  if (q.onlyDescribe) return false;
  const opts = q.options;
  if (opts !== null && typeof opts === 'object' && 'prepare' in opts) {
    if (opts.prepare === false) return true;
    if (opts.prepare) return false;
  }
  const p = instancePrepares(q);
  return p === undefined ? undefined : !p;
}

function isStrings(x: unknown): x is readonly string[] {
  if (!Array.isArray(x) || x.length === 0) return false;
  for (let i = 0; i < x.length; i++) if (typeof x[i] !== 'string') return false;
  return true;
}

/** The query's text as far as its strings tell (`$n` for each value or fragment). */
function joined(strings: readonly string[]): string {
  let s = strings[0]!;
  for (let i = 1; i < strings.length; i++) s += '$' + i + strings[i];
  return s;
}

/** Whether a value is a fragment (another query) whose own strings hold a comment. */
function fragmentHasComment(args: unknown, proto: object): boolean {
  if (!Array.isArray(args)) return false;
  for (const a of args) {
    if (a !== null && typeof a === 'object' && Object.getPrototypeOf(a) === proto) {
      const s = (a as QueryLike).strings;
      if (isStrings(s) && hasAnyComment(s.join(' '))) return true;
    }
  }
  return false;
}

/**
 * The commented strings for `sent` (sqlToSend's text for `text`), or undefined when the change is not
 * a prefix of the first string or a change of the end of the last one.
 */
function commentedStrings(
  strings: readonly string[],
  text: string,
  sent: string,
): { strings: string[]; oldTail: string; newTail: string; prefix: string } | undefined {
  const out = strings.slice();
  if (sent.endsWith(text)) {
    const prefix = sent.slice(0, sent.length - text.length);
    out[0] = prefix + out[0];
    return { strings: out, oldTail: '', newTail: '', prefix };
  }
  let k = 0;
  const n = Math.min(text.length, sent.length);
  while (k < n && text.charCodeAt(k) === sent.charCodeAt(k)) k++;
  const oldTail = text.slice(k);
  const last = out[out.length - 1]!;
  if (oldTail.length > last.length || !last.endsWith(oldTail)) return undefined;
  const newTail = sent.slice(k);
  out[out.length - 1] = last.slice(0, last.length - oldTail.length) + newTail;
  return { strings: out, oldTail, newTail, prefix: '' };
}

/** The app's text for a text postgres.js built from the commented strings. */
function appText(built: unknown, c: { oldTail: string; newTail: string; prefix: string }): unknown {
  if (typeof built !== 'string') return built;
  if (c.prefix !== '') return built.startsWith(c.prefix) ? built.slice(c.prefix.length) : built;
  return built.endsWith(c.newTail) ? built.slice(0, built.length - c.newTail.length) + c.oldTail : built;
}

/**
 * Installs the comment: `strings` becomes an accessor that gives postgres.js the commented strings
 * when it builds the statement, if by then the query is known to go out unprepared.
 */
function installComment(q: QueryLike, proto: object, p: Pending, known: boolean | undefined): void {
  const original = q.strings as readonly string[];
  const text = joined(original);
  if (activeConfig().sqlCommentFormat === 'sqlcommenter' && fragmentHasComment(q.args, proto)) return;
  const sent = sqlToSend(text, 'postgres');
  if (sent === undefined) return;
  const c = commentedStrings(original, text, sent);
  if (c === undefined) return;
  let current: unknown = original;
  let use: boolean | undefined = known;
  let settled = false;
  let built: unknown;
  Object.defineProperty(q, 'strings', {
    configurable: true,
    enumerable: true,
    get() {
      if (settled || current !== original) return current;
      if (use === undefined) {
        use = unprepared(q) === true;
        noteBuilt(q);
      }
      if (!use) return current;
      p.sent = sent;
      return c.strings;
    },
    set(v: unknown) {
      current = v; // sql.file sets its text later: that text goes out as it is
    },
  });
  // What postgres.js built, as the app's text (an error's `query` is read from it).
  Object.defineProperty(q, 'string', {
    configurable: true,
    enumerable: true,
    get: () => (p.sent !== undefined ? appText(built, c) : built),
    set(v: unknown) {
      built = v;
    },
  });
  // An error's stack gets `origin`, cached by postgres.js per strings array: read from the app's own.
  Object.defineProperty(q, 'origin', {
    configurable: true,
    enumerable: false,
    get() {
      settled = true;
      delete (q as { origin?: unknown }).origin;
      return (q as { origin?: unknown }).origin;
    },
  });
  p.q = q;
  p.map = (pos) => {
    const app = appText(built, c);
    return p.sent !== undefined && typeof built === 'string' && typeof app === 'string'
      ? positionInText(built, app, pos)
      : pos;
  };
  (p as Pending & { restore?: () => void }).restore = () => {
    settled = true;
    try {
      delete (q as { origin?: unknown }).origin;
      Object.defineProperty(q, 'strings', { value: current, writable: true, enumerable: true, configurable: true });
      Object.defineProperty(q, 'string', {
        value: p.sent !== undefined ? appText(built, c) : built,
        writable: true,
        enumerable: true,
        configurable: true,
      });
    } catch {
      // a query frozen by the app keeps its accessors
    }
  };
}

/**
 * Points a server error's `position` back into the app's own text, where the field lives: postgres.js
 * 3.0 rejects with `Object.create(serverError, …)`, later versions with the server error itself. Its
 * descriptor is kept (no own enumerable property appears where there was none).
 */
function unshiftPosition(err: unknown, map: ((position: number) => number) | undefined): void {
  if (map === undefined || err === null || typeof err !== 'object') return;
  let o: object | null = err;
  for (let depth = 0; o !== null && depth < 3; depth++, o = Object.getPrototypeOf(o) as object | null) {
    const d = Object.getOwnPropertyDescriptor(o, 'position');
    if (d === undefined) continue;
    const pos: unknown = d.value;
    if (d.writable && typeof pos === 'string' && /^\d+$/.test(pos)) {
      const mapped = map(Number(pos));
      if (mapped !== Number(pos)) Object.defineProperty(o, 'position', { ...d, value: String(mapped) });
    }
    return;
  }
}

/** Learns the instance's default from a query built without a `prepare` of its own. */
function learn(q: QueryLike): void {
  const key = q.canceller;
  const opts = q.options;
  if (typeof key !== 'function' || typeof q.prepare !== 'boolean' || prepares.has(key)) return;
  if (opts !== null && typeof opts === 'object' && 'prepare' in opts) return;
  prepares.set(key, q.prepare);
  probes.delete(key);
}

function end(p: Pending, err: unknown): void {
  if (p.done) return;
  p.done = true;
  const at = now();
  try {
    learn(p.q);
  } catch {
    // nothing learnt: the next query asks again
  }
  (p as Pending & { restore?: () => void }).restore?.();
  if (err) {
    try {
      unshiftPosition(err, p.map);
    } catch {
      // a frozen or exotic error stays as it is
    }
  }
  if (!p.publish) return;
  try {
    const built = p.q.string;
    const event: DbQueryEvent = {
      requestId: p.requestId,
      system: 'pg',
      text: p.sent ?? (typeof built === 'string' ? built : p.sql),
      operation: sqlOperation(typeof built === 'string' ? built : p.sql),
      error: !!err,
      start: p.start,
      duration: at - p.start,
    };
    channels.dbQuery.publish(event);
  } catch (e) {
    log.warnOnce('postgres-end', `postgres: recording a query failed: ${(e as Error).message}`);
  }
}

function settleWrapper(fn: Fn, p: Pending, failed: boolean): Fn {
  return function (this: unknown, x: unknown) {
    end(p, failed ? (x ?? true) : null);
    return fn.apply(this, arguments as unknown as unknown[]);
  };
}

/** Wraps the query's resolve and reject; for a cursor, every one it is given later too. */
function hookSettle(q: QueryLike, p: Pending): void {
  if (q.cursorRows === undefined) {
    if (typeof q.resolve === 'function') q.resolve = settleWrapper(q.resolve as Fn, p, false);
    if (typeof q.reject === 'function') q.reject = settleWrapper(q.reject as Fn, p, true);
    return;
  }
  for (const [key, failed] of [
    ['resolve', false],
    ['reject', true],
  ] as const) {
    let current = typeof q[key] === 'function' ? settleWrapper(q[key] as Fn, p, failed) : q[key];
    Object.defineProperty(q, key, {
      configurable: true,
      enumerable: true,
      get: () => current,
      set(v: unknown) {
        current = typeof v === 'function' ? settleWrapper(v as Fn, p, failed) : v;
      },
    });
  }
}

function begin(q: QueryLike, proto: object): void {
  // postgres.js calls these from its socket: they run in the context of the code that ran the query.
  if (typeof q.forEachFn === 'function') q.forEachFn = bindContext(q.forEachFn as Fn);
  if (typeof q.cursorFn === 'function') q.cursorFn = bindContext(q.cursorFn as Fn);
  const publish = channels.dbQuery.hasSubscribers;
  const comment = sqlCommentWanted() && isStrings(q.strings);
  if (!publish && !comment) return;
  const strings = q.strings;
  const p: Pending = {
    start: now(),
    requestId: storage.getStore()?.id,
    sql: isStrings(strings) ? joined(strings) : '',
    sent: undefined,
    map: undefined,
    publish,
    done: false,
    q,
  };
  if (comment) {
    // Known now for the query's own `prepare: false` and a learnt instance; else decided when built.
    const known = unprepared(q);
    if (known !== false) installComment(q, proto, p, known);
  }
  hookSettle(q, p);
}

function wrapHandle(proto: object) {
  return (original: Fn) =>
    function handle(this: QueryLike) {
      if (this !== null && typeof this === 'object' && this.executed === false) {
        try {
          begin(this, proto);
        } catch (err) {
          log.warnOnce(
            'postgres-begin',
            `postgres: instrumenting a query failed (${(err as Error).message}); it runs uninstrumented`,
          );
        }
      }
      return original.apply(this, arguments as unknown as unknown[]);
    };
}

/** The Query prototype of this copy of postgres.js, from a query of an instance that never connects. */
function queryPrototype(factory: Factory): object {
  const sql = factory({
    host: '127.0.0.1',
    port: 1,
    user: 'hatch',
    pass: '',
    database: 'hatch',
    max: 1,
    no_subscribe: true,
    fetch_types: false,
    idle_timeout: 0,
    max_lifetime: 0,
    connect_timeout: 1,
  });
  const q = typeof sql?.unsafe === 'function' ? sql.unsafe('') : undefined;
  const proto = q !== null && typeof q === 'object' ? Object.getPrototypeOf(q) : undefined;
  if (proto === null || typeof proto !== 'object' || typeof (proto as { handle?: unknown }).handle !== 'function')
    throw new Error('the Query class was not found');
  return proto as object;
}

const protos = new WeakMap<object, object>();

export const postgres: PatchDefinition<Factory> = {
  module: 'postgres',
  feature: 'postgres',
  versions: ['3.0.0', '4.0.0'],
  patch(factory) {
    if (typeof factory !== 'function') throw new Error('the export is not the postgres() function');
    const proto = queryPrototype(factory);
    protos.set(factory, proto);
    wrap(proto, 'handle', wrapHandle(proto));
  },
  unpatch(factory) {
    const proto = protos.get(factory);
    if (proto !== undefined) unwrap(proto, 'handle');
  },
};
