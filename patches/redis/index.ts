/**
 * node-redis (`redis` 4.1+, 5.x and 6.x, whose client is `@redis/client` 1.1+, 5.x, 6.x): every
 * command the app sends timed as `db.query` with system `redis`, each pipeline and MULTI as one
 * call with its command count (./command.ts says what is told about each).
 *
 * Two of its files (the package's main file does not export the client class in every version),
 * because node-redis 4 attaches its command methods with the original executor captured at load
 * (`attachCommands`), so no client method sees each command:
 * - the commands queue (`@redis/client/dist/lib/client/commands-queue`, its `addCommand`), which
 *   every command passes in every version: a single command is timed there. Skipped there: the
 *   client's own connection handshake (added `asap` in 4, in a chain in 5+), the commands of a
 *   pipeline or MULTI (in a chain, or added while the client's batch method runs), and pub/sub,
 *   which node-redis never sends through `addCommand` (SUBSCRIBE and its messages are no queries).
 * - the client class (`@redis/client/dist/lib/client`): its batch methods (`multiExecutor` in 4,
 *   `_executeMulti` and `_executePipeline` in 5+), which the Multi object calls through `this`: one
 *   call each; and its `connect`, which announces the client for the health hatch.
 * Each promise is chained once and the chain returned (same value, same error object), as the pg
 * patch does; the caller's request ID is taken at the call, and node-redis answers through
 * promises, so a command queued before `connect()` or during a reconnect resumes in its caller's
 * context. The queue also keeps a count of its commands in flight, for the health probe
 * (./probe.ts), which uses it to leave a busy client unprobed.
 * Limitations: a reply served from node-redis 5's client-side cache never reaches the queue and is
 * not timed; RedisCluster and RedisClientPool are timed per client connection.
 */
import type { PatchDefinition } from '../../src/registry';
import { storage } from '../../src/context';
import { channels } from '../../src/bus';
import { wrap, unwrap, type Fn } from '../../src/shim';
import { log } from '../../src/log';
import { describe, describeBatch, end, operationOf, pending, repliesFailed, type RedisPending } from './command';
import { announceClient, gate, settled, started } from './probe';

type ClientModule = { default?: { prototype: object } };
type QueueModule = { default?: { prototype: object } };
interface BatchCommand {
  args?: unknown[];
}

/** Set while a client's batch method adds its commands (synchronously, before its first await). */
let inBatch = 0;

/** `failed`: whether a value it resolves with still counts as an error (a batch's replies). */
function chain(ret: unknown, onEnd: (error: boolean) => void, failed?: (v: unknown) => boolean): unknown {
  if (ret === null || typeof ret !== 'object' || typeof (ret as PromiseLike<unknown>).then !== 'function') {
    onEnd(false);
    return ret;
  }
  return (ret as PromiseLike<unknown>).then(
    (v) => {
      onEnd(failed !== undefined && failed(v));
      return v;
    },
    (e: unknown) => {
      onEnd(true);
      throw e;
    },
  );
}

function wrapAddCommand(original: Fn) {
  return function addCommand(this: object, args: unknown, options?: { chainId?: unknown; asap?: unknown }) {
    const timing = channels.dbQuery.hasSubscribers;
    const counting = timing || channels.instance.hasSubscribers;
    if (!counting) return Reflect.apply(original, this, arguments);
    let p: RedisPending | undefined;
    try {
      const busy = gate(this);
      if (busy !== undefined) return busy;
      if (timing && inBatch === 0 && Array.isArray(args) && !options?.chainId && !options?.asap) {
        const op = operationOf(args[0]);
        p = pending(storage.getStore()?.id, describe(args[0], args, 1, op), op, 1);
      }
      started(this);
    } catch (err) {
      log.warnOnce('redis-command', `redis: timing a command failed (${(err as Error).message}); it runs untimed`);
      return Reflect.apply(original, this, arguments);
    }
    let ret: unknown;
    try {
      ret = Reflect.apply(original, this, arguments);
    } catch (err) {
      settled(this);
      if (p) end(p, true);
      throw err;
    }
    return settle(ret, this, p);
  };
}

/** chain() for one command: two closures over the queue and the event, nothing else per command. */
function settle(ret: unknown, queue: object, p: RedisPending | undefined): unknown {
  if (ret === null || typeof ret !== 'object' || typeof (ret as PromiseLike<unknown>).then !== 'function') {
    settled(queue);
    if (p) end(p, false);
    return ret;
  }
  return (ret as PromiseLike<unknown>).then(
    (v) => {
      settled(queue);
      if (p) end(p, false);
      return v;
    },
    (e: unknown) => {
      settled(queue);
      if (p) end(p, true);
      throw e;
    },
  );
}

/** `kind` undefined: told by the arguments (node-redis 4's multiExecutor takes a chain ID for a MULTI). */
function wrapBatch(kind: 'PIPELINE' | 'MULTI' | undefined) {
  return (original: Fn) =>
    function batch(this: object, commands: unknown) {
      if (!channels.dbQuery.hasSubscribers) return Reflect.apply(original, this, arguments);
      let p: RedisPending;
      try {
        let list = Array.isArray(commands) ? (commands as BatchCommand[]) : [];
        // node-redis 4.1's Multi hands over MULTI and EXEC among the commands; later ones add them itself.
        const name = (c: BatchCommand | undefined) => (Array.isArray(c?.args) ? operationOf(c.args[0]) : '');
        if (list.length >= 2 && name(list[0]) === 'MULTI' && name(list[list.length - 1]) === 'EXEC')
          list = list.slice(1, -1);
        let k = kind;
        if (k === undefined) {
          k = 'PIPELINE';
          for (let i = 1; i < arguments.length; i++) if (typeof arguments[i] === 'symbol') k = 'MULTI';
        }
        const parts = list.slice(0, 6).map((c) => (Array.isArray(c?.args) ? describe(c.args[0], c.args, 1) : 'OTHER'));
        p = pending(storage.getStore()?.id, describeBatch(k, parts, list.length), k, list.length);
      } catch (err) {
        log.warnOnce('redis-batch', `redis: timing a batch failed (${(err as Error).message}); it runs untimed`);
        return Reflect.apply(original, this, arguments);
      }
      inBatch++;
      let ret: unknown;
      try {
        ret = Reflect.apply(original, this, arguments);
      } catch (err) {
        end(p, true);
        throw err;
      } finally {
        inBatch--;
      }
      return chain(ret, (error) => end(p, error), repliesFailed);
    };
}

function wrapConnect(original: Fn) {
  return function connect(this: object) {
    try {
      announceClient(this);
    } catch (err) {
      log.warnOnce('redis-announce', `redis: noting a client failed: ${(err as Error).message}`);
    }
    return Reflect.apply(original, this, arguments);
  };
}

const BATCHES: Array<[string, 'PIPELINE' | 'MULTI' | undefined]> = [
  ['multiExecutor', undefined],
  ['_executeMulti', 'MULTI'],
  ['_executePipeline', 'PIPELINE'],
];

export const redisClient: PatchDefinition<ClientModule> = {
  module: '@redis/client/dist/lib/client',
  feature: 'redis',
  versions: ['1.1.0', '7.0.0'],
  patch(exports) {
    const proto = exports.default?.prototype;
    if (proto === undefined) throw new Error('RedisClient not found');
    if (!wrap(proto, 'connect', wrapConnect)) throw new Error('RedisClient.prototype.connect not found');
    for (const [name, kind] of BATCHES) wrap(proto, name, wrapBatch(kind));
  },
  unpatch(exports) {
    const proto = exports.default?.prototype;
    if (proto === undefined) return;
    unwrap(proto, 'connect');
    for (const [name] of BATCHES) unwrap(proto, name);
  },
};

export const redisQueue: PatchDefinition<QueueModule> = {
  module: '@redis/client/dist/lib/client/commands-queue',
  feature: 'redis',
  versions: ['1.1.0', '7.0.0'],
  patch(exports) {
    const proto = exports.default?.prototype;
    if (proto === undefined || !wrap(proto, 'addCommand', wrapAddCommand))
      throw new Error('RedisCommandsQueue.prototype.addCommand not found');
  },
  unpatch(exports) {
    const proto = exports.default?.prototype;
    if (proto !== undefined) unwrap(proto, 'addCommand');
  },
};
