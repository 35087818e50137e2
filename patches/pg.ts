/**
 * pg (node-postgres) 8.x: wraps Client.prototype.query, which Pool.query also goes through.
 *
 * Every form is handled: text, (text, values), config objects, callbacks (third argument, second
 * argument or config.callback), the promise form, and Submittables (pg.Query, pg-cursor,
 * pg-query-stream). Each query is timed from the call to its result or error and published on
 * `hatch:db.query`; inside a request (or withRequestId) its SQL text is sent as
 * `/* <id> *\/ <text>`.
 *
 * What is never done (pitfalls the anchors hit):
 * - named prepared statements keep their text: pg rejects a reused name with different text;
 * - a text that already starts with our comment gets no second one;
 * - the caller's config object is never mutated or cloned: pg gets an object that inherits from it
 *   (`Object.create`), with its own `text`, so getters, frozen objects and reuse keep working, and
 *   pg's own writes (`callback`, `values`) land on our object, not the caller's;
 * - a Submittable is never cloned (it would lose its prototype): its text is swapped in only for
 *   the synchronous `submit` call that sends it, then put back.
 * What pg itself writes on a config object (8.0.x sets `values`/`callback` on the caller's object;
 * later versions clone it) is replayed onto the caller's object, so the app sees what it saw without
 * the agent. A server error's `position` (a character offset into the text sent) is shifted back
 * by the comment's length, so it points into the app's own SQL.
 * Callbacks run in the request context of the code that issued the query, not the socket's.
 * The promise form returns pg's promise chained once (same value, same error object).
 * Client.prototype.connect is wrapped only to remember each client (weakly) for the health hatch.
 */
import { storage, bindContext } from '../src/context';
import { commentedSql, sqlOperation } from '../src/sql-comment';
import { channels, type DbQueryEvent } from '../src/bus';
import { wrap, unwrap } from '../src/shim';
import { log } from '../src/log';
import { fault } from '../src/fault';
import { remember } from '../src/instances';
import type { Config } from '../src/config';
import type { PatchDefinition } from '../src/registry';
import { now } from '../src/clock';

let sqlComment = true;

interface Pending {
  start: number;
  requestId: string | undefined;
  text: string;
  /** The app's own text (without our comment): its operation is found without skipping the comment. */
  sql: string;
  /** Characters of comment prepended to the text (0 when none). */
  shift: number;
  publish: boolean;
  done: boolean;
}

const shifted = new WeakSet<object>();

/** Points a server error's `position` back into the app's own text. */
function unshiftPosition(err: any, shift: number): void {
  if (shift === 0 || err === null || typeof err !== 'object' || shifted.has(err)) return;
  const pos = err.position;
  if (typeof pos === 'string' && /^\d+$/.test(pos) && Number(pos) > shift) {
    shifted.add(err);
    err.position = String(Number(pos) - shift);
  }
}

function end(p: Pending, err: unknown, at = now()): void {
  if (p.done) return;
  p.done = true;
  if (err) {
    try {
      unshiftPosition(err, p.shift);
    } catch {
      // a frozen or exotic error object stays as it is
    }
  }
  if (!p.publish) return;
  try {
    const event: DbQueryEvent = { requestId: p.requestId, system: 'pg', text: p.text, operation: sqlOperation(p.sql), error: !!err, start: p.start, duration: at - p.start };
    channels.dbQuery.publish(event);
  } catch (e) {
    log.warnOnce('pg-end', `pg: recording a query failed: ${(e as Error).message}`);
  }
}

/** The callback, timed, and run in the caller's request context. */
function wrapCallback(cb: Function, p: Pending): Function {
  const bound = bindContext(cb as (...a: any[]) => any);
  return function (this: unknown, err: unknown) {
    end(p, err);
    return bound.apply(this, arguments as any);
  };
}

function hasOwn(o: object, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, k);
}

/** Temporarily replaces o[k] on the instance; `restore` puts the instance back as it was. */
function override(o: any, k: string, make: (orig: Function, restore: () => void) => Function): boolean {
  const orig = o[k];
  if (typeof orig !== 'function') return false;
  const own = hasOwn(o, k);
  const restore = () => {
    if (own) o[k] = orig;
    else delete o[k];
  };
  o[k] = make(orig, restore);
  return true;
}

function instrumentSubmittable(q: any, id: string | undefined, p: Pending): void {
  // Where the text lives: pg.Query and pg-cursor hold it, pg-query-stream holds a cursor.
  const holder = typeof q.text === 'string' ? q : q.cursor && typeof q.cursor.text === 'string' ? q.cursor : undefined;
  if (holder) {
    p.text = p.sql = holder.text;
    const desc = Object.getOwnPropertyDescriptor(holder, 'text');
    const text = id !== undefined && !q.name && !holder.name && desc && desc.writable ? commentedSql(holder.text, id) : undefined;
    if (text !== undefined) {
      p.text = text;
      p.shift = text.length - holder.text.length;
      override(q, 'submit', (submit, restore) =>
        function (this: unknown) {
          restore();
          const saved = holder.text;
          holder.text = text;
          try {
            return submit.apply(this, arguments);
          } finally {
            holder.text = saved;
          }
        },
      );
    }
  }
  if (!p.publish && p.shift === 0) return;
  let restoreAll = () => {};
  const done = (err: unknown, at: number) => {
    end(p, err, at);
    restoreAll();
  };
  const a = override(q, 'handleError', (orig, restore) => {
    const prev = restoreAll;
    restoreAll = () => {
      prev();
      restore();
    };
    return function (this: unknown, err: unknown) {
      done(err ?? new Error('query failed'), now());
      return orig.apply(this, arguments);
    };
  });
  const b = override(q, 'handleReadyForQuery', (orig, restore) => {
    const prev = restoreAll;
    restoreAll = () => {
      prev();
      restore();
    };
    return function (this: unknown) {
      const at = now();
      try {
        return orig.apply(this, arguments);
      } finally {
        done(null, at); // a no-op when orig reported an error through handleError
      }
    };
  });
  if (!a || !b) restoreAll();
}

interface Plan {
  args: unknown[];
  pending: Pending;
  promise: boolean;
  /** The object handed to pg in place of the caller's config, if any. */
  derived?: any;
  /** The caller's callback and the wrapper that replaced it. */
  callbacks?: [Function, Function];
}

function plan(argc: number, config: any, values: any, callback: any): Plan | undefined {
  const store = storage.getStore();
  const publish = channels.dbQuery.hasSubscribers;
  const id = sqlComment ? store?.id : undefined;
  if ((id === undefined && !publish) || config == null) return undefined;
  fault('pg-query');

  const args: unknown[] = argc >= 3 ? [config, values, callback] : argc === 2 ? [config, values] : [config];
  const pending: Pending = { start: now(), requestId: store?.id, text: '', sql: '', shift: 0, publish, done: false };

  if (typeof config.submit === 'function') {
    instrumentSubmittable(config, id, pending);
    // pg sets these as the Submittable's callback when it has none: run them in our context.
    if (typeof values === 'function') args[1] = bindContext(values);
    else if (typeof callback === 'function') args[2] = bindContext(callback);
    return { args, pending, promise: false };
  }

  let derived: any;
  if (typeof config === 'string') {
    const text = id !== undefined ? commentedSql(config, id) : undefined;
    pending.sql = config;
    pending.text = text ?? config;
    if (text !== undefined) {
      args[0] = text;
      pending.shift = text.length - config.length;
    }
  } else if (typeof config === 'object') {
    const original = config.text;
    const text = id !== undefined && typeof original === 'string' && !config.name ? commentedSql(original, id) : undefined;
    pending.sql = typeof original === 'string' ? original : '';
    pending.text = text ?? pending.sql;
    if (text !== undefined) {
      pending.shift = text.length - original.length;
      derived = Object.create(config);
      Object.defineProperty(derived, 'text', { value: text, writable: true, enumerable: true, configurable: true });
    }
  } else {
    return undefined; // pg reports its own error for anything else
  }

  // Mirror pg's own precedence: callback argument, then values-as-callback, then config.callback.
  let promise = false;
  let callbacks: [Function, Function] | undefined;
  if (callback) {
    if (typeof callback === 'function') args[2] = (callbacks = [callback, wrapCallback(callback, pending)])[1];
  } else if (typeof values === 'function') {
    args[1] = (callbacks = [values, wrapCallback(values, pending)])[1];
  } else if (typeof config === 'object' && config.callback) {
    if (typeof config.callback === 'function') {
      derived ??= Object.create(config);
      Object.defineProperty(derived, 'callback', {
        value: wrapCallback(config.callback, pending),
        writable: true,
        enumerable: true,
        configurable: true,
      });
    }
  } else {
    promise = true;
  }
  if (derived !== undefined) args[0] = derived;
  return { args, pending, promise, derived, callbacks };
}

/**
 * Replays onto the caller's config what pg wrote on the object we handed it (pg 8.0.x sets
 * `values` and `callback`), with the caller's own callback in place of our wrapper.
 */
function replayWrites(config: any, derived: any, callbacks: [Function, Function] | undefined): void {
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

function wrapQuery(original: (...args: any[]) => any) {
  return function query(this: unknown, config: any, values?: any, callback?: any) {
    let p: Plan | undefined;
    try {
      p = plan(arguments.length, config, values, callback);
    } catch (err) {
      log.warnOnce('pg-plan', `pg: instrumenting a query failed (${(err as Error).message}); it runs uninstrumented`);
      p = undefined;
    }
    if (p === undefined) return original.apply(this, arguments as any);
    const pending = p.pending;
    let ret: any;
    try {
      ret = original.apply(this, p.args);
    } catch (err) {
      end(pending, err);
      throw err;
    } finally {
      if (p.derived !== undefined) {
        try {
          replayWrites(config, p.derived, p.callbacks);
        } catch (err) {
          log.warnOnce('pg-replay', `pg: replaying pg's writes on a query config failed: ${(err as Error).message}`);
        }
      }
    }
    if (p.promise && ret !== null && typeof ret === 'object' && typeof ret.then === 'function') {
      return ret.then(
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
  };
}

function wrapConnect(original: (...args: any[]) => any) {
  return function connect(this: unknown) {
    try {
      fault('pg-connect');
      remember('client', this as object);
    } catch (err) {
      log.warnOnce('pg-remember', `pg: remembering a client for the health hatch failed: ${(err as Error).message}`);
    }
    return original.apply(this, arguments as any);
  };
}

export const pg: PatchDefinition = {
  module: 'pg',
  feature: 'pg',
  versions: ['8.0.3', '9.0.0'],
  patch(exports: any, config: Config) {
    sqlComment = config.sqlComment;
    if (!wrap(exports.Client.prototype, 'query', wrapQuery)) throw new Error('Client.prototype.query not found');
    wrap(exports.Client.prototype, 'connect', wrapConnect);
  },
  unpatch(exports: any) {
    unwrap(exports.Client.prototype, 'query');
    unwrap(exports.Client.prototype, 'connect');
  },
};
