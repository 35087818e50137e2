/**
 * pg-pool (behind pg.Pool): binds connect callbacks to the caller's async context.
 * A pool.query() that waits for a connection is resumed by whichever request releases one; without
 * this, its query would run (and be commented) in the releasing request's context.
 * The promise form needs nothing: an awaited promise resumes in the awaiting context.
 * Each pool is announced on `hatch:instance` at its connects (./probe.ts; the registry keeps the first).
 */
import { bindContext } from '../../src/context';
import { wrap, unwrap } from '../../src/shim';
import { log } from '../../src/log';
import { fault } from '../../src/fault';
import type PgPool from 'pg-pool';
import type { PatchCode } from './index';
import type { Fn } from './pending';
import { announcePool } from './probe';

function wrapConnect(original: Fn) {
  return function connect(this: unknown, cb?: unknown) {
    let bound: unknown;
    try {
      fault('pg-pool-connect');
      announcePool(this as object);
      if (typeof cb === 'function') bound = bindContext(cb as Fn);
    } catch (err) {
      // The pool still connects; only the callback's context (or the pool's announcement) is lost.
      log.warnOnce(
        'pg-pool-connect',
        `pg-pool: instrumenting connect failed (${(err as Error).message}); it runs uninstrumented`,
      );
      bound = undefined;
    }
    if (bound === undefined) return original.apply(this, arguments as unknown as unknown[]);
    return original.call(this, bound);
  };
}

/** pg-pool's patch code; its definition (module, versions) is in ./index.ts. */
export const poolPatch: PatchCode<typeof PgPool> = {
  patch(Pool) {
    if (!wrap(Pool.prototype, 'connect', wrapConnect)) throw new Error('Pool.prototype.connect not found');
  },
  unpatch(Pool) {
    unwrap(Pool.prototype, 'connect');
  },
};
