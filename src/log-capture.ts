/**
 * The app's own output, copied onto the bus (`hatch:log`, src/bus.ts LogEvent) for the flight
 * recorder: every write to process.stdout and process.stderr (console.* writes through them), and,
 * from patches/pino.ts and patches/winston.ts, every pino and winston record.
 *
 * How: `write` of the two streams is wrapped on the stream objects themselves (src/shim.ts: an own
 * property shadowing Writable.prototype.write, removed again by stop). The wrapper hands the chunk
 * to the bus, then calls the original with the same `this` and arguments and returns its result:
 * the bytes, their order and the moment they are written are the app's. Nothing is split, copied
 * or formatted here: a string chunk is kept by reference (strings are immutable), a Buffer is
 * decoded once (the app may reuse it). Cutting into lines happens when the record is written.
 * With no subscriber on `hatch:log` the wrapper is one property read and a call through.
 *
 * A record a logger writes through these streams would be kept twice (as its object and as text):
 * pino's line is recognised by identity (the string patches/pino.ts last saw is the one pino
 * writes), and winston's own writes are muted for the time of its `write` call.
 * Limitations: output written to fd 1 and 2 without the streams (pino.destination and sonic-boom,
 * fs.writeSync(1), a child process's inherited stdio, Node's own crash report) is not seen as
 * text; pino and winston records still are, as records. A winston transport that writes later
 * (not within logger.write) is seen both ways.
 */
import { channels, type LogEvent } from './bus';
import { storage } from './context';
import { now } from './clock';
import { wrap, unwrap } from './shim';

/**
 * The ID a log line is tagged with: the request's (or withRequestId's). Outside any request this is
 * where the run's ID belongs (issue 22, part 1: the run context), once the process has one.
 */
export function currentCorrelation(): string | undefined {
  return storage.getStore()?.id;
}

/** The string pino last made of a record (patches/pino.ts), until it is seen written or replaced. */
let pinoLine: string | undefined;
/** > 0 while winston's Logger#write runs (patches/winston.ts): what it writes is its record's text. */
let muted = 0;

export function notePinoLine(line: string): void {
  pinoLine = line;
}

/** Runs fn with the text capture muted (a logger writing a record that is kept as an object). */
export function muteText<T>(fn: () => T): T {
  muted++;
  try {
    return fn();
  } finally {
    muted--;
  }
}

/** Publishes one log line; never throws (a subscriber's error is caught by its Subscriptions). */
export function publishLog(
  source: LogEvent['source'],
  data: string | object,
  level: string | undefined,
  message: unknown,
): void {
  const event: LogEvent = { source, data, level, message, requestId: currentCorrelation(), start: now() };
  channels.log.publish(event);
}

function textOf(chunk: unknown, encoding: unknown): string | undefined {
  if (typeof chunk === 'string') {
    if (typeof encoding !== 'string' || encoding === 'utf8' || encoding === 'utf-8') return chunk;
    // 'hex', 'base64', 'latin1', …: what reaches the fd are the decoded bytes
    return Buffer.from(chunk, encoding as BufferEncoding).toString('utf8');
  }
  if (chunk instanceof Uint8Array)
    return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8');
  return undefined; // not writable either: the original throws or emits its own error
}

function wrapStream(stream: NodeJS.WriteStream, source: 'stdout' | 'stderr'): void {
  wrap(
    stream,
    'write',
    (original) =>
      function write(this: unknown, chunk: unknown, encoding: unknown) {
        if (channels.log.hasSubscribers && muted === 0) {
          if (chunk === pinoLine) {
            pinoLine = undefined;
          } else {
            try {
              const text = textOf(chunk, encoding);
              if (text !== undefined && text !== '') publishLog(source, text, undefined, undefined);
            } catch {
              // a copy that cannot be made is left out; the app's write goes on
            }
          }
        }
        return Reflect.apply(original, this, arguments);
      },
  );
}

let started = false;

/** Wraps process.stdout.write and process.stderr.write (once; `stop` undoes it). */
export function startTextCapture(): void {
  if (started) return;
  started = true;
  wrapStream(process.stdout, 'stdout');
  wrapStream(process.stderr, 'stderr');
}

export function stopTextCapture(): void {
  if (!started) return;
  started = false;
  unwrap(process.stdout, 'write');
  unwrap(process.stderr, 'write');
  pinoLine = undefined;
}
