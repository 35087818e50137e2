/**
 * Runtime metrics: every HATCH_RUNTIME_METRICS_MS a sample of the process's health is published on
 * `hatch:runtime` (the StatsD sink sends it as `runtime.*` gauges and GC timings):
 * event-loop delay p50/p99/max over the interval (perf_hooks.monitorEventLoopDelay), heap used, RSS,
 * each GC pause (a PerformanceObserver on 'gc') and the number of active handles and requests
 * (process.getActiveResourcesInfo()).
 *
 * Nothing here keeps the process alive: the timer is unref'd, the delay histogram and the GC
 * observer hold no handle the loop waits for. A failing sample logs once and the next one is tried.
 * Limitation: the delay histogram's resolution is 20 ms by default in Node; we ask for 10 ms, so
 * delays below that read as about 10 ms.
 */
import type { IntervalHistogram, PerformanceObserver } from 'node:perf_hooks';
import { channels, type RuntimeEvent } from './bus';
import { log } from './log';

// perf_hooks.constants.NODE_PERFORMANCE_GC_*: the module itself is loaded in start(), not with the agent.
const GC_KINDS: Record<number, string> = { 1: 'minor', 4: 'major', 8: 'incremental', 16: 'weakcb' };
const MAX_GC_PER_SAMPLE = 1000; // a pathological GC storm must not grow this array without bound

export class RuntimeMetrics {
  private timer: NodeJS.Timeout | undefined;
  private histogram: IntervalHistogram | undefined;
  private observer: PerformanceObserver | undefined;
  private gc: Array<{ kind: string; duration: number }> = [];

  constructor(private readonly everyMs: number) {}

  start(): void {
    // node:perf_hooks is loaded when runtime metrics start, not at every agent start-up.
    const { monitorEventLoopDelay, PerformanceObserver } =
      require('node:perf_hooks') as typeof import('node:perf_hooks');
    try {
      this.histogram = monitorEventLoopDelay({ resolution: 10 });
      this.histogram.enable();
    } catch (err) {
      log.warnOnce('runtime-eld', `runtime metrics: no event-loop delay (${(err as Error).message})`);
    }
    try {
      this.observer = new PerformanceObserver((list) => {
        try {
          for (const entry of list.getEntries()) {
            if (this.gc.length >= MAX_GC_PER_SAMPLE) break;
            const kind = (entry as { detail?: { kind?: number } }).detail?.kind;
            this.gc.push({ kind: GC_KINDS[kind ?? 0] ?? 'other', duration: entry.duration });
          }
        } catch (err) {
          log.warnOnce('runtime-gc', `runtime metrics: reading a GC entry failed: ${(err as Error).message}`);
        }
      });
      this.observer.observe({ entryTypes: ['gc'] });
    } catch (err) {
      log.warnOnce('runtime-gc-observe', `runtime metrics: no GC pauses (${(err as Error).message})`);
    }
    this.timer = setInterval(() => this.sample(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.histogram?.disable();
    this.observer?.disconnect();
  }

  /** Publishes one sample and starts the next interval. Never throws. */
  sample(): void {
    try {
      if (!channels.runtime.hasSubscribers) return;
      const h = this.histogram;
      const ms = (ns: number) => (Number.isFinite(ns) ? ns / 1e6 : 0);
      const event: RuntimeEvent = {
        eventLoopDelay:
          h && h.count > 0
            ? { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max) }
            : { p50: 0, p99: 0, max: 0 },
        heapUsed: process.memoryUsage().heapUsed,
        rss: process.memoryUsage.rss(),
        gc: this.gc,
        activeHandles: process.getActiveResourcesInfo().length,
      };
      this.gc = [];
      h?.reset();
      channels.runtime.publish(event);
    } catch (err) {
      log.warnOnce('runtime-sample', `runtime metrics: a sample failed: ${(err as Error).message}`);
    }
  }
}
