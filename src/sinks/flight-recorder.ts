/**
 * Flight recorder: a bounded ring of the most recent events (requests, queries, outgoing calls,
 * renders, agent errors, and the process's own end), each with its request ID, written to
 * HATCH_FLIGHT_RECORDER as JSON lines when the process ends.
 *
 * On the request path an event costs two array stores (its type and the event object the patch
 * published); nothing is formatted until the file is written.
 *
 * The process's end, without changing how it ends:
 * - normal exit and process.exit(): 'exit';
 * - uncaught exception and unhandled rejection: 'uncaughtExceptionMonitor' (observes only; Node's own
 *   crash output and exit code stay), which also records the error with the ID of the request that
 *   threw; 'exit' then writes again with the exit code;
 * - SIGTERM and SIGINT: a listener writes; when it is the only listener it removes itself and raises
 *   the signal again, so the process dies of it as it would have; when the app has its own listener
 *   (added before or after ours) the app decides what happens next.
 * The write is synchronous (a temporary file renamed over the target, so a reader never sees half a
 * file) and never throws into the app.
 * Limitations: SIGKILL, a native crash or an out-of-memory abort leave no file; other signals
 * (SIGHUP, SIGUSR2, …) are not watched.
 */
import * as fs from 'node:fs';
import { channels, Subscriptions } from '../bus';
import { storage } from '../context';
import { log } from '../log';
import { getRunId } from '../run';

type Channel = { subscribe(fn: (m: unknown) => void): void; unsubscribe(fn: (m: unknown) => void): void };

const SIGNALS = ['SIGTERM', 'SIGINT'] as const;

export class FlightRecorder {
  private readonly types: string[];
  private readonly events: unknown[];
  private next = 0;
  private count = 0;
  private readonly subscriptions = new Subscriptions('flight recorder');
  private readonly signalHandlers = new Map<string, () => void>();

  constructor(
    readonly size: number,
    readonly file: string | undefined,
  ) {
    this.types = new Array(size);
    this.events = new Array(size);
  }

  start(): void {
    const watch: Array<[string, Channel]> = [
      ['http.server', channels.httpServer],
      ['db.query', channels.dbQuery],
      ['http.client', channels.httpClient],
      ['render', channels.render],
      ['error', channels.error],
    ];
    for (const [type, ch] of watch) this.subscriptions.on(ch, (m) => this.record(type, m));
    if (this.file === undefined) return;
    process.on('uncaughtExceptionMonitor', this.onCrash);
    process.on('exit', this.onExit);
    for (const sig of SIGNALS) {
      const fn = () => this.onSignal(sig, fn);
      this.signalHandlers.set(sig, fn);
      process.on(sig, fn);
    }
  }

  stop(): void {
    this.subscriptions.clear();
    process.removeListener('uncaughtExceptionMonitor', this.onCrash);
    process.removeListener('exit', this.onExit);
    for (const [sig, fn] of this.signalHandlers) process.removeListener(sig, fn);
    this.signalHandlers.clear();
  }

  /** Keeps one event; the oldest goes when the ring is full. */
  record(type: string, event: unknown): void {
    try {
      this.types[this.next] = type;
      this.events[this.next] = event;
      this.next = (this.next + 1) % this.size;
      if (this.count < this.size) this.count++;
    } catch (err) {
      // a subscriber that throws would surface in the app as an uncaught exception
      log.warnOnce('flight-recorder-record', `flight recorder failed to record an event: ${(err as Error).message}`);
    }
  }

  /** The ring as JSON lines, oldest first. */
  lines(): string[] {
    const out: string[] = [];
    const first = (this.next - this.count + this.size) % this.size;
    for (let i = 0; i < this.count; i++) {
      const at = (first + i) % this.size;
      try {
        out.push(format(this.types[at]!, this.events[at]));
      } catch {
        // an event that cannot be formatted is left out, the rest still written
      }
    }
    return out;
  }

  /** Writes the ring to the file, synchronously and completely. Never throws. */
  write(): void {
    if (this.file === undefined) return;
    const tmp = `${this.file}.${process.pid}.tmp`;
    try {
      const lines = this.lines();
      fs.writeFileSync(tmp, lines.length > 0 ? lines.join('\n') + '\n' : '');
      fs.renameSync(tmp, this.file);
    } catch (err) {
      log.warnOnce('flight-recorder-write', `flight recorder: cannot write ${this.file} (${(err as Error).message})`);
      try {
        fs.unlinkSync(tmp);
      } catch {
        // nothing was written
      }
    }
  }

  private readonly onCrash = (err: unknown, origin: string) => {
    try {
      this.record('process', {
        requestId: storage.getStore()?.id,
        event: origin === 'unhandledRejection' ? 'unhandledRejection' : 'uncaughtException',
        error: describe(err),
        start: performance.now(),
      });
    } catch {
      // recording must not get in the way of the crash
    }
    this.write();
  };

  private readonly onExit = (code: number) => {
    this.record('process', { requestId: undefined, event: 'exit', code, start: performance.now() });
    this.write();
  };

  private onSignal(sig: string, self: () => void): void {
    this.record('process', { requestId: undefined, event: 'signal', signal: sig, start: performance.now() });
    this.write();
    // Alone: the app never asked to handle this signal, so it must die of it as it would have.
    if (process.listenerCount(sig) === 1) {
      process.removeListener('exit', this.onExit); // killed by a signal, there is no exit to record
      process.removeListener(sig, self);
      this.signalHandlers.delete(sig);
      process.kill(process.pid, sig);
    }
  }
}

function describe(err: unknown): { name: string; message: string; stack?: string } {
  if (err instanceof Error) return { name: err.name, message: err.message, stack: err.stack };
  return { name: typeof err, message: String(err) };
}

/**
 * One JSON line: type, wall-clock time, request ID first (outside any request: null, and the run's
 * ID, src/run.ts), then the event's own fields.
 */
function format(type: string, event: unknown): string {
  const e = (event ?? {}) as Record<string, unknown>;
  const start = typeof e.start === 'number' ? e.start : undefined;
  const line: Record<string, unknown> = {
    type,
    time: start !== undefined ? new Date(performance.timeOrigin + start).toISOString() : undefined,
    requestId: e.requestId ?? null,
  };
  if (line.requestId === null) line.runId = getRunId();
  for (const k of Object.keys(e)) if (k !== 'start' && k !== 'requestId') line[k] = e[k];
  return JSON.stringify(line);
}
