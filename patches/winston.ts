/**
 * winston 3: every record written inside a request (or withRequestId) gets `info.requestId` (outside
 * any request: the run's `info.runId` and `info.job`, src/run.ts), before
 * the logger's format runs, so json(), logstash() and the app's own formats see it like any other
 * field (a printf format that does not print it leaves it out).
 *
 * How: Logger.prototype.write (every logger from createLogger, the default logger, children, and
 * streams piped into a logger pass through it) is wrapped. The ID is taken when the app logs, not
 * when the stream gets round to transforming the record.
 * The info object is the one winston itself writes its level onto, so the field is set on it
 * (for `logger.error(err)` that is the Error itself, which keeps `errors()` working). An info that
 * already has a `requestId` (from the call, defaultMeta or a child's metadata) keeps it.
 * With a subscriber on `hatch:log` (the flight recorder), the info object is also published with its
 * level and message as logged (formats such as colorize change both later), and text the transports
 * write to process.stdout/stderr meanwhile is not kept a second time (src/log-capture.ts muteText).
 * Limitations: winston 2 is not supported; a frozen info object is written without the ID.
 */
import { storage } from '../src/context';
import { currentRun } from '../src/run';
import { wrap, unwrap } from '../src/shim';
import { log } from '../src/log';
import { fault } from '../src/fault';
import { channels } from '../src/bus';
import { muteText, publishLog } from '../src/log-capture';
import type { PatchDefinition } from '../src/registry';

/** winston 3.0 does not export Logger; every created logger's class extends it. */
/** What the patch reads of winston's exports (its types ship inside the package only). */
interface Winston {
  Logger?: { prototype?: object };
  createLogger?: (options: { silent: boolean }) => object;
}

function loggerPrototype(winston: Winston): object {
  let proto: object | null = winston?.Logger?.prototype ?? null;
  if (proto === null) {
    if (typeof winston?.createLogger !== 'function') throw new Error('winston.createLogger not found');
    proto = Object.getPrototypeOf(winston.createLogger({ silent: true }));
    while (proto !== null && !Object.prototype.hasOwnProperty.call(proto, '_transform'))
      proto = Object.getPrototypeOf(proto);
  }
  if (proto === null || typeof (proto as { _transform?: unknown })._transform !== 'function')
    throw new Error('winston Logger prototype not found');
  return proto;
}

let target: object | undefined;

export const winston: PatchDefinition = {
  module: 'winston',
  feature: 'winston',
  versions: ['3.0.0', '4.0.0'],
  patch(exports: Winston) {
    const proto = loggerPrototype(exports);
    const ok = wrap(
      proto,
      'write',
      (original) =>
        function write(this: unknown, info: { requestId?: unknown } | null) {
          const store = storage.getStore();
          if (store !== undefined) {
            try {
              fault('winston');
              if (
                info !== null &&
                typeof info === 'object' &&
                info.requestId === undefined &&
                Object.isExtensible(info)
              )
                info.requestId = store.id;
            } catch (err) {
              // an info whose requestId is a throwing getter or setter: written as it is
              log.warnOnce(
                'winston-inject',
                `winston: adding requestId failed (${(err as Error).message}); the record is written without it`,
              );
            }
          } else {
            // Outside any request: the run. Requests never get here, so they pay nothing for it.
            try {
              fault('winston');
              const rec = info as { runId?: unknown; job?: unknown } | null;
              if (rec !== null && typeof rec === 'object' && rec.runId === undefined && Object.isExtensible(rec)) {
                const run = currentRun();
                rec.runId = run.id;
                if (rec.job === undefined) rec.job = run.job;
              }
            } catch (err) {
              log.warnOnce(
                'winston-inject',
                `winston: adding runId failed (${(err as Error).message}); the record is written without it`,
              );
            }
          }
          if (channels.log.hasSubscribers && info !== null && typeof info === 'object') {
            try {
              const record = info as { level?: unknown; message?: unknown };
              publishLog('winston', info, String(record.level), record.message);
            } catch {
              // an info whose level or message getter throws: written as it is, not kept
            }
            const args = arguments as unknown as unknown[];
            return muteText(() => original.apply(this, args));
          }
          return original.apply(this, arguments as unknown as unknown[]);
        },
    );
    if (!ok) throw new Error('Logger.prototype.write is not a function');
    target = proto;
  },
  unpatch() {
    if (target) unwrap(target, 'write');
    target = undefined;
  },
};
