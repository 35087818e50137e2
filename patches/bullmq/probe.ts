/**
 * What the agent knows about BullMQ Queues, for the health and queue-ping hatches (src/instances.ts
 * ResourceKind), and the marks the patch (./index.ts) puts on the jobs it carries an ID in and on
 * ping jobs.
 *
 * - Health (probe): the queue's waiting and active counts (`getJobCounts`) and the workers connected
 *   to it (`getWorkers`, which lists Redis clients named by BullMQ), through the app's own Queue
 *   object, hence its own Redis connection. A queue with no worker connected fails its check: its
 *   jobs would wait forever.
 * - Ping: adds a `hatch-ping` job (marked with PING_FIELD) through the app's Queue, then reads the
 *   job back through the same Queue every POLL_MS until it is completed or `timeoutMs` passed. A
 *   Worker under the agent recognises the mark and completes the job itself, with a return value
 *   naming the worker (pong); the app's processor never sees it. The job stays in the queue's
 *   completed list, under the name `hatch-ping`, as BullMQ keeps completed jobs (at most
 *   PING_KEEP of them: `removeOnComplete`). A ping no worker took in time is removed when it is
 *   still waiting, so a worker that comes later does not run it.
 * Limitations: a Worker in a process without the agent hands a ping job to its app's processor
 * (every worker process must run the agent, or be given no ping); the fields read are BullMQ 5's
 * (`name`, `closing`, a job's `timestamp`, `processedOn`, `finishedOn`,
 * `returnvalue`).
 */
import * as os from 'node:os';
import { channels, type InstanceEvent } from '../../src/bus';
import type { PingAnswer, ResourceKind } from '../../src/instances';

/** The job option that carries the enqueuing request's ID (BullMQ keeps options it does not know). */
export const FIELD = 'hatchRequestId';
/** The job option that marks a ping job of the queue-ping hatch. */
export const PING_FIELD = 'hatchPing';
export const PING_NAME = 'hatch-ping';
const PING_KEEP = 100;
const POLL_MS = 20;

interface JobLike {
  id?: unknown;
  name?: unknown;
  opts?: Record<string, unknown>;
  timestamp?: unknown;
  processedOn?: unknown;
  finishedOn?: unknown;
  returnvalue?: unknown;
  failedReason?: unknown;
  remove?(): Promise<unknown>;
  getState?(): Promise<string>;
}

interface QueueSeen {
  name?: unknown;
  closing?: unknown;
  opts?: { connection?: { options?: { host?: unknown; port?: unknown }; host?: unknown; port?: unknown } };
  add(name: string, data: unknown, opts: Record<string, unknown>): Promise<JobLike>;
  getJob(id: unknown): Promise<JobLike | undefined>;
  getJobCounts(...types: string[]): Promise<Record<string, number>>;
  getWorkers(): Promise<unknown[]>;
}

export function isPing(job: JobLike | undefined): boolean {
  return job?.name === PING_NAME && job.opts?.[PING_FIELD] === true;
}

/** What a Worker under the agent answers a ping with, instead of calling the app's processor. */
export function pong(worker: { name?: unknown; id?: unknown; opts?: { name?: unknown } }): Promise<unknown> {
  return Promise.resolve({
    hatchPing: 'pong',
    // The job's own processedOn can be earlier than the job (BullMQ 5.0 stamps the fetch's start).
    startedAt: Date.now(),
    worker: {
      name: typeof worker.opts?.name === 'string' ? worker.opts.name : '',
      id: typeof worker.id === 'string' ? worker.id : '',
      host: os.hostname(),
      pid: process.pid,
    },
  });
}

function num(v: unknown): number | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : undefined;
}

const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms).unref();
  });

async function ping(queue: QueueSeen, timeoutMs: number): Promise<PingAnswer> {
  const began = performance.now();
  const job = await queue.add(
    PING_NAME,
    {},
    {
      [PING_FIELD]: true,
      attempts: 1,
      removeOnComplete: PING_KEEP,
      removeOnFail: PING_KEEP,
    },
  );
  const jobId = String(job.id);
  for (;;) {
    const left = timeoutMs - (performance.now() - began);
    if (left <= 0) break;
    await sleep(Math.min(POLL_MS, left));
    const seen = await queue.getJob(job.id);
    if (seen === undefined) continue;
    const enqueued = num(seen.timestamp);
    const started = num(seen.processedOn);
    const finished = num(seen.finishedOn);
    if (finished === undefined) continue;
    const rv = seen.returnvalue as { hatchPing?: unknown; worker?: unknown; startedAt?: unknown } | null | undefined;
    // Clocks of two processes (maybe two machines): a skew below zero is shown as 0.
    const since = (t: number | undefined) =>
      t === undefined || enqueued === undefined ? null : Math.max(0, t - enqueued);
    if (rv?.hatchPing !== 'pong') {
      // Finished, but not by the agent's wrapper: a worker without the agent ran it.
      return {
        ok: false,
        message: `job ${jobId} was finished by a worker without the agent (it reached the app's processor)`,
        queue: queue.name,
        jobId,
        failedReason: typeof seen.failedReason === 'string' ? seen.failedReason : null,
      };
    }
    return {
      ok: true,
      message: `a worker completed job ${jobId} in ${Math.round(performance.now() - began)} ms`,
      queue: queue.name,
      jobId,
      startMs: since(num(rv.startedAt) ?? started),
      finishMs: since(finished),
      roundTripMs: Math.round((performance.now() - began) * 1000) / 1000,
      worker: rv.worker ?? null,
    };
  }
  let removed = false;
  try {
    const state = await job.getState?.();
    if (state === 'waiting' || state === 'wait' || state === 'prioritized' || state === 'paused') {
      await job.remove?.();
      removed = true;
    }
  } catch {
    // taken meanwhile, or the queue is gone: the job stays
  }
  return { ok: false, message: `no worker took the job in ${timeoutMs} ms`, queue: queue.name, jobId, removed };
}

export const queueKind: ResourceKind<QueueSeen> = {
  system: 'bullmq',
  kind: 'queue',
  max: 100,
  target: (queue) => (typeof queue.name === 'string' ? queue.name : ''),
  listed: (queue) => !queue.closing,
  async probe(queue) {
    const [counts, workers] = await Promise.all([queue.getJobCounts('waiting', 'active'), queue.getWorkers()]);
    const n = Array.isArray(workers) ? workers.length : 0;
    const line = `waiting ${counts.waiting ?? 0}, active ${counts.active ?? 0}, ${n} worker${n === 1 ? '' : 's'} connected`;
    if (n === 0) throw new Error(`${line}: no worker would take its jobs`);
    return line;
  },
  ping,
};

export function announceQueue(queue: object): void {
  if (channels.instance.hasSubscribers)
    channels.instance.publish({ of: queueKind, instance: queue } satisfies InstanceEvent);
}
