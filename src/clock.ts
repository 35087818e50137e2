/**
 * The monotonic clock of every timing (performance.now()), read from node:perf_hooks at the first
 * timing, not when the agent loads: reading `globalThis.performance` loads perf_hooks and its ten
 * internal modules (about a millisecond of every start-up on Node 20; a script that never times
 * anything never pays it). perf_hooks' own `performance` object, not the global accessor, is kept:
 * reading the accessor costs about 10 ns on every call (measured on Node 20 and 24), and a test's fake
 * timers that replace the global later leave the agent's timings real.
 */
let perf: { now(): number } | undefined;

export function now(): number {
  return (perf ??= (require('node:perf_hooks') as typeof import('node:perf_hooks')).performance).now();
}
