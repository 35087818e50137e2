/**
 * pino: every record written inside a request (or withRequestId) carries `"requestId":"<id>"`;
 * a record written outside any request carries the run's `"runId":"<id>","job":"<name>"`
 * (src/run.ts), so a script's lines and its SQL name the same run.
 *
 * How: all pino loggers (children too) share one prototype, reached through a throw-away silent
 * logger made at patch time; its `asJson` (pino.symbols.asJsonSym, which turns the merged object of
 * one call into the line) is wrapped to hand pino a copy of that object with `requestId` first.
 * The app's object is never mutated; its mixin, serializers, formatters, redaction and transports
 * run as before (formatters.log sees requestId like a mixin's field).
 * Nothing is added when the object already has a `requestId` (outside requests: a `runId`), or the
 * logger was bound to one (`logger.child({ requestId })`): the app's own value wins.
 * With a subscriber on `hatch:log` (the flight recorder), the line asJson returns is also published
 * with its level name (src/log-capture.ts): a reference to the string pino made, nothing copied.
 * Limitations: the key is always `requestId`; pino's browser build is not patched.
 */
import { storage } from '../src/context';
import { currentRun } from '../src/run';
import { wrap, unwrap } from '../src/shim';
import { log } from '../src/log';
import { fault } from '../src/fault';
import { channels } from '../src/bus';
import { notePinoLine, publishLog } from '../src/log-capture';
import type { PatchDefinition } from '../src/registry';
import type Pino from 'pino';

/** The object holding asJson: the prototype every pino logger inherits from. */
function loggerPrototype(pino: typeof Pino): { proto: object; asJson: symbol; chindings: symbol | undefined } {
  const asJson: unknown = pino?.symbols?.asJsonSym;
  if (typeof pino !== 'function' || typeof asJson !== 'symbol') throw new Error('pino.symbols.asJsonSym not found');
  const probe = pino({ level: 'silent' }, { write() {} });
  let proto: object | null = probe;
  while (proto !== null && !Object.prototype.hasOwnProperty.call(proto, asJson)) proto = Object.getPrototypeOf(proto);
  if (proto === null) throw new Error('the logger prototype has no asJson');
  const chindings: unknown = pino.symbols.chindingsSym;
  return { proto, asJson, chindings: typeof chindings === 'symbol' ? chindings : undefined };
}

let target: { proto: object; asJson: symbol } | undefined;

/** Publishes pino's line with the level's name (`logger.levels.labels`, custom levels included). */
function keep(logger: unknown, line: string, num: unknown): void {
  try {
    const labels = (logger as { levels?: { labels?: Record<string, string> } }).levels?.labels;
    const level = labels !== undefined && typeof num === 'number' ? labels[num] : undefined;
    notePinoLine(line);
    publishLog('pino', line, level ?? String(num), undefined);
  } catch {
    // the app's record is written all the same
  }
}

export const pino: PatchDefinition = {
  module: 'pino',
  feature: 'pino',
  versions: ['8.0.0', '11.0.0'],
  patch(exports: typeof Pino) {
    const { proto, asJson, chindings } = loggerPrototype(exports);
    const ok = wrap(
      proto,
      asJson,
      (original) =>
        function asJsonWithRequestId(
          this: Record<symbol, unknown>,
          obj: { requestId?: unknown } | null | undefined,
          msg: unknown,
          num: unknown,
          time: unknown,
        ) {
          const store = storage.getStore();
          if (store !== undefined) {
            try {
              fault('pino');
              const bound = chindings !== undefined ? this[chindings] : undefined;
              if (
                (obj == null || obj.requestId === undefined) &&
                !(typeof bound === 'string' && bound.includes('"requestId":'))
              ) {
                obj = Object.assign({ requestId: store.id }, obj);
              }
            } catch (err) {
              log.warnOnce(
                'pino-inject',
                `pino: adding requestId failed (${(err as Error).message}); the record is written without it`,
              );
            }
          } else {
            // Outside any request: the run. Requests never get here, so they pay nothing for it.
            try {
              fault('pino');
              const bound = chindings !== undefined ? this[chindings] : undefined;
              if (
                (obj == null || (obj as { runId?: unknown }).runId === undefined) &&
                !(typeof bound === 'string' && bound.includes('"runId":'))
              ) {
                const run = currentRun();
                obj = Object.assign({ runId: run.id, job: run.job }, obj);
              }
            } catch (err) {
              log.warnOnce(
                'pino-inject',
                `pino: adding runId failed (${(err as Error).message}); the record is written without it`,
              );
            }
          }
          const line = original.call(this, obj, msg, num, time);
          if (channels.log.hasSubscribers && typeof line === 'string') keep(this, line, num);
          return line;
        },
    );
    if (!ok) throw new Error('asJson is not a function');
    target = { proto, asJson };
  },
  unpatch() {
    if (target) unwrap(target.proto, target.asJson);
    target = undefined;
  },
};
