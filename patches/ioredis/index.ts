/**
 * ioredis 5.x and 6.x: every command the app sends, and every pipeline and MULTI as one call, timed
 * as `db.query` with system `redis` (../redis/command.ts says what is told about each).
 *
 * Where:
 * - `Redis.prototype.sendCommand(command, stream)`: a command sent on its own (no `stream`). A
 *   pipeline's commands pass here too, with the pipeline's stream, and are counted by the pipeline.
 *   A command the client sends again (its offline queue flushed at connect, its in-flight commands
 *   resent after a reconnect) is counted once, from its first send: a timed command keeps the
 *   `resolve` it was given (TIMED), one of the connection's set-up is held in a WeakSet.
 * - `Pipeline.prototype.exec`: a pipeline, or a MULTI (`redis.multi()` is a Pipeline whose own exec
 *   calls this one twice, first to queue EXEC: that call is left alone), timed with its count.
 *   A pipeline run again (cluster redirections) is counted once.
 * - With `enableAutoPipelining`, the app's commands are gathered into pipelines behind its back:
 *   each command is timed on its own, in its caller's context, from `Pipeline.prototype.sendCommand`,
 *   and the pipeline is not counted.
 * Each end is seen by wrapping the Command's (or Pipeline's) own `resolve` and `reject`, which
 * ioredis calls with the reply: the promise the app holds is ioredis's own, never chained, so its
 * value, its error and which rejections are unhandled stay as they are. The caller's request ID is
 * taken at the call; the app's continuation runs in its own context because ioredis answers through
 * promises (and `standard-as-callback` attaches callbacks in the caller's context), offline queue
 * or not.
 * Not timed: ioredis's own connection set-up (its handshake and ready check, sent while the
 * status is `connect`), SUBSCRIBE and its kin and MONITOR (pub/sub is a stream of messages, not queries), and
 * the connections another library makes for itself: a client constructed from inside BullMQ or Bull
 * (its blocking and event connections) is left alone, found by one stack trace when it is made.
 * A client the app made and hands to BullMQ is the app's, and timed.
 * Each client the app makes is announced on `hatch:instance` for the health hatch (./probe.ts).
 * Limitations: ioredis's Cluster is timed per node connection, not per cluster call; a client
 * passed to BullMQ that BullMQ duplicates is timed, its duplicates are not.
 */
import type { PatchDefinition } from '../../src/registry';
import { storage } from '../../src/context';
import { channels } from '../../src/bus';
import { wrap, unwrap, type Fn } from '../../src/shim';
import { log } from '../../src/log';
import { describe, describeBatch, end, operationOf, pending, repliesFailed, type RedisPending } from '../redis/command';
import { announceClient, libraryOwned, markIfLibraryOwned } from './probe';

interface CommandSeen {
  name?: unknown;
  args?: unknown[];
  resolve?: Fn;
  reject?: Fn;
}
interface PipelineSeen {
  redis?: object;
  _queue?: CommandSeen[];
  _transactions?: number;
  resolve?: Fn;
  reject?: Fn;
}
type IORedisModule = { prototype: object; Pipeline?: { prototype: object } };

/**
 * Pipelines already timed, and commands of a connection's set-up: each is counted once (or never),
 * however often ioredis sends it. A timed command is known by its `resolve` (TIMED).
 */
const seen = new WeakSet<object>();
/** Pipelines ioredis's auto-pipelining made, by whether they are (looked up once per pipeline). */
const auto = new WeakMap<object, boolean>();
const UNTIMED = new Set([
  'SUBSCRIBE',
  'PSUBSCRIBE',
  'SSUBSCRIBE',
  'UNSUBSCRIBE',
  'PUNSUBSCRIBE',
  'SUNSUBSCRIBE',
  'MONITOR',
]);
/**
 * What ioredis sends itself while it sets a connection up (status `connect`, before `ready`): its
 * handshake (HELLO, AUTH, CLIENT SETNAME/SETINFO, SELECT, READONLY) and its ready check (INFO).
 * The app's own commands wait in the offline queue until `ready`.
 */
const SETUP = new Set(['HELLO', 'AUTH', 'CLIENT', 'SELECT', 'READONLY', 'INFO']);

/** Calls `onEnd` once the pipeline's own `resolve` or `reject` is called. */
function onSettle(target: PipelineSeen, onEnd: (error: boolean, value: unknown) => void): boolean {
  const resolve = target.resolve;
  const reject = target.reject;
  if (typeof resolve !== 'function' || typeof reject !== 'function') return false;
  target.resolve = function (this: unknown, value: unknown) {
    onEnd(false, value);
    return Reflect.apply(resolve, this, arguments);
  };
  target.reject = function (this: unknown) {
    onEnd(true, undefined);
    return Reflect.apply(reject, this, arguments);
  };
  return true;
}

/**
 * The name of the `resolve` a timed command is given: a command sent again still has it, which
 * tells it apart as already counted without a WeakSet entry per command (an ephemeron the garbage
 * collector has to visit; about 0.4 µs a command). ioredis's own `resolve` is an unnamed arrow
 * function in every version, and only ever replaced by us (Cluster, Script and the himport
 * coordinator wrap `reject`, never `resolve`).
 */
const TIMED = 'hatchTimedResolve';

function trackCommand(command: unknown, setup: boolean): void {
  if (command === null || typeof command !== 'object') return;
  const c = command as CommandSeen;
  const resolve = c.resolve;
  const reject = c.reject;
  if (typeof resolve !== 'function' || typeof reject !== 'function' || resolve.name === TIMED) return;
  const op = operationOf(c.name);
  if (UNTIMED.has(op)) return;
  if (SETUP.has(op)) {
    // One sent during a connection's set-up is remembered (a few per connection), so that it is
    // still left alone if ioredis sends it again once the connection is ready.
    if (setup) {
      seen.add(c);
      return;
    }
    if (seen.has(c)) return;
  }
  const p = pending(storage.getStore()?.id, describe(c.name, Array.isArray(c.args) ? c.args : [], 0, op), op, 1);
  // Two closures over one context, each ending the event itself, then handing on to ioredis's own.
  c.resolve = function hatchTimedResolve(this: unknown) {
    end(p, false);
    return Reflect.apply(resolve, this, arguments);
  };
  c.reject = function (this: unknown) {
    end(p, true);
    return Reflect.apply(reject, this, arguments);
  };
}

function isAuto(pipeline: object): boolean {
  let a = auto.get(pipeline);
  if (a === undefined) {
    // autoPipelining.js marks its pipelines with two symbols of its own (not exported): `exec`, `callbacks`.
    a = Object.getOwnPropertySymbols(pipeline).some((s) => s.description === 'callbacks');
    auto.set(pipeline, a);
  }
  return a;
}

function trackPipeline(pipeline: PipelineSeen): void {
  if (seen.has(pipeline) || (pipeline.redis !== undefined && libraryOwned(pipeline.redis))) return;
  // redis.multi()'s exec first calls this to queue EXEC; the run comes next.
  if (typeof pipeline._transactions === 'number' && pipeline._transactions > 0) return;
  if (isAuto(pipeline)) return;
  seen.add(pipeline);
  const queue = Array.isArray(pipeline._queue) ? pipeline._queue : [];
  const multi =
    queue.length >= 2 &&
    operationOf(queue[0]!.name) === 'MULTI' &&
    operationOf(queue[queue.length - 1]!.name) === 'EXEC';
  const commands = multi ? queue.slice(1, -1) : queue;
  const parts = commands.slice(0, 6).map((c) => describe(c.name, Array.isArray(c.args) ? c.args : [], 0));
  const kind = multi ? 'MULTI' : 'PIPELINE';
  const p: RedisPending = pending(
    storage.getStore()?.id,
    describeBatch(kind, parts, commands.length),
    kind,
    commands.length,
  );
  onSettle(pipeline, (error, value) => {
    // One failed command (a pair's error, or an error among EXEC's replies) makes the call an error.
    end(p, error || repliesFailed(value));
  });
}

// The wrappers of ioredis's class methods (sendCommand, parseOptions, Pipeline's sendCommand in every
// supported version) are object-literal methods: with no prototype of their own the shim hands them
// out as they are, not inside one more method (src/shim.ts asMethod): one call less on every command,
// BullMQ's own included (too little to show in bench/jobs.mjs). Pipeline.prototype.exec is a plain
// function there, and so is its wrapper.
function wrapSendCommand(original: Fn): Fn {
  return {
    sendCommand(this: object, command: unknown, stream?: unknown) {
      if (stream === undefined && channels.dbQuery.hasSubscribers) {
        try {
          if (!libraryOwned(this)) trackCommand(command, (this as { status?: unknown }).status === 'connect');
        } catch (err) {
          log.warnOnce(
            'ioredis-command',
            `ioredis: timing a command failed (${(err as Error).message}); it runs untimed`,
          );
        }
      }
      return Reflect.apply(original, this, arguments);
    },
  }.sendCommand;
}

function wrapPipelineSendCommand(original: Fn): Fn {
  return {
    sendCommand(this: PipelineSeen, command: unknown) {
      if (channels.dbQuery.hasSubscribers) {
        try {
          if (isAuto(this) && !(this.redis !== undefined && libraryOwned(this.redis))) trackCommand(command, false);
        } catch (err) {
          log.warnOnce('ioredis-auto', `ioredis: timing an auto-pipelined command failed (${(err as Error).message})`);
        }
      }
      return Reflect.apply(original, this, arguments);
    },
  }.sendCommand;
}

function wrapExec(original: Fn) {
  return function exec(this: PipelineSeen) {
    if (channels.dbQuery.hasSubscribers) {
      try {
        trackPipeline(this);
      } catch (err) {
        log.warnOnce(
          'ioredis-pipeline',
          `ioredis: timing a pipeline failed (${(err as Error).message}); it runs untimed`,
        );
      }
    }
    return Reflect.apply(original, this, arguments);
  };
}

/** Runs in the constructor, before it connects: who made the client is on the stack. */
function wrapParseOptions(original: Fn): Fn {
  return {
    parseOptions(this: object) {
      const ret = Reflect.apply(original, this, arguments);
      try {
        if (!markIfLibraryOwned(this)) announceClient(this);
      } catch (err) {
        log.warnOnce('ioredis-announce', `ioredis: noting a new client failed: ${(err as Error).message}`);
      }
      return ret;
    },
  }.parseOptions;
}

export const ioredis: PatchDefinition<IORedisModule> = {
  module: 'ioredis',
  feature: 'redis',
  versions: ['5.0.0', '7.0.0'],
  patch(Redis) {
    if (!wrap(Redis.prototype, 'sendCommand', wrapSendCommand))
      throw new Error('Redis.prototype.sendCommand not found');
    wrap(Redis.prototype, 'parseOptions', wrapParseOptions);
    const Pipeline = Redis.Pipeline;
    if (Pipeline !== undefined) {
      wrap(Pipeline.prototype, 'exec', wrapExec);
      wrap(Pipeline.prototype, 'sendCommand', wrapPipelineSendCommand);
    }
  },
  unpatch(Redis) {
    unwrap(Redis.prototype, 'sendCommand');
    unwrap(Redis.prototype, 'parseOptions');
    const Pipeline = Redis.Pipeline;
    if (Pipeline !== undefined) {
      unwrap(Pipeline.prototype, 'exec');
      unwrap(Pipeline.prototype, 'sendCommand');
    }
  },
};
