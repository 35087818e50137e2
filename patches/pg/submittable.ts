/**
 * A pg Submittable (pg.Query, pg-cursor, pg-query-stream): timed and commented without cloning it
 * (a clone would lose its prototype) and without leaving a trace on it. Its text is swapped in
 * only for the synchronous `submit` call that sends it, then put back; its `handleError` and
 * `handleReadyForQuery` are overridden on the instance until the query ends, then restored.
 * Named statements and non-writable texts keep their text (pg rejects a reused name with other text).
 */
import { sqlToSendIn } from '../../src/sql-comment';
import type { RequestContext } from '../../src/context';
import { now } from '../../src/clock';
import type * as Pg from 'pg';
import { end, type Fn, type Pending } from './pending';

/** Where a Submittable may hold its text (pg.Query, pg-cursor), as read here: unchecked. */
type TextHolder = { text?: unknown; name?: unknown };
/** A Submittable as read here: its text, or (pg-query-stream) a cursor holding it. */
type SubmittableSeen = Pick<Pg.Submittable, 'submit'> & TextHolder & { cursor?: TextHolder };

function hasOwn(o: object, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, k);
}

/** Temporarily replaces o[k] on the instance; `restore` puts the instance back as it was. */
function override(o: Record<string, unknown>, k: string, make: (orig: Fn, restore: () => void) => Fn): boolean {
  const orig = o[k];
  if (typeof orig !== 'function') return false;
  const own = hasOwn(o, k);
  const restore = () => {
    if (own) o[k] = orig;
    else delete o[k];
  };
  o[k] = make(orig as Fn, restore);
  return true;
}

/**
 * `comment`: whether src/sql-comment.ts sqlToSend may comment the text now, and `store` the request
 * context, both read by the caller in the context that issued the query.
 */
export function instrumentSubmittable(
  q: SubmittableSeen,
  comment: boolean,
  p: Pending,
  store: RequestContext | undefined,
): void {
  // Where the text lives: pg.Query and pg-cursor hold it, pg-query-stream holds a cursor.
  const holder = typeof q.text === 'string' ? q : q.cursor && typeof q.cursor.text === 'string' ? q.cursor : undefined;
  if (holder) {
    // holder.text is a string: that is how holder was chosen
    p.text = p.sql = holder.text as string;
    const desc = Object.getOwnPropertyDescriptor(holder, 'text');
    const text =
      comment && !q.name && !holder.name && desc && desc.writable
        ? sqlToSendIn(holder.text as string, 'pg', store)
        : undefined;
    if (text !== undefined) {
      p.text = text;
      override(
        q,
        'submit',
        (submit, restore) =>
          function (this: unknown) {
            restore();
            const saved = holder.text;
            holder.text = text;
            try {
              return submit.apply(this, arguments as unknown as unknown[]);
            } finally {
              holder.text = saved;
            }
          },
      );
    }
  }
  if (!p.publish && p.text === p.sql) return;
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
      return orig.apply(this, arguments as unknown as unknown[]);
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
        return orig.apply(this, arguments as unknown as unknown[]);
      } finally {
        done(null, at); // a no-op when orig reported an error through handleError
      }
    };
  });
  if (!a || !b) restoreAll();
}
