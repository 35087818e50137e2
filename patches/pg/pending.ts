/**
 * One pg query in flight: when it started, the text sent and the app's own, the length of the
 * comment, and its end, published once on `hatch:db.query` (src/bus.ts), whichever of pg's paths
 * (callback, promise, Submittable) reports it first. At its end a server error's `position` (a
 * character offset into the text sent) is mapped back past the comment (src/sql-comment.ts
 * positionInText), so it points into the app's own SQL.
 */
import { storage, type RequestContext } from '../../src/context';
import { sqlOperation, positionInText } from '../../src/sql-comment';
import { channels, type DbQueryEvent } from '../../src/bus';
import { log } from '../../src/log';
import { now } from '../../src/clock';

/** Any function: what a wrapper forwards to and the callbacks it passes on, of whatever shape. */
export type Fn = (...args: unknown[]) => unknown;

export interface Pending {
  start: number;
  requestId: string | undefined;
  text: string;
  /** The app's own text (without our comment): its operation is found without skipping the comment. */
  sql: string;
  publish: boolean;
  done: boolean;
}

const shifted = new WeakSet<object>();

/** Points a server error's `position` back into the app's own text. */
function unshiftPosition(err: unknown, sent: string, text: string): void {
  if (sent === text || err === null || typeof err !== 'object' || shifted.has(err)) return;
  const pos = (err as { position?: unknown }).position;
  if (typeof pos === 'string' && /^\d+$/.test(pos)) {
    const mapped = positionInText(sent, text, Number(pos));
    if (mapped === Number(pos)) return;
    shifted.add(err);
    (err as { position?: unknown }).position = String(mapped);
  }
}

export function end(p: Pending, err: unknown, at = now()): void {
  if (p.done) return;
  p.done = true;
  if (err) {
    try {
      unshiftPosition(err, p.text, p.sql);
    } catch {
      // a frozen or exotic error object stays as it is
    }
  }
  if (!p.publish) return;
  try {
    const event: DbQueryEvent = {
      requestId: p.requestId,
      system: 'pg',
      text: p.text,
      operation: sqlOperation(p.sql),
      error: !!err,
      start: p.start,
      duration: at - p.start,
    };
    channels.dbQuery.publish(event);
  } catch (e) {
    log.warnOnce('pg-end', `pg: recording a query failed: ${(e as Error).message}`);
  }
}

/**
 * The callback, timed, and run in the caller's request context (`store`: the one current when the
 * query was issued, as bindContext would keep it, read once by the caller): one closure per query,
 * where a bound callback inside a timing wrapper made two, and a call more at the query's end.
 */
export function wrapCallback(cb: Fn, p: Pending, store: RequestContext | undefined): Fn {
  return function (this: unknown, err: unknown) {
    end(p, err);
    // callIn's two paths written out (see bindContext): no arguments object for the same-context call.
    if (storage.getStore() === store) return Reflect.apply(cb, this, arguments);
    return storage.run(store as RequestContext, Reflect.apply, cb, this, arguments);
  };
}
