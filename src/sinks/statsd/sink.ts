/**
 * StatsD sink: records the bus's events into series (./series.ts) and, every HATCH_STATSD_FLUSH_MS
 * and at the process's exit, packs them (./packer.ts) and hands the packets to the transport
 * (./transport.ts).
 *
 * The request path never touches the StatsD client (one hot-shots call per request costs about a
 * third of a hello-world server's throughput): an event only pushes a number onto its series. The
 * flush timer (unref'd) and the exit format every value, so the server still sees every value and
 * its percentiles stay true.
 * At the process's end (src/ending.ts: every ending, a death by SIGTERM or SIGINT included) it
 * records `job.run` (ms from the process's start; job, outcome ok|error|signal) and flushes at
 * once: with an IP address, hot-shots binds and sends synchronously (its own lookup answers at
 * once), so the packet has left before the process is gone. A server that never ends sends none.
 * Jobs (`hatch:job`, src/jobs.ts): a BullMQ job's attempt is `job.process` (queue, job, outcome),
 * its first attempt's `job.wait`, an attempt after the first one `job.retries`; a node-cron or cron
 * tick is a `job.run` of the schedule's name.
 * Limitations: values recorded while no address is known (the name does not resolve yet) are
 * dropped at their flush.
 */
import type { Config } from '../../config';
import {
  channels,
  Subscriptions,
  type DbQueryEvent,
  type ErrorEvent,
  type HttpClientEvent,
  type HttpServerEvent,
  type JobEvent,
  type RenderEvent,
  type RuntimeEvent,
} from '../../bus';
import { log } from '../../log';
import { onEnding, offEnding, type Ending } from '../../ending';
import { currentRun } from '../../run';
import { Metric, MAX_VALUES, type Series } from './series';
import type * as Packer from './packer';
import { StatsdTransport } from './transport';

let packer: typeof Packer | undefined;

export class StatsdSink {
  readonly httpServer: Metric;
  readonly dbQuery: Metric;
  readonly httpClient: Metric;
  readonly render: Metric;
  readonly errors: Metric;
  /** The errors requests end in: the same metric, with the request's route and status. */
  readonly requestErrors: Metric;
  /** runtime.* gauges (src/runtime-metrics.ts); one value per series, the latest. */
  readonly runtime: Record<string, Metric>;
  readonly gcPause: Metric;
  /** The process's run, at its end: by job name and outcome, never by run ID (names stay bounded). */
  readonly jobRun: Metric;
  /** BullMQ jobs (src/jobs.ts): each attempt's processing, the first attempt's wait, the retries. */
  readonly jobProcess: Metric;
  readonly jobWait: Metric;
  readonly jobRetries: Metric;
  /** The way to StatsD, shared with the hatches (their probe and test line). */
  readonly transport: StatsdTransport;
  private readonly metrics: Metric[];
  private timer: NodeJS.Timeout | undefined;
  private dropped = 0;
  private readonly subscriptions = new Subscriptions('statsd sink');

  constructor(private readonly config: Config) {
    this.transport = new StatsdTransport(config);
    const { statsdPrefix: p, statsdTags: mode } = config;
    this.httpServer = new Metric('http.server', 'ms', ['method', 'route', 'status_code'], p, mode);
    this.dbQuery = new Metric('db.query', 'ms', ['system', 'operation', 'outcome'], p, mode);
    this.httpClient = new Metric('http.client', 'ms', ['method', 'host', 'status_code'], p, mode);
    this.render = new Metric('render', 'ms', ['engine', 'template', 'outcome'], p, mode);
    this.errors = new Metric('errors', 'c', ['kind'], p, mode);
    this.requestErrors = new Metric('errors', 'c', ['kind', 'route', 'status_code'], p, mode);
    const gauge = (name: string) => new Metric(`runtime.${name}`, 'g', [], p, mode);
    this.runtime = {
      p50: gauge('event_loop.delay.p50'),
      p99: gauge('event_loop.delay.p99'),
      max: gauge('event_loop.delay.max'),
      heapUsed: gauge('heap.used'),
      rss: gauge('rss'),
      activeHandles: gauge('active_handles'),
    };
    this.gcPause = new Metric('runtime.gc.pause', 'ms', ['kind'], p, mode);
    this.jobRun = new Metric('job.run', 'ms', ['job', 'outcome'], p, mode);
    this.jobProcess = new Metric('job.process', 'ms', ['queue', 'job', 'outcome'], p, mode);
    this.jobWait = new Metric('job.wait', 'ms', ['queue', 'job'], p, mode);
    this.jobRetries = new Metric('job.retries', 'c', ['queue', 'job'], p, mode);
    this.metrics = [
      this.httpServer,
      this.dbQuery,
      this.httpClient,
      this.render,
      this.errors,
      this.requestErrors,
      ...Object.values(this.runtime),
      this.gcPause,
      this.jobRun,
      this.jobProcess,
      this.jobWait,
      this.jobRetries,
    ];
  }

  start(): void {
    this.subscriptions.on(channels.httpServer, (m) => {
      const e = m as HttpServerEvent;
      this.time(this.httpServer.series(e.method, e.route, e.aborted ? 'aborted' : e.statusCode), e.duration);
      const err = e.error;
      if (err !== undefined) this.requestErrors.series(err.kind, e.route, e.statusCode).sum++;
    });
    this.subscriptions.on(channels.dbQuery, (m) => {
      const e = m as DbQueryEvent;
      this.time(this.dbQuery.series(e.system, e.operation, e.error ? 'error' : 'ok'), e.duration);
    });
    this.subscriptions.on(channels.httpClient, (m) => {
      const e = m as HttpClientEvent;
      this.time(this.httpClient.series(e.method, e.host, e.statusCode), e.duration);
    });
    this.subscriptions.on(channels.render, (m) => {
      const e = m as RenderEvent;
      this.time(this.render.series(e.engine, e.template, e.error ? 'error' : 'ok'), e.duration);
    });
    this.subscriptions.on(channels.error, (m) => {
      this.errors.series((m as ErrorEvent).kind).sum++;
    });
    this.subscriptions.on(channels.job, (m) => {
      const e = m as JobEvent;
      // A schedule's tick is a run of its job (`job.run`, as a script's); a queue's job is processed.
      if (e.system !== 'bullmq') return this.time(this.jobRun.series(e.name, e.outcome), e.duration);
      this.time(this.jobProcess.series(e.queue, e.name, e.outcome), e.duration);
      if (e.wait !== undefined) this.time(this.jobWait.series(e.queue, e.name), e.wait);
      if (e.attempt > 1) this.jobRetries.series(e.queue, e.name).sum++;
    });
    this.subscriptions.on(channels.runtime, (m) => {
      const e = m as RuntimeEvent;
      const r = this.runtime;
      for (const [metric, v] of [
        [r.p50, e.eventLoopDelay.p50],
        [r.p99, e.eventLoopDelay.p99],
        [r.max, e.eventLoopDelay.max],
        [r.heapUsed, e.heapUsed],
        [r.rss, e.rss],
        [r.activeHandles, e.activeHandles],
      ] as const) {
        const g = metric.series('');
        g.count = 0; // a gauge sends its latest value only
        g.add(v);
      }
      for (const g of e.gc) this.time(this.gcPause.series(g.kind), g.duration);
    });
    this.transport.start();
    this.timer = setInterval(() => this.flush(), this.config.statsdFlushMs);
    this.timer.unref();
    // A natural exit gets one last asynchronous flush; 'exit' (process.exit, the end of the loop)
    // still sends synchronously, because hot-shots' UDP socket is bound by then and the address is
    // an IP, so dgram sends at once without a lookup.
    process.on('beforeExit', this.onBeforeExit);
    process.on('exit', this.onExit);
    onEnding(this.onEnding);
  }

  stop(): void {
    this.subscriptions.clear();
    if (this.timer) clearInterval(this.timer);
    process.removeListener('beforeExit', this.onBeforeExit);
    process.removeListener('exit', this.onExit);
    offEnding(this.onEnding);
    this.flush();
  }

  private time(s: Series, ms: number): void {
    if (!s.add(ms)) this.dropped++;
  }

  private readonly onBeforeExit = () => {
    if (this.pending()) this.flush();
  };
  private readonly onExit = () => this.flush(true);
  private readonly onEnding = (e: Ending) => {
    this.jobRun.series(currentRun().job, e.outcome).add(e.duration);
    this.flush(true);
  };

  private pending(): boolean {
    return this.metrics.some((m) => m.all.some((s) => s.count > 0 || s.sum !== 0));
  }

  /**
   * Formats everything recorded so far and hands it to the transport. Never throws. `last`: the
   * process is ending, so the packets must leave synchronously (the transport's exitSender).
   */
  flush(last = false): void {
    try {
      if (this.dropped > 0) {
        log.warnOnce(
          'statsd-dropped',
          `statsd: more than ${MAX_VALUES} values of one series in one flush interval; the excess is dropped`,
        );
        this.dropped = 0;
      }
      // The transport is asked at the first packet (an idle interval has none). Without an address
      // (not known yet, or the lookup failed) the values are dropped.
      let send: ((packet: Buffer) => void) | undefined | null = null;
      // Loaded at the first flush (a second after start, or at exit), not at start-up.
      const { drainTo } = (packer ??= require('./packer') as typeof Packer);
      drainTo(this.metrics, this.config.statsdTags, (packet) => {
        if (send === null) send = last ? this.transport.exitSender() : this.transport.sender();
        send?.(packet);
      });
    } catch (err) {
      log.warnOnce('statsd-flush', `statsd flush failed: ${(err as Error).message}`);
    }
  }
}
