// What the Redis patches tell about a command (patches/redis/command.ts): a bounded operation, the
// first key by Redis's own rules (not simply the first argument), cut and cleaned, and never a
// value; a batch's text and whether its replies hold an error. Against the built file in dist/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const {
  operationOf,
  firstKey,
  describe,
  describeBatch,
  repliesFailed,
  MAX_KEY,
} = require('../../dist/patches/redis/command.js');

test('operation: a known command upper-cased, anything else OTHER', () => {
  assert.equal(operationOf('get'), 'GET');
  assert.equal(operationOf('HSET'), 'HSET');
  assert.equal(operationOf(Buffer.from('evalsha')), 'EVALSHA');
  for (const bad of ['JSON.GET', 'FT.SEARCH', 'nosuch', '', 'get '.repeat(10), undefined, 42, null])
    assert.equal(operationOf(bad), 'OTHER', String(bad));
});

test('first key: where each kind of command keeps it', () => {
  const key = (...args) => firstKey(operationOf(args[0]), args, 1);
  assert.equal(key('GET', 'user:1'), 'user:1');
  assert.equal(key('SET', 'user:1', 'secret'), 'user:1');
  assert.equal(key('EVALSHA', 'abc123', '2', 'k1', 'k2', 'arg'), 'k1');
  assert.equal(key('EVAL', 'return 1', '0', 'not-a-key'), undefined);
  assert.equal(key('XREAD', 'COUNT', '2', 'STREAMS', 's1', 's2', '0', '0'), 's1');
  assert.equal(key('xreadgroup', 'GROUP', 'g', 'c', 'streams', 's1', '>'), 's1');
  assert.equal(key('BLMPOP', '1', '2', 'l1', 'l2', 'LEFT'), 'l1');
  assert.equal(key('LMPOP', '1', 'l1', 'LEFT'), 'l1');
  assert.equal(key('OBJECT', 'ENCODING', 'k'), 'k');
  assert.equal(key('BITOP', 'AND', 'dest', 'a', 'b'), 'dest');
  for (const none of [
    ['PING'],
    ['AUTH', 'user', 'password'],
    ['PUBLISH', 'chan', 'message'],
    ['KEYS', 'user:*'],
    ['CLIENT', 'SETNAME', 'x'],
    ['SELECT', '2'],
  ])
    assert.equal(key(...none), undefined, none.join(' '));
});

test('a key is cut at MAX_KEY characters and its control characters replaced; values never shown', () => {
  const long = 'k'.repeat(200);
  assert.equal(describe('GET', ['GET', long], 1), `GET ${'k'.repeat(MAX_KEY)}…`);
  assert.equal(describe('get', ['get', 'a\r\nb\x00'], 1), 'GET a??b?');
  assert.equal(describe('SET', ['SET', 'k', 'the-value'], 1), 'SET k');
  assert.equal(describe('HSET', ['HSET', 'h', 'field', 'the-value'], 1), 'HSET h');
  assert.equal(describe('JSON.SET', ['JSON.SET', 'doc', '$', '{"a":1}'], 1), 'JSON.SET doc');
  assert.equal(describe('AUTH', ['AUTH', 'secret-password'], 1), 'AUTH');
  assert.equal(describe('GET', ['GET', Buffer.from('buf-key')], 1), 'GET buf-key');
});

test('a batch lists its count and its first five commands; its replies fail on any error', () => {
  assert.equal(describeBatch('MULTI', ['SET a', 'GET a'], 2), 'MULTI 2: SET a, GET a');
  assert.equal(describeBatch('PIPELINE', ['A', 'B', 'C', 'D', 'E', 'F'], 7), 'PIPELINE 7: A, B, C, D, E, …');
  assert.equal(describeBatch('PIPELINE', [], 0), 'PIPELINE 0');
  assert.equal(repliesFailed(['OK', 1, null]), false);
  assert.equal(repliesFailed(['OK', new Error('ERR')]), true);
  assert.equal(
    repliesFailed([
      [null, 'OK'],
      [new Error('ERR'), null],
    ]),
    true,
  ); // ioredis pairs
  assert.equal(
    repliesFailed([
      [null, 'OK'],
      [null, ['OK', new Error('ERR')]],
    ]),
    true,
  ); // ioredis MULTI's EXEC
  assert.equal(repliesFailed('OK'), false);
});
