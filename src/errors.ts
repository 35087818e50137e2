/**
 * One path for errors the agent sees inside a request: published on `hatch:error` (the StatsD sink
 * counts it as errors{kind}, the requests hatch files it in the request's record) and logged on
 * stderr with the request's ID. The http server patch sends errors thrown synchronously by the app's
 * handler through it, from an `uncaughtExceptionMonitor` listener: the error is never caught, it goes
 * on to Node unchanged. The error hatch sends its test error the same way.
 */
import { storage } from './context';
import { channels, type ErrorEvent } from './bus';
import { log } from './log';

export function reportError(kind: string, err: unknown): void {
  try {
    const requestId = storage.getStore()?.id;
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    if (channels.error.hasSubscribers) {
      const event: ErrorEvent = { kind, requestId, message: message.slice(0, 1000) };
      channels.error.publish(event);
    }
    // An app's own crash is printed by Node as it would be without the agent: no second copy.
    if (kind === 'uncaught') return;
    const where = requestId === undefined ? '' : `request ${requestId}: `;
    const stack = err instanceof Error && err.stack ? err.stack : message;
    log.warn(`${where}${kind}: ${stack}`);
  } catch (e) {
    log.warnOnce('report-error', `reporting an error failed: ${(e as Error).message}`);
  }
}
