/**
 * What the Redis patches (ioredis: ../ioredis, node-redis: ./index.ts) tell about one command or
 * batch, and how they publish it on `hatch:db.query` (src/bus.ts) with system `redis`.
 * - operation: the command's name, upper-cased, if it is one of Redis's own commands (a fixed
 *   list, Redis 7.0's `COMMAND LIST` and the hash-field expiry commands of 7.4/8.0), else `OTHER`:
 *   a metric dimension stays bounded whatever name an app or a module (JSON.GET, FT.SEARCH) sends.
 *   A pipeline is `PIPELINE`, a transaction `MULTI`, each with its command count.
 * - text (the requests hatch's timeline, the flight recorder): the name and the command's first
 *   key, cut to MAX_KEY characters, control characters replaced. Never an argument after the key:
 *   values (a session, a token, a cached page) stay out of every record. A command that has no
 *   key (PING, INFO, AUTH, CLIENT, PUBLISH's channel, KEYS's pattern) shows its name only.
 * Limitations: the first key is found by a few rules (EVAL's numkeys, XREAD's STREAMS, the *MPOP
 * and *INTERCARD numkeys, container subcommands such as OBJECT ENCODING key), not by the server's
 * key specs: an unusual command shows its first argument if it is not in the no-key list.
 */
import { channels, type DbQueryEvent } from '../../src/bus';
import { log } from '../../src/log';
import { now } from '../../src/clock';

/**
 * Used through this local name: tsc compiles a use of an exported const to a load from `exports` on
 * every use, which cost firstKey about 0.1 µs a call (141 -> 45 ns, Node 20).
 */
const KEY_LIMIT = 64;
export const MAX_KEY = KEY_LIMIT;
/** A batch's text lists at most this many of its commands. */
const MAX_LISTED = 5;

const KNOWN = new Set(
  (
    'ACL APPEND ASKING AUTH BGREWRITEAOF BGSAVE BITCOUNT BITFIELD BITFIELD_RO BITOP BITPOS BLMOVE BLMPOP BLPOP ' +
    'BRPOP BRPOPLPUSH BZMPOP BZPOPMAX BZPOPMIN CLIENT CLUSTER COMMAND CONFIG COPY DBSIZE DEBUG DECR DECRBY DEL ' +
    'DISCARD DUMP ECHO EVAL EVALSHA EVALSHA_RO EVAL_RO EXEC EXISTS EXPIRE EXPIREAT EXPIRETIME FAILOVER FCALL ' +
    'FCALL_RO FLUSHALL FLUSHDB FUNCTION GEOADD GEODIST GEOHASH GEOPOS GEORADIUS GEORADIUSBYMEMBER ' +
    'GEORADIUSBYMEMBER_RO GEORADIUS_RO GEOSEARCH GEOSEARCHSTORE GET GETBIT GETDEL GETEX GETRANGE GETSET HDEL ' +
    'HELLO HEXISTS HGET HGETALL HINCRBY HINCRBYFLOAT HKEYS HLEN HMGET HMSET HRANDFIELD HSCAN HSET HSETNX ' +
    'HSTRLEN HVALS INCR INCRBY INCRBYFLOAT INFO KEYS LASTSAVE LATENCY LCS LINDEX LINSERT LLEN LMOVE LMPOP ' +
    'LOLWUT LPOP LPOS LPUSH LPUSHX LRANGE LREM LSET LTRIM MEMORY MGET MIGRATE MODULE MONITOR MOVE MSET MSETNX ' +
    'MULTI OBJECT PERSIST PEXPIRE PEXPIREAT PEXPIRETIME PFADD PFCOUNT PFDEBUG PFMERGE PFSELFTEST PING PSETEX ' +
    'PSUBSCRIBE PSYNC PTTL PUBLISH PUBSUB PUNSUBSCRIBE QUIT RANDOMKEY READONLY READWRITE RENAME RENAMENX ' +
    'REPLCONF REPLICAOF RESET RESTORE RESTORE-ASKING ROLE RPOP RPOPLPUSH RPUSH RPUSHX SADD SAVE SCAN SCARD ' +
    'SCRIPT SDIFF SDIFFSTORE SELECT SET SETBIT SETEX SETNX SETRANGE SHUTDOWN SINTER SINTERCARD SINTERSTORE ' +
    'SISMEMBER SLAVEOF SLOWLOG SMEMBERS SMISMEMBER SMOVE SORT SORT_RO SPOP SPUBLISH SRANDMEMBER SREM SSCAN ' +
    'SSUBSCRIBE STRLEN SUBSCRIBE SUBSTR SUNION SUNIONSTORE SUNSUBSCRIBE SWAPDB SYNC TIME TOUCH TTL TYPE UNLINK ' +
    'UNSUBSCRIBE UNWATCH WAIT WATCH XACK XADD XAUTOCLAIM XCLAIM XDEL XGROUP XINFO XLEN XPENDING XRANGE XREAD ' +
    'XREADGROUP XREVRANGE XSETID XTRIM ZADD ZCARD ZCOUNT ZDIFF ZDIFFSTORE ZINCRBY ZINTER ZINTERCARD ' +
    'ZINTERSTORE ZLEXCOUNT ZMPOP ZMSCORE ZPOPMAX ZPOPMIN ZRANDMEMBER ZRANGE ZRANGEBYLEX ZRANGEBYSCORE ' +
    'ZRANGESTORE ZRANK ZREM ZREMRANGEBYLEX ZREMRANGEBYRANK ZREMRANGEBYSCORE ZREVRANGE ZREVRANGEBYLEX ' +
    'ZREVRANGEBYSCORE ZREVRANK ZSCAN ZSCORE ZUNION ZUNIONSTORE ' +
    // Redis 7.2 to 8.0
    'WAITAOF HEXPIRE HPEXPIRE HEXPIREAT HPEXPIREAT HTTL HPTTL HEXPIRETIME HPEXPIRETIME HPERSIST HGETDEL HGETEX HSETEX'
  ).split(' '),
);

/** Commands whose first argument is no key (or whose key-like argument is a channel or pattern). */
const NO_KEY = new Set(
  (
    'ACL ASKING AUTH BGREWRITEAOF BGSAVE CLIENT CLUSTER COMMAND CONFIG DBSIZE DEBUG DISCARD ECHO EXEC FAILOVER ' +
    'FLUSHALL FLUSHDB FUNCTION HELLO INFO KEYS LASTSAVE LATENCY LOLWUT MODULE MONITOR MULTI PFSELFTEST PING ' +
    'PSUBSCRIBE PSYNC PUBLISH PUBSUB PUNSUBSCRIBE QUIT RANDOMKEY READONLY READWRITE REPLCONF REPLICAOF RESET ROLE ' +
    'SAVE SCAN SCRIPT SELECT SHUTDOWN SLAVEOF SLOWLOG SPUBLISH SSUBSCRIBE SUBSCRIBE SUNSUBSCRIBE SWAPDB SYNC TIME ' +
    'UNSUBSCRIBE UNWATCH WAIT WAITAOF'
  ).split(' '),
);
/** numkeys first, then the keys. */
const NUMKEYS_FIRST = ['LMPOP', 'ZMPOP', 'SINTERCARD', 'ZINTERCARD', 'ZINTER', 'ZUNION', 'ZDIFF'];
/** A subcommand first, then the key. */
const SUB_FIRST = ['OBJECT', 'MEMORY', 'XINFO', 'XGROUP', 'BITOP'];

/** Where a command's first key is, for the commands whose first argument is not it. */
const enum Rule {
  None = -1,
  Second = 1,
  Third = 2,
  /** EVAL's numkeys, then the keys */
  Script = 10,
  /** after the STREAMS token */
  Streams = 11,
}
/** One lookup per command (not a Set per rule and a switch of string comparisons). */
const RULES = new Map<string, Rule>();
for (const op of NO_KEY) RULES.set(op, Rule.None);
for (const op of [...NUMKEYS_FIRST, ...SUB_FIRST]) RULES.set(op, Rule.Second);
for (const op of ['BLMPOP', 'BZMPOP']) RULES.set(op, Rule.Third);
for (const op of ['EVAL', 'EVALSHA', 'EVAL_RO', 'EVALSHA_RO', 'FCALL', 'FCALL_RO']) RULES.set(op, Rule.Script);
for (const op of ['XREAD', 'XREADGROUP']) RULES.set(op, Rule.Streams);

/**
 * Operations by the names they were sent as: ioredis names a command in lower case (`get`),
 * node-redis in upper case, each a constant string, so a lookup replaces an upper-casing and a
 * hash of the new string per command. Bounded: an app sending names of its own, in every spelling,
 * fills it up to MAX_CACHED and is then looked up the long way.
 */
const opByName = new Map<string, string>();
const MAX_CACHED = 512;

/** A name's operation, worked out: upper-case if Redis knows it, else `OTHER`. */
function knownOperation(s: string): string {
  if (s.length === 0 || s.length > 24) return 'OTHER';
  const up = s.toUpperCase();
  return KNOWN.has(up) ? up : 'OTHER';
}

/** The bounded operation of a command name: upper-case if Redis knows it, else `OTHER`. */
export function operationOf(name: unknown): string {
  if (typeof name !== 'string') return knownOperation(Buffer.isBuffer(name) ? name.toString('latin1') : '');
  const hit = opByName.get(name);
  if (hit !== undefined) return hit;
  const op = knownOperation(name);
  if (opByName.size < MAX_CACHED) opByName.set(name, op);
  return op;
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\x00-\x1f\x7f]/g;

/**
 * Control characters replaced; the same string when it has none (the usual key: no copy). A test
 * with a RegExp, not a loop of charCodeAt: ioredis 6 subclasses String when it loads (its RESP3
 * VerbatimString), which turns String.prototype into a dictionary, and from then on every string
 * method call in the process is a generic lookup (about 0.1 µs a character here). node-redis 6
 * has a VerbatimString too, but String.prototype stayed fast through its connect.
 */
function printable(s: string): string {
  return CONTROL.test(s) ? s.replace(CONTROLS, '?') : s;
}

function keyText(v: unknown): string | undefined {
  let s: string;
  if (typeof v === 'string') s = v;
  else if (Buffer.isBuffer(v)) s = v.toString('utf8', 0, Math.min(v.length, KEY_LIMIT * 4));
  else if (typeof v === 'number' || typeof v === 'bigint') s = String(v);
  else return undefined;
  if (s.length > KEY_LIMIT) s = s.slice(0, KEY_LIMIT) + '…';
  return printable(s);
}

/** The first key of a command: `args[from]` is its first argument after the name. */
export function firstKey(op: string, args: ArrayLike<unknown>, from: number): string | undefined {
  const rule = RULES.get(op);
  const n = args.length;
  if (rule === undefined) return from < n ? keyText(args[from]) : undefined;
  switch (rule) {
    case Rule.None:
      return undefined;
    case Rule.Second:
    case Rule.Third:
      return from + rule < n ? keyText(args[from + rule]) : undefined;
    case Rule.Script:
      return Number(keyText(from + 1 < n ? args[from + 1] : undefined)) > 0
        ? keyText(from + 2 < n ? args[from + 2] : undefined)
        : undefined;
    case Rule.Streams:
      for (let i = from; i < n - 1; i++) {
        if (String(keyText(args[i])).toUpperCase() === 'STREAMS') return keyText(args[i + 1]);
      }
      return undefined;
  }
}

/**
 * `GET user:42`: the operation (or the name an OTHER was sent as, bounded) and the first key.
 * `op`: operationOf(name), when the caller has it already.
 */
export function describe(name: unknown, args: ArrayLike<unknown>, from: number, op = operationOf(name)): string {
  const shown = op === 'OTHER' ? (keyText(name) ?? 'OTHER').toUpperCase() : op;
  const key = firstKey(op, args, from);
  return key === undefined ? shown : shown + ' ' + key;
}

/** `PIPELINE 3: GET a, SET b, INCR c`: the batch, its count and its first MAX_LISTED commands. */
export function describeBatch(kind: 'PIPELINE' | 'MULTI', parts: string[], count: number): string {
  const listed = parts.slice(0, MAX_LISTED).join(', ');
  return `${kind} ${count}${listed ? `: ${listed}` : ''}${count > MAX_LISTED ? ', …' : ''}`;
}

/**
 * Whether a batch's replies hold an error: a pipeline answers each command's error in its place
 * (ioredis as `[error, reply]` pairs), and a MULTI's EXEC answers the errors of the commands that
 * failed as it ran among the others' replies. Two levels deep (an ioredis EXEC pair's array).
 */
export function repliesFailed(value: unknown, depth = 0): boolean {
  if (!Array.isArray(value)) return false;
  for (let i = 0; i < value.length; i++) {
    const v: unknown = value[i];
    if (v instanceof Error) return true;
    if (depth < 2 && Array.isArray(v) && repliesFailed(v, depth + 1)) return true;
  }
  return false;
}

/**
 * One command or batch in flight: the event itself, published once at its end (one object per
 * command, not a record and then an event). `duration` is -1 until then.
 */
export type RedisPending = DbQueryEvent & { commands: number };

export function pending(
  requestId: string | undefined,
  text: string,
  operation: string,
  commands: number,
): RedisPending {
  // The same fields in the same order as every other db.query event: the sinks' code stays monomorphic.
  return { requestId, system: 'redis', text, operation, error: false, start: now(), duration: -1, commands };
}

/** Publishes the end of a command or batch (once); never throws. */
export function end(p: RedisPending, error: boolean): void {
  if (p.duration >= 0) return;
  p.error = error;
  p.duration = now() - p.start;
  try {
    channels.dbQuery.publish(p);
  } catch (e) {
    log.warnOnce('redis-end', `redis: recording a command failed: ${(e as Error).message}`);
  }
}
