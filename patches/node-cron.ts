/**
 * node-cron 3.x and 4.x: each tick of a task made by `cron.schedule` or `cron.createTask` runs in a
 * context of its own (src/jobs.ts), with a new ID per tick: its SQL is commented, its logs and
 * outgoing calls carry the ID, and it is timed as `job.run` (job: the task's `name` option, else its
 * expression made metric-safe; outcome completed or failed).
 *
 * How: `schedule` and `createTask` (on the module's exports and, in 4.x, on its default export
 * object too) hand node-cron a wrapper of the app's function, made to look like it (src/shim.ts).
 * The wrapper returns what the function returns; node-cron awaits or catches a tick's promise
 * itself (3.x: `task-failed`, 4.x: `execution:failed`), so observing it hides nothing. Two ticks
 * that overlap each get their own context and ID.
 * Limitations: a background task (a file path instead of a function) runs in a child process and is
 * left alone; node-cron 4's ES-module build, which `import` reaches, is patched only through
 * `--import`'s loader (untested).
 */
import { newRequestId } from '../src/request-id';
import { runJob, scheduleName } from '../src/jobs';
import { markWrapper, wrap, unwrap, type AnyFunction } from '../src/shim';
import { log } from '../src/log';
import type { PatchDefinition } from '../src/registry';

type Exports = Record<string, unknown> & { default?: Record<string, unknown> };

function tick(func: AnyFunction, name: string): AnyFunction {
  return markWrapper(
    function (this: unknown) {
      return runJob(
        newRequestId(),
        { system: 'node-cron', queue: '', name, jobId: '', attempt: 1, wait: undefined },
        func,
        this,
        arguments,
      );
    },
    func,
    'node-cron task',
  );
}

function wrapScheduler(original: AnyFunction): AnyFunction {
  return function (this: unknown, expression: unknown, func: unknown, options: unknown) {
    let f = func;
    try {
      if (typeof func === 'function')
        f = tick(func as AnyFunction, scheduleName((options as { name?: unknown } | undefined)?.name, expression));
    } catch (err) {
      log.warnOnce('node-cron-wrap', `node-cron: could not wrap a task (${(err as Error).message})`);
      f = func;
    }
    if (f === func) return Reflect.apply(original, this, arguments);
    const args = Array.prototype.slice.call(arguments);
    args[1] = f;
    return Reflect.apply(original, this, args);
  };
}

/** The objects that hold `schedule`: the exports, and 4.x's default export (a separate object). */
function holders(exports: Exports): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [exports];
  const d = exports.default;
  if (d !== null && typeof d === 'object' && d !== exports) out.push(d);
  return out;
}

export const nodeCron: PatchDefinition<Exports> = {
  module: 'node-cron',
  feature: 'cron',
  versions: ['3.0.0', '5.0.0'],
  patch(exports) {
    if (typeof exports?.schedule !== 'function') throw new Error('schedule not found');
    for (const h of holders(exports))
      for (const name of ['schedule', 'createTask']) if (typeof h[name] === 'function') wrap(h, name, wrapScheduler);
  },
  unpatch(exports) {
    if (exports === null || typeof exports !== 'object') return;
    for (const h of holders(exports)) for (const name of ['schedule', 'createTask']) unwrap(h, name);
  },
};
