/**
 * finalhandler 1 and 2 (what Express 4 and 5 answer with when no middleware answered): an error
 * that reaches it (a handler threw, passed `next(err)` or, on Express 5, rejected, and no error
 * middleware of the app answered) is captured as the error the request ends in (src/errors.ts
 * captureError), with the request's context. Errors that an app's error middleware handles are
 * seen by the Express patch instead (patches/express.ts, the Layer's error path).
 *
 * How: finalhandler exports one function, which Express keeps in a variable of its own, so it cannot
 * be patched in place; `require('finalhandler')` is answered with a wrapper (src/registry.ts
 * `replace`). The wrapper makes finalhandler's `done` as before and hands back a function that,
 * given an error, captures it and calls that `done` with the same arguments. Nothing else changes:
 * finalhandler answers, logs (Express's `console.error(err.stack)`) and sets the status itself.
 *
 * Cost: one small function per request that Express handles (Express makes a `done` per request,
 * plus its options object and a bound logger; this is one more). The wrapper's frame is on the stack
 * while finalhandler answers, after the error exists: only an error made there (a `res.end` an app
 * wrapped, as compression or express-session do) has one more frame.
 * Limitations: an app that loads finalhandler other than by `require` (an ES-module import of it)
 * keeps the original; errors that reach it then end as `status` records. After the agent stops, the
 * wrapper Express holds passes straight through.
 */
import { captureErrorFor } from '../src/errors';
import { markWrapper, type Fn } from '../src/shim';
import { log } from '../src/log';
import { fault } from '../src/fault';
import type { PatchDefinition } from '../src/registry';

let active = false;
const wrappers = new WeakMap<Fn, Fn>();

function wrapFinalhandler(original: Fn): Fn {
  return function finalhandler(this: unknown, req: unknown) {
    const done = original.apply(this, arguments as unknown as unknown[]) as Fn;
    if (!active || typeof done !== 'function') return done;
    return function (this: unknown, err: unknown) {
      // finalhandler treats a falsy argument as "no error": a 404.
      if (err) {
        try {
          fault('finalhandler');
          captureErrorFor(req, err);
        } catch (e) {
          log.warnOnce('finalhandler', `finalhandler: capturing an error failed: ${(e as Error).message}`);
        }
      }
      return done.apply(this, arguments as unknown as unknown[]);
    };
  };
}

export const finalhandler: PatchDefinition<Fn> = {
  module: 'finalhandler',
  feature: 'express',
  versions: ['1.0.0', '3.0.0'],
  patch(exports) {
    if (typeof exports !== 'function') throw new Error('finalhandler does not export a function');
    active = true;
  },
  unpatch() {
    active = false;
  },
  replace(exports) {
    let w = wrappers.get(exports);
    if (w === undefined) {
      w = markWrapper(wrapFinalhandler(exports), exports, 'finalhandler');
      wrappers.set(exports, w);
    }
    return w;
  },
};
