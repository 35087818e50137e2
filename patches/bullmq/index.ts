/**
 * BullMQ 5.x: each job a Worker processes runs in a context of its own (src/jobs.ts), and a job
 * enqueued inside a request carries that request's ID to the worker that runs it.
 *
 * How (BullMQ's own classes only; its Redis client is left to the Redis patches):
 * - `Queue.prototype.add` and `addBulk`: inside a request, a job or the process's run, the job's
 *   options get one field of ours, `hatchRequestId` (FIELD), on a copy: the app's options object
 *   and its `data` are never touched. BullMQ stores options it does not know as they are and hands
 *   them back on the Job (checked on 5.0.0 and 5.x's newest). A job that has the field already, or
 *   a repeatable one (`repeat`: each repetition would carry the scheduling request's ID), is passed
 *   through unchanged.
 * - `Worker.prototype.callProcessJob(job, token, signal)`, which BullMQ's processJob awaits: the
 *   processor is called inside a job context. Its ID is the carried one when it passes the
 *   allowlist, else `<queue>:<job id>` when that does, else a new one. The promise (or value) the
 *   processor returned is what BullMQ gets, not observed by us: the attempt's end is BullMQ's own
 *   `Job.prototype.moveToCompleted(value)` or `moveToFailed(err)`, which its processJob calls once
 *   the processor settled (outcome completed or failed, the error described with its stack). A
 *   WeakMap from the job to its context joins the two; no `then` of ours runs on each job. Those
 *   calls, and BullMQ's events after them, run outside the job's context as before. A processor
 *   that throws synchronously is recorded at once.
 *   The outcomes are then BullMQ's: an attempt BullMQ neither completes nor fails (the processor
 *   threw DelayedError, WaitingChildrenError or the rate-limit error, or the worker's connection
 *   was closing) is not recorded, as BullMQ emits neither 'completed' nor 'failed' for it.
 * - A `hatch-ping` job marked by the queue-ping hatch (PING_FIELD) is answered by the wrapper
 *   itself, never handed to the app's processor (./probe.ts).
 * - Each Queue is announced for the health and queue-ping hatches at its construction (Queue's
 *   constructor calls `waitUntilReady`, wrapped on Queue.prototype).
 * The wrappers are object-literal methods (BullMQ 5's are class methods), so the shim hands them out
 * as they are, with no call of its own on every job (src/shim.ts asMethod).
 * Limitations: a sandboxed processor (a file path) runs in a child process, where the job's context
 * does not reach; FlowProducer and Job.create called directly carry no ID; a Worker's 'completed'
 * event and QueueEvents still see ping jobs (named `hatch-ping`).
 */
import type * as Bullmq from 'bullmq';
import { storage } from '../../src/context';
import { currentRun } from '../../src/run';
import { isValidRequestId, newRequestId } from '../../src/request-id';
import { boundedName, finish, jobContext, threw, type JobContext, type JobInfo } from '../../src/jobs';
import { channels } from '../../src/bus';
import { wrap, unwrap } from '../../src/shim';
import { log } from '../../src/log';
import type { PatchDefinition } from '../../src/registry';
import { announceQueue, FIELD, isPing, pong } from './probe';

type Opts = Record<string, unknown> | undefined;
type JobSeen = {
  id?: unknown;
  name?: unknown;
  opts?: Opts;
  attemptsMade?: unknown;
  timestamp?: unknown;
  delay?: unknown;
  queueName?: unknown;
};
type WorkerSeen = { name?: unknown; id?: unknown; opts?: { name?: unknown } };

/** The ID a job enqueued now carries: the current request's or job's, else the process's run. */
function enqueuingId(): string {
  return storage.getStore()?.id ?? currentRun().id;
}

/** The options with the ID carried (a copy), or the same options when they must stay as they are. */
function carry(opts: Opts, id: string): Opts {
  if (opts == null) return { [FIELD]: id };
  if (typeof opts !== 'object' || opts.repeat != null || opts[FIELD] !== undefined) return opts;
  return { ...opts, [FIELD]: id };
}

function jobId(queue: string, job: JobSeen): string {
  const carried = job.opts?.[FIELD];
  // A batch of jobs enqueued together carries one ID: the allowlist check remembers the last that passed.
  if (isValidRequestId(carried)) return carried;
  const own = `${queue}:${String(job.id)}`;
  return isValidRequestId(own) ? own : newRequestId();
}

function num(v: unknown): number | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : undefined;
}

function queueOf(worker: WorkerSeen, job: JobSeen): string {
  return typeof worker.name === 'string' ? worker.name : String(job.queueName ?? '');
}

function infoOf(queue: string, job: JobSeen): JobInfo {
  const made = num(job.attemptsMade) ?? 0;
  let wait: number | undefined;
  if (made === 0) {
    const enqueued = num(job.timestamp);
    // Now, not the job's processedOn: BullMQ 5.0 stamps that at the fetch's start, before the job was there.
    const started = Date.now();
    if (enqueued !== undefined) wait = Math.max(0, started - enqueued - (num(job.delay) ?? 0));
  }
  return {
    system: 'bullmq',
    queue: boundedName('queue', queue),
    name: boundedName('job', job.name),
    jobId: String(job.id ?? ''),
    attempt: made + 1,
    wait,
  };
}

type Proto = Record<string, unknown>;

/** Jobs whose processor returned, to the context it ran in, until BullMQ moves them on. */
const running = new WeakMap<object, JobContext>();

/** Records the attempt of `job` that BullMQ is moving to completed or failed, once. Never throws. */
function ended(job: unknown, failed: boolean, err: unknown): void {
  try {
    const ctx = running.get(job as object);
    if (ctx === undefined) return;
    running.delete(job as object);
    finish(ctx, failed, err);
  } catch (e) {
    log.warnOnce('bullmq-end', `bullmq: could not record a job's end (${(e as Error).message})`);
  }
}

export const bullmq: PatchDefinition<typeof Bullmq> = {
  module: 'bullmq',
  feature: 'bullmq',
  versions: ['5.0.0', '6.0.0'],
  patch(exports) {
    const queue = exports?.Queue?.prototype as unknown as Proto | undefined;
    const worker = exports?.Worker?.prototype as unknown as Proto | undefined;
    const jobProto = exports?.Job?.prototype as unknown as Proto | undefined;
    if (!queue || typeof queue.add !== 'function' || typeof queue.addBulk !== 'function')
      throw new Error('Queue.prototype.add not found');
    if (!worker || typeof worker.callProcessJob !== 'function')
      throw new Error('Worker.prototype.callProcessJob not found');
    if (!jobProto || typeof jobProto.moveToCompleted !== 'function' || typeof jobProto.moveToFailed !== 'function')
      throw new Error('Job.prototype.moveToCompleted not found');
    type Fn = (...a: unknown[]) => unknown;
    wrap<Fn>(
      queue,
      'add',
      (original) =>
        ({
          add(this: unknown, name: unknown, data: unknown, opts: Opts) {
            let next: Opts;
            try {
              next = carry(opts, enqueuingId());
            } catch (err) {
              log.warnOnce('bullmq-add', `bullmq: could not carry the request ID (${(err as Error).message})`);
              return Reflect.apply(original, this, arguments);
            }
            if (next === opts) return Reflect.apply(original, this, arguments);
            return Reflect.apply(original, this, [name, data, next, ...Array.prototype.slice.call(arguments, 3)]);
          },
        }).add,
    );
    wrap<Fn>(
      queue,
      'addBulk',
      (original) =>
        ({
          addBulk(this: unknown, jobs: unknown) {
            let next: unknown = jobs;
            try {
              if (Array.isArray(jobs)) {
                const id = enqueuingId();
                next = jobs.map((j: unknown) => {
                  if (j === null || typeof j !== 'object') return j;
                  const o = (j as { opts?: Opts }).opts;
                  const c = carry(o, id);
                  return c === o ? j : { ...(j as object), opts: c };
                });
              }
            } catch (err) {
              log.warnOnce('bullmq-add', `bullmq: could not carry the request ID (${(err as Error).message})`);
              next = jobs;
            }
            if (next === jobs) return Reflect.apply(original, this, arguments);
            return Reflect.apply(original, this, [next, ...Array.prototype.slice.call(arguments, 1)]);
          },
        }).addBulk,
    );
    wrap<Fn>(
      queue,
      'waitUntilReady',
      (original) =>
        ({
          waitUntilReady(this: object) {
            try {
              announceQueue(this);
            } catch (err) {
              log.warnOnce('bullmq-announce', `bullmq: could not announce a queue (${(err as Error).message})`);
            }
            return Reflect.apply(original, this, arguments);
          },
        }).waitUntilReady,
    );
    wrap<Fn>(
      jobProto,
      'moveToCompleted',
      (original) =>
        ({
          moveToCompleted(this: unknown) {
            ended(this, false, undefined);
            return Reflect.apply(original, this, arguments);
          },
        }).moveToCompleted,
    );
    wrap<Fn>(
      jobProto,
      'moveToFailed',
      (original) =>
        ({
          moveToFailed(this: unknown, err: unknown) {
            ended(this, true, err);
            return Reflect.apply(original, this, arguments);
          },
        }).moveToFailed,
    );
    wrap<Fn>(
      worker,
      'callProcessJob',
      (original) =>
        ({
          callProcessJob(this: WorkerSeen, job: JobSeen) {
            let id: string;
            let info: JobInfo;
            try {
              if (isPing(job)) return pong(this);
              const queue = queueOf(this, job);
              info = infoOf(queue, job);
              id = jobId(queue, job);
            } catch (err) {
              log.warnOnce('bullmq-job', `bullmq: could not start a job context (${(err as Error).message})`);
              return Reflect.apply(original, this, arguments);
            }
            // storage.run straight from here (not through runJob): one agent frame fewer in a stack
            // trace the processor's synchronous throw leaves in the job's record.
            const ctx = jobContext(id, info);
            let result: unknown;
            try {
              result = storage.run(ctx, Reflect.apply, original, this, arguments);
            } catch (err) {
              threw(ctx, err);
              throw err;
            }
            if (channels.job.hasSubscribers && typeof job === 'object' && job !== null) running.set(job, ctx);
            return result;
          },
        }).callProcessJob,
    );
  },
  unpatch(exports) {
    const queue = exports?.Queue?.prototype as object | undefined;
    const worker = exports?.Worker?.prototype as object | undefined;
    if (queue) for (const name of ['add', 'addBulk', 'waitUntilReady']) unwrap(queue, name);
    if (worker) unwrap(worker, 'callProcessJob');
    const jobProto = exports?.Job?.prototype as object | undefined;
    if (jobProto) for (const name of ['moveToCompleted', 'moveToFailed']) unwrap(jobProto, name);
  },
};
