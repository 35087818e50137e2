/**
 * cron (kelektiv) 4.3.4 and later 4.x: each call of a CronJob's callbacks at a tick runs in a
 * context of its own (src/jobs.ts), with a new ID per tick: its SQL is commented, its logs and
 * outgoing calls carry the ID, and it is timed as `job.run` (job: the CronJob's `name`, else its
 * expression made metric-safe; outcome completed or failed).
 *
 * How: `CronJob.prototype.addCallback`, through which the constructor adds `onTick` (and the app
 * adds more), stores a wrapper of each callback (made to look like it, src/shim.ts) that calls it
 * in a new context. The wrapper returns what the callback returns: cron awaits (waitForCompletion)
 * or catches a callback's promise itself from 4.3.4 on, and catches a synchronous throw, so
 * observing them hides nothing. Before 4.3.4 cron left a rejected tick promise unhandled (the
 * process crashed with it): watching it would have handled it, so those versions are left alone.
 * Limitations: each callback of a CronJob with several is a run of its own, with its own ID; a
 * command callback (a string or object spawning a child process) is timed to its spawn only.
 */
import { newRequestId } from '../src/request-id';
import { runJob, scheduleName } from '../src/jobs';
import { markWrapper, wrap, unwrap, type AnyFunction } from '../src/shim';
import { log } from '../src/log';
import type { PatchDefinition } from '../src/registry';

type JobSeen = { name?: unknown; cronTime?: { source?: unknown } };

function tick(callback: AnyFunction, job: JobSeen): AnyFunction {
  const name = scheduleName(job.name, job.cronTime?.source);
  return markWrapper(
    function (this: unknown) {
      return runJob(
        newRequestId(),
        { system: 'cron', queue: '', name, jobId: '', attempt: 1, wait: undefined },
        callback,
        this,
        arguments,
      );
    },
    callback,
    'cron callback',
  );
}

type Exports = { CronJob?: { prototype: Record<string, unknown> } };

export const cron: PatchDefinition<Exports> = {
  module: 'cron',
  feature: 'cron',
  versions: ['4.3.4', '5.0.0'],
  patch(exports) {
    const proto = exports?.CronJob?.prototype;
    if (!proto || typeof proto.addCallback !== 'function') throw new Error('CronJob.prototype.addCallback not found');
    wrap<(cb: unknown) => unknown>(
      proto,
      'addCallback',
      (original) =>
        function addCallback(this: JobSeen, callback: unknown) {
          let cb = callback;
          try {
            if (typeof callback === 'function') cb = tick(callback as AnyFunction, this);
          } catch (err) {
            log.warnOnce('cron-wrap', `cron: could not wrap a callback (${(err as Error).message})`);
            cb = callback;
          }
          if (cb === callback) return Reflect.apply(original, this, arguments);
          return Reflect.apply(original, this, [cb, ...Array.prototype.slice.call(arguments, 1)]);
        },
    );
  },
  unpatch(exports) {
    const proto = exports?.CronJob?.prototype;
    if (proto) unwrap(proto, 'addCallback');
  },
};
