/**
 * Flight recorder: a bounded ring of the most recent events (requests, queries, outgoing calls,
 * renders, agent errors, jobs' runs, the app's own log lines, and the process's own end), each with its request
 * (or run) ID, delivered to HATCH_FLIGHT_RECORDER as JSON lines when the process ends.
 *
 * What it keeps: the events the patches publish, and from `hatch:log` (src/log-capture.ts) every
 * write to process.stdout/stderr (console.* included) and every pino and winston record. On the
 * app's path an event costs a few array stores; text (stream writes, pino's lines) is copied once
 * as UTF-8 into a circular byte arena, 64 texts at a time (recordText), so the ring keeps no string
 * alive past its batch (a kept string outlives the young generation, and its promotion cost more
 * than the copy); winston's info object is kept as it is. Nothing is split or formatted until the record is delivered: text is cut into lines
 * then (a line written in pieces is joined again), pino's line parsed back into its object.
 * What a kept line costs (bench/run-log.mjs, Node 20, 2 shared CPUs at load 3-5): 340-960 ns of
 * CPU over five runs (stdout.write 344-473, pino 432-536, winston 530-831, console.log 462-963);
 * in instructions, stdout.write 1,400 and pino 2,200 (console.log's 6,300 and winston's are not
 * stable across runs). Touching process.stdout and stderr at start (to wrap them) costs 2-4 ms
 * to a script that would never have printed.
 *
 * Bounds: HATCH_FLIGHT_RECORDER_SIZE events and HATCH_FLIGHT_RECORDER_BYTES bytes, whichever is
 * reached first; the oldest events go, and a `{"type":"dropped",…}` line at the top of the record
 * counts them. Text counts its UTF-8 bytes plus 128 for the line's other fields; other events an
 * estimate made without formatting them (256, plus their SQL text or message). One text longer
 * than the arena keeps its end.
 *
 * Where it goes (src/config.ts RecorderTarget):
 * - a file: written synchronously to a temporary file renamed over the target (a reader never sees
 *   half a file), at every ending below;
 * - a directory: the same, to `<job>-<UTC timestamp>-<run-id>.jsonl` in it, one file per run;
 * - an http(s) URL: the JSON lines sent (PUT, or POST) once, at the process's last moment, through
 *   a synchronous child process (src/sync-http.ts), bounded by HATCH_FLIGHT_RECORDER_TIMEOUT_MS;
 *   when it fails (no answer in time, refused, a status >= 300) the record goes to a file in the
 *   OS temp directory and one line on stderr says where. What it costs the exit of a script that
 *   logs nothing (bench/run-log.mjs, same machine, where `node` with nothing to run took 119 ms):
 *   a file target 5-20 ms (within the noise of three runs), a URL answering on 127.0.0.1
 *   +150-220 ms (one more Node start, then the request), a refused one about the same, one that
 *   never answers the timeout (+508 ms for 500 ms).
 *
 * The process's end, without changing how it ends:
 * - normal exit and process.exit(): 'exit';
 * - uncaught exception and unhandled rejection: 'uncaughtExceptionMonitor' (observes only; Node's own
 *   crash output and exit code stay), which also records the error with the ID of the request that
 *   threw; a file is written at once, and 'exit' then delivers again with the exit code;
 * - SIGTERM and SIGINT: a listener delivers; when it is the only listener it removes itself and
 *   raises the signal again, so the process dies of it as it would have; when the app has its own
 *   listener (added before or after ours) the app decides what happens next (a file is written at
 *   the signal, the record is delivered again at the exit).
 * Delivery never throws into the app.
 * Limitations: SIGKILL, a native crash or an out-of-memory abort leave no record; other signals
 * (SIGHUP, SIGUSR2, …) are not watched; lines the app writes in its own 'exit' listeners are kept
 * only when those run before the agent's (listeners added before the agent loaded).
 */
import * as fs from 'node:fs';
import type * as Os from 'node:os';
import * as path from 'node:path';
import { channels, Subscriptions, type LogEvent } from '../bus';
import { storage } from '../context';
import { log } from '../log';
import { currentRun, getRunId } from '../run';
import { syncRequest } from '../sync-http';
import type { RecorderTarget } from '../config';

const SIGNALS = ['SIGTERM', 'SIGINT'] as const;

/** The JSON fields every line has besides its text (type, time, requestId, source). */
const LINE_OVERHEAD = 128;
const EVENT_SIZE = 256;
/** Texts held before they are copied into the arena together, at most (see recordText). */
const BATCH = 64;
const PENDING_CHARS = 8192;
/** A text longer than this is copied at once. */
const LONG_TEXT = 4096;

export interface RunIdentity {
  /** Metric- and file-name-safe job name. */
  job: string;
  /** An allowlisted ID. */
  id: string;
}

/** The process's run (src/run.ts), as the record names it. */
export function processRun(): RunIdentity {
  const run = currentRun();
  return { job: run.job, id: run.id };
}

export interface RecorderOptions {
  /** Events kept at most. */
  size: number;
  /** Estimated bytes kept at most. */
  bytes: number;
  /** Where the record goes; undefined: kept only (for a test or a hatch reading the ring). */
  target: RecorderTarget | undefined;
  method?: 'PUT' | 'POST';
  timeoutMs?: number;
  /** The run's job name and ID. */
  run?: () => RunIdentity;
}

export class FlightRecorder {
  readonly size: number;
  readonly maxBytes: number;
  readonly target: RecorderTarget | undefined;
  private readonly method: 'PUT' | 'POST';
  private readonly timeoutMs: number;
  private readonly run: () => RunIdentity;
  /** Per slot: the event's type; for text kept in the arena, its source (`stdout`, `stderr`, `pino`). */
  private readonly types: Array<string | undefined>;
  /** Per slot: the published object (events other than text). */
  private readonly events: unknown[];
  private readonly sizes: Uint32Array;
  // Per slot, for text: where its UTF-8 bytes are in the arena, when and under which ID it was written.
  private readonly textAt: Uint32Array;
  private readonly textLength: Uint32Array;
  private readonly starts: Float64Array;
  private readonly ids: Array<string | undefined>;
  private readonly levels: Array<string | undefined>;
  /**
   * The text's bytes (stdout, stderr, pino's lines), copied in, so the ring keeps no string alive:
   * kept strings outlive the young generation, and copying them out of it costs the app more than
   * copying their bytes once here (bench/run-log.mjs). A FIFO in a circular buffer of maxBytes:
   * text is written at `head`; the live region runs from `tail` (the oldest text's start); after a
   * wrap to 0, `wrapAt` marks where the data before the wrap ends. Made at the first text.
   */
  private arena: Buffer | undefined;
  private head = 0;
  private tail = 0;
  private wrapAt = -1;
  private arenaEntries = 0;
  /** Slots of the texts held until the next flush, oldest first: pending[pendingStart…pendingEnd). */
  private readonly pending = new Int32Array(BATCH);
  private pendingStart = 0;
  private pendingEnd = 0;
  private pendingChars = 0;
  private next = 0;
  private count = 0;
  private bytes = 0;
  private droppedEvents = 0;
  private droppedBytes = 0;
  private uploaded = false;
  private fileName: string | undefined;
  private readonly subscriptions = new Subscriptions('flight recorder');
  private readonly signalHandlers = new Map<string, () => void>();

  constructor(options: RecorderOptions) {
    this.size = options.size;
    // a batch (flush) must fit in an arena emptied of older text: HATCH_FLIGHT_RECORDER_BYTES's own minimum
    this.maxBytes = Math.max(options.bytes, 65536);
    this.target = options.target;
    this.method = options.method ?? 'PUT';
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.run = options.run ?? processRun;
    this.types = new Array(this.size);
    this.events = new Array(this.size);
    this.sizes = new Uint32Array(this.size);
    this.textAt = new Uint32Array(this.size);
    this.textLength = new Uint32Array(this.size);
    this.starts = new Float64Array(this.size);
    this.ids = new Array(this.size);
    this.levels = new Array(this.size);
  }

  start(): void {
    const watch: Array<[string, Parameters<Subscriptions['on']>[0]]> = [
      ['http.server', channels.httpServer],
      ['db.query', channels.dbQuery],
      ['http.client', channels.httpClient],
      ['render', channels.render],
      ['error', channels.error],
      ['log', channels.log],
      ['job', channels.job],
    ];
    for (const [type, ch] of watch) this.subscriptions.on(ch, (m) => this.record(type, m));
    if (this.target === undefined) return;
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

  /** Keeps one event; the oldest go when a bound is reached. */
  record(type: string, event: unknown): void {
    try {
      const l = event as LogEvent;
      if (type === 'log' && typeof l.data === 'string') return this.recordText(l);
      this.store(type, event, estimate(type, event));
    } catch (err) {
      // a subscriber that throws would surface in the app as an uncaught exception
      log.warnOnce('flight-recorder-record', `flight recorder failed to record an event: ${(err as Error).message}`);
    }
  }

  private store(type: string, event: unknown, size: number): number {
    if (this.count === this.size) this.dropOldest();
    const at = this.next;
    this.types[at] = type;
    this.events[at] = event;
    this.sizes[at] = size;
    this.next = (at + 1) % this.size;
    this.count++;
    this.bytes += size;
    while (this.bytes > this.maxBytes && this.count > 1) this.dropOldest();
    return at;
  }

  /**
   * Keeps a text: held by reference in its slot until BATCH texts (or PENDING_CHARS characters)
   * wait, then copied into the arena together (flush), which pays the call into Buffer's native
   * writer once per batch instead of once per line; a held string is still young when it is
   * copied, so it is not promoted. A long text is copied at once.
   */
  private recordText(e: LogEvent): void {
    const text = e.data as string;
    if (text.length > LONG_TEXT) {
      this.flush();
      return this.copyText(e, text);
    }
    const slot = this.store(e.source, text, text.length + LINE_OVERHEAD);
    this.textLength[slot] = 0;
    this.starts[slot] = e.start;
    this.ids[slot] = e.requestId;
    this.levels[slot] = e.level;
    this.pending[this.pendingEnd++] = slot;
    this.pendingChars += text.length;
    if (this.pendingEnd === BATCH || this.pendingChars >= PENDING_CHARS) this.flush();
  }

  /** Copies the held texts into the arena, in their order; the oldest events go until they fit. */
  private flush(): void {
    const from = this.pendingStart;
    const k = this.pendingEnd - from;
    if (k <= 0) {
      this.pendingStart = this.pendingEnd = this.pendingChars = 0;
      return;
    }
    const arena = (this.arena ??= Buffer.allocUnsafeSlow(this.maxBytes));
    const parts: string[] = new Array(k);
    for (let i = 0; i < k; i++) parts[i] = this.events[this.pending[from + i]!] as string;
    const joined = k === 1 ? parts[0]! : parts.join('');
    // At most 3 bytes per UTF-16 unit: when that bound fits where the head is, no need to count.
    let need = joined.length * 3;
    let at = this.room(need);
    if (at < 0) {
      need = Buffer.byteLength(joined);
      // Only older events go: a batch is far smaller than the arena, which fits it once they are gone.
      while ((at = this.room(need)) < 0) this.dropOldest();
    }
    const written = utf8Write(arena, joined, at);
    this.placed(at, written);
    const ascii = written === joined.length;
    let off = at;
    for (let i = 0; i < k; i++) {
      const slot = this.pending[from + i]!;
      const length = ascii ? parts[i]!.length : Buffer.byteLength(parts[i]!);
      this.textAt[slot] = off;
      this.textLength[slot] = length;
      off += length;
      this.events[slot] = undefined;
      this.bytes += length + LINE_OVERHEAD - this.sizes[slot]!;
      this.sizes[slot] = length + LINE_OVERHEAD;
    }
    this.arenaEntries += k;
    this.pendingStart = this.pendingEnd = this.pendingChars = 0;
    while (this.bytes > this.maxBytes && this.count > 1) this.dropOldest();
  }

  /** Bookkeeping for `written` bytes just placed at `at`. */
  private placed(at: number, written: number): void {
    if (at === 0 && this.arenaEntries > 0 && this.head !== 0) this.wrapAt = this.head;
    if (this.arenaEntries === 0) this.tail = at;
    this.head = at + written;
  }

  /** Copies one long text into the arena at once (nothing is held: see recordText). */
  private copyText(e: LogEvent, data: string): void {
    const arenaSize = this.maxBytes;
    const arena = (this.arena ??= Buffer.allocUnsafeSlow(arenaSize));
    let text = data;
    let need = Buffer.byteLength(text);
    if (need > arenaSize - LINE_OVERHEAD) {
      // one huge write: its end is what led up to what came next
      const keep = Math.floor((arenaSize - LINE_OVERHEAD) / 3);
      this.droppedBytes += need - keep;
      text = text.slice(-keep);
      need = Buffer.byteLength(text);
    }
    let at: number;
    while ((at = this.room(need)) < 0) this.dropOldest();
    const written = utf8Write(arena, text, at);
    this.placed(at, written);
    this.arenaEntries++;
    const slot = this.store(e.source, undefined, written + LINE_OVERHEAD);
    this.textAt[slot] = at;
    this.textLength[slot] = written;
    this.starts[slot] = e.start;
    this.ids[slot] = e.requestId;
    this.levels[slot] = e.level;
  }

  /** Where `n` bytes fit in the arena now without dropping anything, or -1. */
  private room(n: number): number {
    const size = this.maxBytes;
    if (this.arenaEntries === 0) return n <= size ? 0 : -1;
    if (this.wrapAt < 0) {
      // live region [tail, head): free at the end, or from 0 to tail
      if (size - this.head >= n) return this.head;
      return this.tail >= n ? 0 : -1;
    }
    // wrapped: live [tail, wrapAt) and [0, head); free is [head, tail)
    return this.tail - this.head >= n ? this.head : -1;
  }

  private dropOldest(): void {
    const first = (this.next - this.count + this.size) % this.size;
    const type = this.types[first];
    if ((type === 'stdout' || type === 'stderr' || type === 'pino') && typeof this.events[first] === 'string') {
      // still held: the oldest of the batch (held texts are the newest, in order)
      this.pendingChars -= (this.events[first] as string).length;
      this.pendingStart++;
      this.ids[first] = undefined;
    } else if (type === 'stdout' || type === 'stderr' || type === 'pino') {
      this.arenaEntries--;
      this.ids[first] = undefined;
      if (this.arenaEntries === 0) {
        this.head = this.tail = 0;
        this.wrapAt = -1;
      } else {
        this.tail = this.textAt[first]! + this.textLength[first]!;
        if (this.wrapAt >= 0 && this.tail >= this.wrapAt) {
          this.tail = 0;
          this.wrapAt = -1;
        }
      }
    }
    this.bytes -= this.sizes[first]!;
    this.droppedBytes += this.sizes[first]!;
    this.droppedEvents++;
    this.types[first] = undefined;
    this.events[first] = undefined;
    this.count--;
  }

  /** Events and estimated bytes the ring holds now, and what it dropped. */
  stats(): { events: number; bytes: number; droppedEvents: number; droppedBytes: number } {
    return {
      events: this.count,
      bytes: this.bytes,
      droppedEvents: this.droppedEvents,
      droppedBytes: this.droppedBytes,
    };
  }

  /** The ring as JSON lines, oldest first (text cut into its lines). */
  lines(): string[] {
    this.flush();
    const out: string[] = [];
    const partial: Record<string, Held | undefined> = {};
    const first = (this.next - this.count + this.size) % this.size;
    for (let i = 0; i < this.count; i++) {
      const at = (first + i) % this.size;
      try {
        const type = this.types[at]!;
        if (type === 'stdout' || type === 'stderr' || type === 'pino') {
          const piece: Held = {
            source: type,
            text: this.arena!.toString('utf8', this.textAt[at]!, this.textAt[at]! + this.textLength[at]!),
            start: this.starts[at]!,
            requestId: this.ids[at],
          };
          if (type === 'pino') {
            out.push(format('log', { ...piece, source: 'pino', data: piece.text, level: this.levels[at] }));
            continue;
          }
          // A line written in pieces is one line, with the time of its first piece.
          const held = partial[type];
          const pieces = ((held?.text ?? '') + piece.text).split('\n');
          const rest = pieces.pop()!;
          for (let j = 0; j < pieces.length; j++) out.push(textLine(j === 0 && held ? held : piece, pieces[j]!));
          partial[type] =
            rest === '' ? undefined : { ...(held !== undefined && pieces.length === 0 ? held : piece), text: rest };
          continue;
        }
        out.push(format(type, this.events[at]));
      } catch {
        // an event that cannot be formatted is left out, the rest still written
      }
    }
    for (const held of Object.values(partial)) if (held) out.push(textLine(held, held.text));
    return out;
  }

  /** The whole record: the run, what was dropped, then the ring. */
  content(): string {
    const run = this.run();
    const head = [
      JSON.stringify({
        type: 'run',
        time: new Date(performance.timeOrigin).toISOString(),
        requestId: null,
        job: run.job,
        runId: run.id,
        pid: process.pid,
      }),
    ];
    if (this.droppedEvents > 0 || this.droppedBytes > 0)
      head.push(
        JSON.stringify({
          type: 'dropped',
          time: null,
          requestId: null,
          events: this.droppedEvents,
          bytes: this.droppedBytes,
          reason: `the oldest events went to keep within ${this.size} events and ${this.maxBytes} bytes`,
        }),
      );
    return head.concat(this.lines()).join('\n') + '\n';
  }

  /** `<job>-<UTC timestamp of the process's start>-<run-id>.jsonl`, fixed at its first use. */
  runFileName(): string {
    if (this.fileName === undefined) {
      const run = this.run();
      const stamp = new Date(performance.timeOrigin)
        .toISOString()
        .replace(/[-:]/g, '')
        .replace(/\.\d+Z$/, 'Z');
      this.fileName = `${run.job}-${stamp}-${run.id}.jsonl`;
    }
    return this.fileName;
  }

  /**
   * Delivers the record. `last`: the process ends now (a URL target is sent only then, once);
   * otherwise only a file or directory target is written. Never throws.
   */
  deliver(last: boolean): void {
    const t = this.target;
    if (t === undefined) return;
    try {
      if (t.kind === 'file') this.writeFile(t.path);
      else if (t.kind === 'directory') {
        fs.mkdirSync(t.path, { recursive: true });
        this.writeFile(path.join(t.path, this.runFileName()));
      } else if (last && !this.uploaded) {
        this.uploaded = true;
        this.upload(t.url);
      }
    } catch (err) {
      log.warnOnce('flight-recorder-deliver', `flight recorder: delivery failed (${(err as Error).message})`);
    }
  }

  private upload(url: string): void {
    const body = this.content();
    const r = syncRequest({
      url,
      method: this.method,
      headers: { 'content-type': 'application/x-ndjson' },
      body,
      timeoutMs: this.timeoutMs,
    });
    if (r.status !== undefined && r.status >= 200 && r.status < 300) return;
    const why = r.status !== undefined ? `HTTP ${r.status}` : (r.error ?? 'no answer');
    const os = require('node:os') as typeof Os; // only for a failed upload
    const fallback = path.join(os.tmpdir(), `hatch-flight-${this.runFileName()}`);
    const where = this.writeFile(fallback, body) ? `the record is in ${fallback}` : 'the record is lost';
    log.warn(`flight recorder: ${this.method} ${publicUrl(url)} failed (${why}); ${where}`);
  }

  /** Writes the record atomically; true when it was written. */
  private writeFile(file: string, body?: string): boolean {
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(tmp, body ?? this.content());
      fs.renameSync(tmp, file);
      return true;
    } catch (err) {
      log.warnOnce('flight-recorder-write', `flight recorder: cannot write ${file} (${(err as Error).message})`);
      try {
        fs.unlinkSync(tmp);
      } catch {
        // nothing was written
      }
      return false;
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
    // 'exit' follows (unless the app handles the error and goes on): the upload waits for it.
    this.deliver(false);
  };

  private readonly onExit = (code: number) => {
    this.record('process', { requestId: undefined, event: 'exit', code, start: performance.now() });
    this.deliver(true);
  };

  private onSignal(sig: string, self: () => void): void {
    this.record('process', { requestId: undefined, event: 'signal', signal: sig, start: performance.now() });
    // Alone: the app never asked to handle this signal, so it must die of it as it would have.
    const alone = process.listenerCount(sig) === 1;
    this.deliver(alone);
    if (alone) {
      process.removeListener('exit', this.onExit); // killed by a signal, there is no exit to record
      process.removeListener(sig, self);
      this.signalHandlers.delete(sig);
      process.kill(process.pid, sig);
    }
  }
}

/**
 * Buffer#utf8Write: what Buffer#write calls after checking its arguments (ours are valid), which
 * took a third of the copy's time for a short line (a CPU profile of 1M pino lines; a plain JS loop
 * over the characters was slower still). Buffer#write where a Node lacks it.
 */
type Utf8Writer = { utf8Write?: (s: string, offset: number, length?: number) => number };
const directWrite = typeof (Buffer.prototype as Utf8Writer).utf8Write === 'function';
function utf8Write(arena: Buffer, text: string, at: number): number {
  return directWrite ? (arena as Utf8Writer).utf8Write!(text, at) : arena.write(text, at, 'utf8');
}

/** A piece of text read back from the arena (or the start of a line still being joined). */
interface Held {
  source: string;
  text: string;
  start: number;
  requestId: string | undefined;
}

/** The URL as it may be told: no query (a pre-signed URL's signature), no credentials. */
function publicUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return 'the URL';
  }
}

function estimate(type: string, event: unknown): number {
  const e = event as { data?: unknown; text?: unknown; message?: unknown } | null;
  if (e === null || typeof e !== 'object') return EVENT_SIZE;
  if (type === 'log') {
    if (typeof e.data === 'string') return e.data.length + LINE_OVERHEAD;
    return EVENT_SIZE + (typeof e.message === 'string' ? e.message.length : 0);
  }
  return EVENT_SIZE + (typeof e.text === 'string' ? e.text.length : 0);
}

function describe(err: unknown): { name: string; message: string; stack?: string } {
  if (err instanceof Error) return { name: err.name, message: err.message, stack: err.stack };
  return { name: typeof err, message: String(err) };
}

function isoTime(start: unknown): string | undefined {
  return typeof start === 'number' ? new Date(performance.timeOrigin + start).toISOString() : undefined;
}

function textLine(e: Held, text: string): string {
  return JSON.stringify({
    type: 'log',
    time: isoTime(e.start),
    requestId: e.requestId ?? null,
    ...(e.requestId === undefined ? { runId: getRunId() } : undefined),
    source: e.source,
    text: text.endsWith('\r') ? text.slice(0, -1) : text,
  });
}

/** A winston info object as plain data: its own fields, and an Error's message and stack. */
function plain(info: object, message: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (info instanceof Error) {
    out.name = info.name;
    out.stack = info.stack;
  }
  for (const k of Object.keys(info)) out[k] = (info as Record<string, unknown>)[k];
  if (message !== undefined) out.message = message;
  else if (info instanceof Error) out.message = info.message;
  return out;
}

/** One JSON line: type, wall-clock time, request ID first, then the event's own fields. */
function format(type: string, event: unknown): string {
  const e = (event ?? {}) as Record<string, unknown>;
  // Outside any request, the run's ID (src/run.ts): every line says whose it is.
  const head = {
    type,
    time: isoTime(e.start),
    requestId: e.requestId ?? null,
    ...(e.requestId == null ? { runId: getRunId() } : undefined),
  };
  if (type === 'log') {
    const l = e as unknown as LogEvent;
    let record: unknown;
    if (typeof l.data === 'string') {
      try {
        record = JSON.parse(l.data);
      } catch {
        return JSON.stringify({ ...head, source: l.source, level: l.level, text: l.data.trimEnd() });
      }
    } else {
      record = plain(l.data, l.message);
    }
    const line = { ...head, source: l.source, level: l.level, record };
    try {
      return JSON.stringify(line);
    } catch {
      // a field that cannot be stringified (a cycle, a BigInt): the level and message still tell
      return JSON.stringify({ ...line, record: { level: l.level, message: String(l.message) } });
    }
  }
  const line: Record<string, unknown> = head;
  for (const k of Object.keys(e)) if (k !== 'start' && k !== 'requestId') line[k] = e[k];
  return JSON.stringify(line);
}
