/**
 * The event bus between patches and sinks: node:diagnostics_channel. Patches publish only when
 * `hasSubscribers`; sinks subscribe. A test (or another tool) can subscribe by channel name.
 */
import { channel } from 'node:diagnostics_channel';
import { log } from './log';
import type { ResourceKind } from './instances';

export interface HttpServerEvent {
  requestId: string;
  method: string;
  /** Route template or `unmatched`; never a raw URL. */
  route: string;
  /** The URL's path, without its query string, at most 200 characters (for the requests hatch, not for metrics). */
  path?: string;
  statusCode: number;
  /** The client went away before the response finished. */
  aborted: boolean;
  /** performance.now() when the request began */
  start: number;
  /** ms */
  duration: number;
  /**
   * The error the request ended in (src/errors.ts), present only when the response's status is 500 or
   * above: the first error a framework patch captured, or, when none was, a `status` record.
   */
  error?: ErrorDetail;
}

/** An error as the agent records it: plain strings only, so the error object itself is never kept. */
export interface ErrorDetail {
  /** `handler`: an error the app's code threw or passed on; `status`: the app answered 5xx and no error was seen. */
  kind: 'handler' | 'status';
  /** The error's class (`TypeError`), or the type of a thrown non-Error (`string`, `null`, `object`). */
  name: string;
  /** Cut to MAX_MESSAGE characters. */
  message: string;
  /** The first MAX_FRAMES `at …` lines, trimmed, paths under the app's directory made relative. */
  stack: string[];
  /** The response's status. */
  status: number;
}

export interface DbQueryEvent {
  requestId: string | undefined;
  system: 'pg' | 'mysql' | 'redis';
  /**
   * The SQL text as sent (with its comment), or '' when it could not be read; for Redis the command's
   * name and first key only, never its values (patches/redis/command.ts).
   */
  text: string;
  /** The statement's first keyword (SELECT, INSERT, …) or OTHER (src/sql-comment.ts sqlOperation). */
  operation: string;
  error: boolean;
  /** performance.now() when the query was issued */
  start: number;
  /** ms */
  duration: number;
  /** Redis: the commands in the call (a pipeline's or a MULTI's count; 1 for one command). */
  commands?: number;
}

export interface HttpClientEvent {
  requestId: string | undefined;
  method: string;
  /** Host name only, no port. */
  host: string;
  /** The path called, without its query string, cut to 200 characters (for the requests hatch, not for metrics). */
  path?: string;
  /** The response status, or `error` when no response came (refused, DNS, timeout, abort). */
  statusCode: number | 'error';
  /** performance.now() when the call began */
  start: number;
  /** ms */
  duration: number;
}

export interface RenderEvent {
  requestId: string | undefined;
  /** ejs, pug, handlebars, nunjucks, or the Express view engine's extension */
  engine: string;
  /** Template name relative to the views folder, no extension, sanitized; `inline` for a string template. */
  template: string;
  error: boolean;
  /** performance.now() when the render began */
  start: number;
  /** ms */
  duration: number;
}

/** One sample of the process's own health (src/runtime-metrics.ts), every HATCH_RUNTIME_METRICS_MS. */
export interface RuntimeEvent {
  /** Event-loop delay over the interval, ms. */
  eventLoopDelay: { p50: number; p99: number; max: number };
  /** bytes */
  heapUsed: number;
  /** bytes */
  rss: number;
  /** Each garbage collection in the interval: its kind (major, minor, incremental, weakcb) and pause, ms. */
  gc: Array<{ kind: string; duration: number }>;
  /** Handles and requests keeping the event loop alive (process.getActiveResourcesInfo()). */
  activeHandles: number;
}

export interface ErrorEvent {
  kind: string;
  /** The request the error happened in, when there was one. */
  requestId?: string;
  /** What went wrong, for the request's record (never used in metric names). */
  message?: string;
}

/**
 * An instance the app created (a pg Pool at its first connect, a pg Client at its connect), announced
 * by its library's patch for src/instances.ts, with what the patch knows about its kind.
 */
export interface InstanceEvent {
  of: ResourceKind;
  instance: object;
}

/**
 * One of the app's own log lines (src/log-capture.ts, patches/pino.ts, patches/winston.ts), published
 * only while someone subscribes (the flight recorder). The same shape for every source, so the
 * publishers and the ring stay monomorphic.
 */
export interface LogEvent {
  /** Where the line was seen: written to process.stdout or process.stderr (console.* included), or a logger's record. */
  source: 'stdout' | 'stderr' | 'pino' | 'winston';
  /**
   * stdout/stderr: the text of one write, as written (part of a line, a line or several);
   * pino: the JSON line pino made of the record; winston: the record's info object (read when formatted).
   */
  data: string | object;
  /** pino, winston: the record's level name; undefined for text. */
  level: string | undefined;
  /** winston: the message as the app logged it, before formats change it; undefined otherwise. */
  message: unknown;
  /** The request (or run) the line was written in (src/log-capture.ts currentCorrelation). */
  requestId: string | undefined;
  /** performance.now() when the line was written */
  start: number;
}

/**
 * One run of a job (src/jobs.ts): a BullMQ job's attempt processed by a Worker, or one tick of a
 * node-cron or cron schedule. Published when it ends, from the job's own context.
 */
export interface JobEvent {
  /** The job's correlation ID (allowlisted): what its queries, logs and calls carried. */
  requestId: string;
  /** `bullmq`, `node-cron`, `cron`. */
  system: string;
  /** BullMQ: the queue's name; a schedule: ''. Bounded (src/jobs.ts), never used raw in metric names. */
  queue: string;
  /** BullMQ: the job's name; a schedule: its name, or its expression made metric-safe. Bounded. */
  name: string;
  /** BullMQ: the job's ID; a schedule: ''. */
  jobId: string;
  /** BullMQ: 1 for the first attempt, 2 for the first retry, …; a schedule: 1. */
  attempt: number;
  outcome: 'completed' | 'failed';
  /** ms from the job's enqueueing to its start (BullMQ), or undefined. */
  wait: number | undefined;
  /** performance.now() when the run began */
  start: number;
  /** ms */
  duration: number;
  /** The error a failed run ended in, described with its stack (status 500). */
  error?: ErrorDetail;
}

/**
 * A `withRequestId` scope began (src/context.ts): published only when its ID is not the enclosing
 * request's, and only when someone listens. Nothing tells when a scope ends (its function's promise
 * is the app's: a handler on it would change how an unhandled rejection is reported), so no record
 * of it is ever filed; the requests store hears this to keep nothing in flight for it.
 */
export interface ScopeEvent {
  /** The scope's ID (allowlisted). */
  requestId: string;
}

// Held here so the channel objects (weakly held by Node) live as long as the agent.
export const channels = {
  httpServer: channel('hatch:http.server'),
  dbQuery: channel('hatch:db.query'),
  httpClient: channel('hatch:http.client'),
  render: channel('hatch:render'),
  error: channel('hatch:error'),
  runtime: channel('hatch:runtime'),
  instance: channel('hatch:instance'),
  log: channel('hatch:log'),
  job: channel('hatch:job'),
  scope: channel('hatch:scope'),
};

type Channel = { subscribe(fn: (m: unknown) => void): void; unsubscribe(fn: (m: unknown) => void): void };

/**
 * A sink's subscriptions. Each subscriber is guarded: an exception in it would reach the publisher,
 * which is app code, so it is logged once under `label` and the event is dropped.
 */
export class Subscriptions {
  private readonly list: Array<[Channel, (m: unknown) => void]> = [];
  constructor(private readonly label: string) {}

  on(ch: Channel, fn: (m: unknown) => void): void {
    const guarded = (m: unknown) => {
      try {
        fn(m);
      } catch (err) {
        log.warnOnce(`${this.label}-record`, `${this.label} failed to record an event: ${(err as Error).message}`);
      }
    };
    ch.subscribe(guarded);
    this.list.push([ch, guarded]);
  }

  clear(): void {
    for (const [ch, fn] of this.list) ch.unsubscribe(fn);
    this.list.length = 0;
  }
}
