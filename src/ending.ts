/**
 * The process's ending, observed in one place and published once, synchronously, to whoever asked
 * (`onEnding`): the StatsD sink's `job.run`, the check-ins' last ping. It never changes how the
 * process ends:
 * - normal end and process.exit(n): 'exit', with the exit code (outcome `ok` for 0, else `error`);
 * - uncaught exception, unhandled rejection: 'uncaughtExceptionMonitor' only notes the error (it
 *   observes, Node's own crash output and exit code stay); the 'exit' that follows publishes it,
 *   with the code Node chose. An app's own 'uncaughtException' handler keeps its say: if the process
 *   goes on, nothing has ended;
 * - SIGTERM and SIGINT: a listener. When the app has a listener of its own (before or after ours),
 *   the app decides, and the 'exit' it may come to is the ending. When only the agent listens, the
 *   ending is published (outcome `signal`), every agent listener of that signal is removed and the
 *   signal raised again, so the process dies of it as it would have. The raise waits for the end of
 *   the current emit (a tick), so the agent's other listeners of it (the flight recorder's, marked
 *   with adoptSignalListeners) still run.
 * Listeners are installed with the first `onEnding` and removed with the last `offEnding`; none in a
 * worker thread (its 'exit' is not the process's, and it gets no signals).
 * Limitations: SIGKILL, SIGHUP and other signals, a native crash or an out-of-memory abort are not
 * seen; an app's 'exit' listener that sets process.exitCode after ours ran is not seen either.
 */
import { log } from './log';

export type Outcome = 'ok' | 'error' | 'signal';

export interface Ending {
  outcome: Outcome;
  /** The exit code; undefined for a death by signal. */
  code: number | undefined;
  signal: 'SIGTERM' | 'SIGINT' | undefined;
  /** The uncaught exception or unhandled rejection the process ended in, if any. */
  crash: { origin: 'uncaughtException' | 'unhandledRejection'; name: string; message: string } | undefined;
  /**
   * ms from the process's start to its end, by process.uptime() (Node's own start, a little before
   * performance.timeOrigin): reading the `performance` global at the end of a script that never
   * timed anything loads node:perf_hooks and its internal modules (12 M instructions on Node 20, 14 M
   * on Node 26, of a script's exit), for one number.
   */
  duration: number;
}

export type EndingListener = (ending: Ending) => void;

const SIGNALS = ['SIGTERM', 'SIGINT'] as const;
type Sig = (typeof SIGNALS)[number];
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- process.listeners() hands out any-typed functions
type AnyListener = (...args: any[]) => void;

const listeners: EndingListener[] = [];
let installed = false;
let ended = false;
let crash: Ending['crash'];
/** Signal listeners of other parts of the agent (the flight recorder's): not the app's. */
const agentListeners = new WeakSet<AnyListener>();

/** A worker thread: Node replaces process.chdir there by a stub flagged `disabled`. */
function inWorker(): boolean {
  return (process.chdir as { disabled?: boolean }).disabled === true;
}

/** Calls `fn` once, synchronously, when the process ends (see the header). */
export function onEnding(fn: EndingListener): void {
  if (inWorker()) return;
  if (!listeners.includes(fn)) listeners.push(fn);
  if (!installed) install();
}

export function offEnding(fn: EndingListener): void {
  const i = listeners.indexOf(fn);
  if (i !== -1) listeners.splice(i, 1);
  if (listeners.length === 0 && installed) uninstall();
}

/** The signal listeners there are now, to mark the ones another part of the agent adds next. */
export function signalListenersNow(): AnyListener[] {
  return SIGNALS.flatMap((s) => process.listeners(s) as AnyListener[]);
}

/** Marks the signal listeners added since `before` as the agent's own (they do not make the app's say). */
export function adoptSignalListeners(before: AnyListener[]): void {
  for (const fn of signalListenersNow()) if (!before.includes(fn)) agentListeners.add(fn);
}

const onSignals: Record<Sig, () => void> = {
  SIGTERM: () => onSignal('SIGTERM'),
  SIGINT: () => onSignal('SIGINT'),
};

function install(): void {
  installed = true;
  process.on('uncaughtExceptionMonitor', onCrash);
  process.on('exit', onExit);
  for (const s of SIGNALS) process.on(s, onSignals[s]);
}

function uninstall(): void {
  installed = false;
  process.removeListener('uncaughtExceptionMonitor', onCrash);
  process.removeListener('exit', onExit);
  for (const s of SIGNALS) process.removeListener(s, onSignals[s]);
}

function onCrash(err: unknown, origin: string): void {
  try {
    const e = err instanceof Error ? err : undefined;
    crash = {
      origin: origin === 'unhandledRejection' ? 'unhandledRejection' : 'uncaughtException',
      name: e !== undefined ? String(e.name) : typeof err,
      message: e !== undefined ? String(e.message) : String(err),
    };
  } catch {
    // an error whose name or message throws: the ending still comes, without it
    crash = {
      origin: origin === 'unhandledRejection' ? 'unhandledRejection' : 'uncaughtException',
      name: '?',
      message: '?',
    };
  }
}

function onExit(code: number): void {
  const c = typeof code === 'number' ? code : 0;
  publish({
    outcome: c === 0 ? 'ok' : 'error',
    code: c,
    signal: undefined,
    crash: c !== 0 ? crash : undefined,
    duration: sinceStart(),
  });
}

function onSignal(sig: Sig): void {
  if (ended) return;
  const all = process.listeners(sig) as AnyListener[];
  // Any listener that is neither ours nor the agent's is the app's: the app decides what happens.
  for (const fn of all) if (fn !== onSignals[sig] && !agentListeners.has(fn)) return;
  publish({ outcome: 'signal', code: undefined, signal: sig, crash: undefined, duration: sinceStart() });
  for (const fn of all) process.removeListener(sig, fn);
  // Without listeners Node restores the default action: raised again, the signal ends the process
  // as it would have without the agent. After this emit, so the agent's other listeners still run.
  process.nextTick(() => process.kill(process.pid, sig));
}

/** ms since the process started (see Ending.duration). */
function sinceStart(): number {
  return process.uptime() * 1000;
}

function publish(ending: Ending): void {
  if (ended) return;
  ended = true;
  for (const fn of listeners.slice()) {
    try {
      fn(ending);
    } catch (err) {
      log.warnOnce('ending', `recording the process's end failed in part (${(err as Error).message})`);
    }
  }
}
