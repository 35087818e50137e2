/**
 * pg-cursor (and pg-query-stream, built on it): binds read/close callbacks to the caller's async
 * context. pg delivers rows from its socket, so without this a cursor's callback (and the rows a
 * query stream pushes from it) would run outside the request that opened the cursor.
 * Timing and the SQL comment of cursors are done by the pg patch (a cursor is a Submittable).
 */
import { bindContext } from '../../src/context';
import { wrap, unwrap } from '../../src/shim';
import { log } from '../../src/log';
import { fault } from '../../src/fault';
import type PgCursor from 'pg-cursor';
import type { PatchCode } from './index';
import type { Fn } from './pending';

function bindLast(original: Fn) {
  return function (this: unknown) {
    const last = arguments.length - 1;
    if (last >= 0 && typeof arguments[last] === 'function') {
      let args: unknown[] | undefined;
      try {
        fault('pg-cursor');
        args = Array.prototype.slice.call(arguments);
        args[last] = bindContext(args[last] as Fn);
      } catch (err) {
        log.warnOnce('pg-cursor', `pg-cursor: binding a callback failed (${(err as Error).message}); it runs unbound`);
        args = undefined;
      }
      if (args !== undefined) return original.apply(this, args);
    }
    return original.apply(this, arguments as unknown as unknown[]);
  };
}

/** pg-cursor's patch code; its definition (module, versions) is in ./index.ts. */
export const cursorPatch: PatchCode<typeof PgCursor> = {
  patch(Cursor) {
    if (!wrap(Cursor.prototype, 'read', bindLast)) throw new Error('Cursor.prototype.read not found');
    wrap(Cursor.prototype, 'close', bindLast);
  },
  unpatch(Cursor) {
    unwrap(Cursor.prototype, 'read');
    unwrap(Cursor.prototype, 'close');
  },
};
