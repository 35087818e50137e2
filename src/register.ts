/**
 * What `node -r hatch-agent` (and `--import hatch-agent`) runs: read the configuration, start the
 * sinks, hook the patches. Once per process, however many times or copies it is loaded; a failure
 * here logs one line and leaves the app running without the agent.
 */
import { loadConfig, setActiveConfig, type Config } from './config';
import { log, setLogLevel } from './log';
import { StatsdSink } from './sinks/statsd/sink';
import { installHooks, disabled, outcomes, type PatchOutcome } from './registry';
import { ALL_PATCHES, LOG_PATCHES } from '../patches/index';
import { FlightRecorder } from './sinks/flight-recorder';
import { RuntimeMetrics } from './runtime-metrics';
import { undiciChannels } from '../patches/undici';
import { configurePropagation } from './propagation';
import { RecentRequests } from './sinks/recent';
import { rememberInstances } from './instances';
import { setPreHandler, type PreHandler } from './pre-handler';

export interface Agent {
  readonly config: Config;
  readonly patches: PatchOutcome[];
  readonly statsd: StatsdSink | undefined;
  readonly flightRecorder: FlightRecorder | undefined;
  /** The requests hatch's store; only with the hatches on. */
  readonly recent: RecentRequests | undefined;
  /** Unhooks and flushes; patches already applied stay (they fall through without subscribers). */
  stop(): void;
}

const KEY = Symbol.for('hatch-agent.agent');
type Holder = { [KEY]?: Agent | null };

export function start(): Agent | null {
  const holder = globalThis as Holder;
  if (holder[KEY] !== undefined) return holder[KEY];
  // Node 20 also runs `-r` preloads in the module-hooks thread that `--import hatch-agent` starts
  // (a worker with no parentPort, unlike the app's own workers): no agent there. Loading
  // node:worker_threads to ask costs 1.5 ms, so it is asked only inside a worker, which Node marks
  // by replacing process.chdir with a function flagged `disabled` (Node 20 to 24).
  if ((process.chdir as { disabled?: boolean }).disabled === true) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const threads = require('node:worker_threads') as typeof import('node:worker_threads');
    if (!threads.isMainThread && threads.parentPort === null) return (holder[KEY] = null);
  }
  holder[KEY] = null; // claims the slot before anything can fail or recurse
  try {
    const { config, problems } = loadConfig();
    setActiveConfig(config);
    setLogLevel(config.log);
    for (const p of problems) log.warn(p);
    let statsd: StatsdSink | undefined;
    if (config.statsd) {
      statsd = new StatsdSink(config);
      statsd.start();
    }
    // The ring is read only when the process ends and writes it to HATCH_FLIGHT_RECORDER: without a
    // file nothing could ever read it, and keeping every event alive for a while is not free (the
    // young generation copies them, and the ring's stores pay the write barrier).
    let flightRecorder: FlightRecorder | undefined;
    if (config.flightRecorderFile !== undefined && config.flightRecorderSize > 0) {
      flightRecorder = new FlightRecorder(config.flightRecorderSize, config.flightRecorderFile);
      flightRecorder.start();
    }
    // Sampled only for a sink that sends them.
    let runtime: RuntimeMetrics | undefined;
    let runtimeStart: NodeJS.Timeout | undefined;
    if (statsd && config.runtimeMetricsMs > 0) {
      runtime = new RuntimeMetrics(config.runtimeMetricsMs);
      // Started on the first turn of the event loop (perf_hooks is a millisecond to load): a script
      // that ends at once never pays for it, and the first sample is HATCH_RUNTIME_METRICS_MS away.
      const r = runtime;
      runtimeStart = setTimeout(() => r.start(), 0);
      runtimeStart.unref();
    }
    // The hatches (HATCH_TOKEN): their request store, the registry of the instances patches announce,
    // their handler.
    let recent: RecentRequests | undefined;
    if (config.hatchToken !== undefined) {
      recent = new RecentRequests(config.hatchRecentRequests, config.hatchSlowRequests);
      recent.start();
      rememberInstances(true);
      // The hatches' code (pages, checks, node:crypto) is loaded by the first request under the
      // prefix, not at start-up: most processes never serve one.
      let hatches: PreHandler | undefined;
      const deps = { config, statsd: statsd?.transport, recent, patches: outcomes };
      setPreHandler({
        prefix: config.hatchPrefix,
        handle(req, res) {
          // eslint-disable-next-line @typescript-eslint/no-require-imports
          hatches ??= (require('./hatches/index') as typeof import('./hatches/index')).createHatches(deps);
          return hatches.handle(req, res);
        },
      });
      log.debug(`hatches on under ${config.hatchPrefix}`);
    }
    configurePropagation(config);
    const patches = config.logInjection ? ALL_PATCHES : ALL_PATCHES.filter((p) => !LOG_PATCHES.includes(p));
    const hooks = installHooks(patches, config, undiciChannels.names);
    // fetch and undici publish on diagnostics channels: subscribing costs nothing until they run.
    const undici = !disabled(config, undiciChannels.names);
    if (undici) undiciChannels.subscribe();
    const agent: Agent = {
      config,
      patches: outcomes,
      statsd,
      flightRecorder,
      recent,
      stop() {
        setPreHandler(undefined);
        rememberInstances(false);
        recent?.stop();
        hooks.unhook();
        if (undici) undiciChannels.unsubscribe();
        clearTimeout(runtimeStart);
        runtime?.stop();
        flightRecorder?.stop();
        statsd?.stop();
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

export function agent(): Agent | null {
  return (globalThis as Holder)[KEY] ?? null;
}
