/**
 * What `node -r hatch-agent` (and `--import hatch-agent`) runs: read the configuration, start the
 * sinks, enable the patches and subscribers (src/registry.ts). Once per process, however many times
 * or copies it is loaded; a failure here logs one line and leaves the app running without the agent.
 *
 * `stop()` undoes all of it: patches unpatched, subscribers unsubscribed, sinks flushed and stopped,
 * the pre-handler unplugged. `start()` after a stop does it again with the same configuration
 * (read once, its problems told once). The agent lives in a global slot, so every copy of the
 * package loaded in the process finds the same agent and stops or starts that one.
 *
 * Names: "hatch" is the product (its channels `hatch:*`, its settings `HATCH_*`); "the hatches" are
 * its token-protected maintenance URLs under HATCH_PREFIX (src/hatches/).
 */
import { loadConfig, setActiveConfig, type Config } from './config';
import { log, setLogLevel } from './log';
import { StatsdSink } from './sinks/statsd/sink';
import { enable, outcomes, type PatchOutcome } from './registry';
import { definitions } from '../patches/index';
import type { FlightRecorder } from './sinks/flight-recorder';
import type { RuntimeMetrics } from './runtime-metrics';
import type { RecentRequests } from './sinks/recent';
import { setPreHandler, setResponseWatcher, DEBUG_COOKIE, type PreHandler } from './pre-handler';
import { startRun } from './run';
import type * as Checkin from './checkin';
import { signalListenersNow, adoptSignalListeners } from './ending';

export interface Agent {
  readonly config: Config;
  /** The outcome of every patch and subscriber of the current run (empty while stopped). */
  readonly patches: PatchOutcome[];
  /** The sinks of the current run; undefined while stopped. */
  readonly statsd: StatsdSink | undefined;
  readonly flightRecorder: FlightRecorder | undefined;
  /** The requests hatch's store; only with the hatches on. */
  readonly recent: RecentRequests | undefined;
  readonly running: boolean;
  /** Undoes the start exactly: unpatches, unsubscribes, flushes and stops the sinks. Never throws. */
  stop(): void;
  /** After a stop: starts again, with the same configuration; false when that failed. Never throws. */
  start(): boolean;
}

interface Run {
  statsd: StatsdSink | undefined;
  flightRecorder: FlightRecorder | undefined;
  recent: RecentRequests | undefined;
  stop(): void;
}

const KEY = Symbol.for('hatch-agent.agent');
type Holder = { [KEY]?: Agent | null };

/** The sinks, the hatches and the instrumentation, started; a failure halfway undoes what started. */
function run(config: Config): Run {
  // What stop undoes, newest first.
  const undo: Array<() => void> = [];
  const stop = () => {
    for (const u of undo.reverse()) {
      try {
        u();
      } catch (err) {
        log.warnOnce('stop', `stopping failed in part (${(err as Error).message})`);
      }
    }
    undo.length = 0;
  };
  try {
    let statsd: StatsdSink | undefined;
    if (config.statsd) {
      statsd = new StatsdSink(config);
      statsd.start();
      const s = statsd;
      undo.push(() => s.stop());
    }
    // The ring is read only when the process ends: delivered to HATCH_FLIGHT_RECORDER, and its last
    // lines are the body of the end check-in (HATCH_CHECKIN_URL). With neither, nothing could ever
    // read it, and keeping every event alive for a while is not free (the young generation copies
    // them, and the ring's stores pay the write barrier).
    // One record per process: a worker thread's own would overwrite the main thread's file, or
    // upload once more (its stdout and stderr reach the main thread's streams, and are kept there).
    let flightRecorder: FlightRecorder | undefined;
    if (
      (config.flightRecorder !== undefined || config.checkinUrl !== undefined) &&
      config.flightRecorderSize > 0 &&
      !inWorkerThread()
    ) {
      // Loaded only when it is on (as the hatches' store below): files a start-up does not use cost it.
      const { FlightRecorder: Recorder } =
        require('./sinks/flight-recorder') as typeof import('./sinks/flight-recorder');
      flightRecorder = new Recorder({
        size: config.flightRecorderSize,
        bytes: config.flightRecorderBytes,
        target: config.flightRecorder,
        method: config.flightRecorderMethod,
        timeoutMs: config.flightRecorderTimeoutMs,
      });
      // Its signal listeners are the agent's, not the app's: src/ending.ts must not leave the
      // decision to them (each would wait for the other, and the process would outlive its signal).
      const before = signalListenersNow();
      flightRecorder.start();
      adoptSignalListeners(before);
      // The app's stdout and stderr are wrapped only for a recorder that keeps them.
      const capture = require('./log-capture') as typeof import('./log-capture');
      capture.startTextCapture();
      const f = flightRecorder;
      undo.push(() => {
        capture.stopTextCapture();
        f.stop();
      });
    }
    if (config.checkinUrl !== undefined) {
      const f = flightRecorder;
      // Loaded only with a check-in URL: most processes never send one.
      const { Checkins } = require('./checkin') as typeof Checkin;
      const checkins = new Checkins(config, () => (f !== undefined ? f.lines() : []));
      checkins.start();
      undo.push(() => checkins.stop());
    }
    // Sampled only for a sink that sends them.
    let runtimeStart: NodeJS.Timeout | undefined;
    if (statsd && config.runtimeMetricsMs > 0) {
      // Loaded and started on the first turn of the event loop (perf_hooks is a millisecond to
      // load): a script that ends at once never pays for it, and the first sample is
      // HATCH_RUNTIME_METRICS_MS away.
      let r: RuntimeMetrics | undefined;
      const everyMs = config.runtimeMetricsMs;
      runtimeStart = setTimeout(() => {
        try {
          const { RuntimeMetrics: Metrics } = require('./runtime-metrics') as typeof import('./runtime-metrics');
          r = new Metrics(everyMs);
          r.start();
        } catch (err) {
          log.warnOnce('runtime-start', `runtime metrics: not started (${(err as Error).message})`);
        }
      }, 0);
      runtimeStart.unref();
      const t = runtimeStart;
      undo.push(() => {
        clearTimeout(t);
        r?.stop();
      });
    }
    // The hatches (HATCH_TOKEN): their request store, the registry of the instances patches announce,
    // their handler.
    let recent: RecentRequests | undefined;
    let rememberInstances: ((on: boolean) => void) | undefined;
    if (config.hatchToken !== undefined) {
      rememberInstances = (require('./instances') as typeof import('./instances')).rememberInstances;
      const { RecentRequests: Store } = require('./sinks/recent') as typeof import('./sinks/recent');
      recent = new Store(config.hatchRecentRequests, config.hatchSlowRequests, config.hatchErrorRequests);
      recent.start();
      rememberInstances(true);
      // The hatches' code (pages, checks, node:crypto) is loaded by the first request under the
      // prefix, not at start-up: most processes never serve one.
      let hatches: PreHandler | undefined;
      const deps = { config, statsd: statsd?.transport, recent, patches: outcomes };
      setPreHandler({
        prefix: config.hatchPrefix,
        handle(req, res) {
          hatches ??= (require('./hatches/index') as typeof import('./hatches/index')).createHatches(deps);
          return hatches.handle(req, res);
        },
      });
      log.debug(`hatches on under ${config.hatchPrefix}`);
      if (config.hatchDebugErrors) {
        // Only a request that may carry the token pays anything: an Authorization header as long as
        // `Bearer <token>` (an app's own bearer tokens of other lengths skip the digest), or the debug
        // cookie. The debug pages' code loads at the first such request.
        let debug: ReturnType<typeof import('./hatches/debug').createDebugPages> | undefined;
        const min = 'Bearer '.length + config.hatchToken.length;
        const cookieAt = DEBUG_COOKIE + '=';
        setResponseWatcher((req, res, ctx) => {
          const h = req.headers;
          const a = h.authorization;
          const c = h.cookie;
          const hasCookie = typeof c === 'string' && c.includes(cookieAt);
          if (!hasCookie && !(typeof a === 'string' && a.length >= min && a.length <= min + 8)) return undefined;
          debug ??= (require('./hatches/debug') as typeof import('./hatches/debug')).createDebugPages(deps);
          return debug.watch(req, res, ctx, hasCookie);
        });
      }
    }
    if (recent !== undefined) {
      const r = recent;
      const remember = rememberInstances;
      undo.push(() => {
        setPreHandler(undefined);
        setResponseWatcher(undefined);
        remember?.(false);
        r.stop();
      });
    }
    const instrumentation = enable(definitions(config.logInjection), config);
    undo.push(() => instrumentation.disable());
    return { statsd, flightRecorder, recent, stop };
  } catch (err) {
    stop();
    throw err;
  }
}

/**
 * Whether this is one of the app's worker threads. node:worker_threads (1.5 ms to load) is asked
 * only where Node marks a worker by a disabled process.chdir (Node 20 to 24; see boot).
 */
function inWorkerThread(): boolean {
  if ((process.chdir as { disabled?: boolean }).disabled !== true) return false;
  return !(require('node:worker_threads') as typeof import('node:worker_threads')).isMainThread;
}

/** What loading the package runs: starts the agent, once per process (a stop does not undo "once"). */
export function boot(): Agent | null {
  const holder = globalThis as Holder;
  if (holder[KEY] !== undefined) return holder[KEY];
  // Node 20 also runs `-r` preloads in the module-hooks thread that `--import hatch-agent` starts
  // (a worker with no parentPort, unlike the app's own workers): no agent there. Loading
  // node:worker_threads to ask costs 1.5 ms, so it is asked only inside a worker, which Node marks
  // by replacing process.chdir with a function flagged `disabled` (Node 20 to 24).
  if ((process.chdir as { disabled?: boolean }).disabled === true) {
    const threads = require('node:worker_threads') as typeof import('node:worker_threads');
    if (!threads.isMainThread && threads.parentPort === null) return (holder[KEY] = null);
  }
  holder[KEY] = null; // claims the slot before anything can fail or recurse
  try {
    const { config, problems } = loadConfig();
    setActiveConfig(config);
    setLogLevel(config.log);
    for (const p of problems) log.warn(p);
    startRun(config);
    let current: Run | undefined = run(config);
    const agent: Agent = {
      config,
      patches: outcomes,
      get statsd() {
        return current?.statsd;
      },
      get flightRecorder() {
        return current?.flightRecorder;
      },
      get recent() {
        return current?.recent;
      },
      get running() {
        return current !== undefined;
      },
      stop() {
        const r = current;
        current = undefined;
        if (r === undefined) return;
        r.stop();
        log.debug('stopped');
      },
      start() {
        if (current !== undefined) return true;
        try {
          current = run(config);
          log.debug('started again');
          return true;
        } catch (err) {
          log.warn(`could not start again (${(err as Error).message}); the app runs without the agent`);
          return false;
        }
      },
    };
    holder[KEY] = agent;
    log.debug(`started (node ${process.version}, pid ${process.pid})`);
    return agent;
  } catch (err) {
    log.warn(`could not start (${(err as Error).message}); the app runs without the agent`);
    return null;
  }
}

/** Stops the process's agent (whichever copy of the package started it); see Agent.stop. */
export function stopAgent(): void {
  (globalThis as Holder)[KEY]?.stop();
}

/** Starts the process's agent again after stop(); true when it runs. */
export function startAgent(): boolean {
  const agent = (globalThis as Holder)[KEY];
  return agent != null && agent.start();
}
