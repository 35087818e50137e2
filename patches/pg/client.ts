/**
 * pg (node-postgres) 8.x: wraps Client.prototype.query, which Pool.query also goes through.
 *
 * Every form is handled: text, (text, values), config objects, callbacks (third argument, second
 * argument or config.callback), the promise form, and Submittables (pg.Query, pg-cursor,
 * pg-query-stream). Each query is timed from the call to its result or error and published on
 * `hatch:db.query`; its SQL text is sent as src/sql-comment.ts sqlToSend says (HATCH_SQL_COMMENT):
 * inside a request (or withRequestId) `/* <id> *\/ <text>` (with the route once known) or the
 * sqlcommenter comment appended, outside any request the run's comment (src/run.ts).
 *
 * What is never done (pitfalls the anchors hit):
 * - named prepared statements keep their text: pg rejects a reused name with different text;
 * - a text that already starts with our comment gets no second one;
 * - the caller's config object is never mutated or cloned: pg gets an object that inherits from it
 *   (`Object.create`), with its own `text`, so getters, frozen objects and reuse keep working, and
 *   pg's own writes (`callback`, `values`) land on our object, not the caller's;
 * - a Submittable is never cloned (it would lose its prototype): see ./submittable.ts.
 * What pg itself writes on a config object (8.0.x sets `values`/`callback` on the caller's object;
 * later versions clone it) is replayed onto the caller's object, so the app sees what it saw without
 * the agent. A server error's `position` is mapped back past the comment (./pending.ts).
 * Callbacks run in the request context of the code that issued the query, not the socket's.
 * The promise form returns pg's promise chained once (same value, same error object).
 * Whether to comment is read from activeConfig() (HATCH_SQL_COMMENT) at each query.
 * Client.prototype.connect is wrapped only to announce each client on `hatch:instance` (./probe.ts),
 * which costs one `hasSubscribers` check when nobody listens.
 */
import { storage, bindContext } from '../../src/context';
import { sqlToSendIn, sqlCommentWantedIn } from '../../src/sql-comment';
import { channels } from '../../src/bus';
import { wrap, unwrap } from '../../src/shim';
import { log } from '../../src/log';
import { fault } from '../../src/fault';
import type * as Pg from 'pg';
import type { PatchCode } from './index';
import { end, wrapCallback, type Fn, type Pending } from './pending';
import { instrumentSubmittable } from './submittable';
import { announceClient } from './probe';
import { now } from '../../src/clock';

/**
 * A query config object as the app hands it over: pg's QueryConfig (with the callback pg also reads
 * from it), unchecked, since a JavaScript app may put anything there; every field is tested before use.
 */
type QueryObject = { [K in keyof Pg.QueryConfig | 'callback']?: unknown };

/**
 * What query() hands pg: its arguments as fields (pg gets as many as the app passed, at most three),
 * not an array made for one call.
 */
interface Plan {
  argc: number;
  config: unknown;
  values: unknown;
  callback: unknown;
  pending: Pending;
  promise: boolean;
  /** The object handed to pg in place of the caller's config, if any. */
  derived: Record<string, unknown> | undefined;
  /** The caller's callback and the wrapper that replaced it, for replayWrites (a derived config only). */
  callbacks: [Fn, Fn] | undefined;
}

function plan(argc: number, config: unknown, values: unknown, callback: unknown): Plan | undefined {
  const store = storage.getStore();
  const publish = channels.dbQuery.hasSubscribers;
  // Whether sqlToSend may comment (a request's ID, else outside any request the run's comment).
  // The store read above serves every step below: they all run now, in the caller's context.
  const comment = sqlCommentWantedIn(store);
  if ((!comment && !publish) || config == null) return undefined;
  fault('pg-query');

  const pending: Pending = { start: now(), requestId: store?.id, text: '', sql: '', publish, done: false };
  const p: Plan = {
    argc: argc >= 3 ? 3 : argc,
    config,
    values,
    callback,
    pending,
    promise: false,
    derived: undefined,
    callbacks: undefined,
  };

  if (typeof (config as Partial<Pg.Submittable>).submit === 'function') {
    instrumentSubmittable(config as Pg.Submittable, comment, pending, store);
    // pg sets these as the Submittable's callback when it has none: run them in our context.
    if (typeof values === 'function') p.values = bindContext(values as Fn);
    else if (typeof callback === 'function') p.callback = bindContext(callback as Fn);
    return p;
  }

  let derived: Record<string, unknown> | undefined;
  if (typeof config === 'string') {
    const text = comment ? sqlToSendIn(config, 'pg', store) : undefined;
    pending.sql = config;
    pending.text = text ?? config;
    if (text !== undefined) p.config = text;
  } else if (typeof config === 'object') {
    const original = (config as QueryObject).text;
    const text =
      comment && typeof original === 'string' && !(config as QueryObject).name
        ? sqlToSendIn(original, 'pg', store)
        : undefined;
    pending.sql = typeof original === 'string' ? original : '';
    pending.text = text ?? pending.sql;
    if (text !== undefined) {
      derived = Object.create(config) as Record<string, unknown>;
      Object.defineProperty(derived, 'text', { value: text, writable: true, enumerable: true, configurable: true });
    }
  } else {
    return undefined; // pg reports its own error for anything else
  }

  // Mirror pg's own precedence: callback argument, then values-as-callback, then config.callback.
  // The [caller's, wrapper] pair is kept only for a derived config (replayWrites puts the caller's back).
  if (callback) {
    if (typeof callback === 'function') {
      const wrapped = wrapCallback(callback as Fn, pending, store);
      p.callback = wrapped;
      if (derived !== undefined) p.callbacks = [callback as Fn, wrapped];
    }
  } else if (typeof values === 'function') {
    const wrapped = wrapCallback(values as Fn, pending, store);
    p.values = wrapped;
    if (derived !== undefined) p.callbacks = [values as Fn, wrapped];
  } else if (typeof config === 'object' && (config as QueryObject).callback) {
    if (typeof (config as QueryObject).callback === 'function') {
      derived ??= Object.create(config) as Record<string, unknown>;
      Object.defineProperty(derived, 'callback', {
        value: wrapCallback((config as QueryObject).callback as Fn, pending, store),
        writable: true,
        enumerable: true,
        configurable: true,
      });
    }
  } else {
    p.promise = true;
  }
  if (derived !== undefined) {
    p.config = derived;
    p.derived = derived;
  }
  return p;
}

/**
 * Replays onto the caller's config what pg wrote on the object we handed it (pg 8.0.x sets
 * `values` and `callback`), with the caller's own callback in place of our wrapper.
 */
function replayWrites(
  config: Record<string, unknown>,
  derived: Record<string, unknown>,
  callbacks: [Fn, Fn] | undefined,
): void {
  for (const key of Object.keys(derived)) {
    if (key === 'text' || (key === 'callback' && !callbacks)) continue;
    let value = derived[key];
    if (callbacks && value === callbacks[1]) value = callbacks[0];
    try {
      config[key] = value;
    } catch {
      // a frozen config: pg's own write would have failed the same way
    }
  }
}

/**
 * A method: pg's query is a class method in the newest 8.x and a prototype function in 8.0.x (which
 * gets a function-shaped shell of it: src/shim.ts markWrapper), so the newest versions call it with
 * no frame of the shim's between the app and pg.
 */
function wrapQuery(original: Fn): Fn {
  return {
    query(this: unknown, config: unknown, values?: unknown, callback?: unknown) {
      let p: Plan | undefined;
      try {
        p = plan(arguments.length, config, values, callback);
      } catch (err) {
        log.warnOnce('pg-plan', `pg: instrumenting a query failed (${(err as Error).message}); it runs uninstrumented`);
        p = undefined;
      }
      if (p === undefined) return original.apply(this, arguments as unknown as unknown[]);
      const pending = p.pending;
      let ret: unknown;
      try {
        const n = p.argc;
        ret =
          n === 3
            ? original.call(this, p.config, p.values, p.callback)
            : n === 2
              ? original.call(this, p.config, p.values)
              : original.call(this, p.config);
      } catch (err) {
        end(pending, err);
        throw err;
      } finally {
        if (p.derived !== undefined) {
          try {
            replayWrites(config as Record<string, unknown>, p.derived, p.callbacks);
          } catch (err) {
            log.warnOnce('pg-replay', `pg: replaying pg's writes on a query config failed: ${(err as Error).message}`);
          }
        }
      }
      if (
        p.promise &&
        ret !== null &&
        typeof ret === 'object' &&
        typeof (ret as PromiseLike<unknown>).then === 'function'
      ) {
        return (ret as PromiseLike<unknown>).then(
          (res: unknown) => {
            end(pending, null);
            return res;
          },
          (err: unknown) => {
            end(pending, err);
            throw err;
          },
        );
      }
      return ret;
    },
  }.query;
}

function wrapConnect(original: Fn) {
  return function connect(this: unknown) {
    try {
      fault('pg-connect');
      announceClient(this as object);
    } catch (err) {
      log.warnOnce('pg-announce', `pg: announcing a client on hatch:instance failed: ${(err as Error).message}`);
    }
    return original.apply(this, arguments as unknown as unknown[]);
  };
}

/** pg's patch code; its definition (module, versions) is in ./index.ts. */
export const clientPatch: PatchCode<typeof Pg> = {
  patch(exports) {
    if (!wrap(exports.Client.prototype, 'query', wrapQuery)) throw new Error('Client.prototype.query not found');
    wrap(exports.Client.prototype, 'connect', wrapConnect);
  },
  unpatch(exports) {
    unwrap(exports.Client.prototype, 'query');
    unwrap(exports.Client.prototype, 'connect');
  },
};
