/**
 * `hatch-agent`: loading it starts the agent (once), and exports the small public API: request IDs
 * for code that runs outside incoming requests (scripts, queue workers), the ID of the process's
 * run (what code outside any request carries: src/run.ts), and `stop()` / `start()`
 * to take the agent out of the process and put it back.
 */
import { boot, stop as stopAgent, start as startAgent } from './register';

boot();

export { getRequestId, withRequestId } from './context';
export { getRunId } from './run';

/**
 * Takes the agent out: every patched function is the original again, nothing is subscribed, the
 * metrics are flushed. The app behaves as without the agent until `start()`. Never throws.
 */
export function stop(): void {
  stopAgent();
}

/**
 * Puts the agent back after `stop()`, with the configuration it started with; modules the app
 * loaded before are patched again. Returns whether the agent runs. Never throws.
 */
export function start(): boolean {
  return startAgent();
}
