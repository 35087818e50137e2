/**
 * koa-compose 3 and 4 (Koa's middleware chain): every error a Koa middleware throws or rejects
 * with is captured as the error the request ends in (src/errors.ts captureError), also when an
 * upstream middleware of the app catches it and answers 500 itself, telling no one.
 *
 * How, without a frame of the agent's in any `err.stack`: the errors pass through one place,
 * compose's `dispatch`, which calls each middleware and hands its promise to the one before. A
 * wrapper there would sit on the stack of every error a middleware makes, and a copy of dispatch
 * in the agent's file would show the agent's path where koa-compose's frames were. So Koa gets
 * koa-compose's own source, compiled again under its own file name, with two additions that leave
 * every call's line and column where they were:
 * - after the `Promise.resolve(fn(context, …))` that calls a middleware, on the same line:
 *   `.then(undefined, rejected)`, where `rejected` captures and throws the error on;
 * - in the `catch (err)` of a middleware's synchronous throw: `Promise.reject(caught(err))`, where
 *   `caught` captures and returns it.
 * The middleware's own promise stays single-handed (one reaction, the `.then`), so V8 still walks
 * it for the `at async …` frames of errors made after an await (a second reaction on it would end
 * them). The source is checked before it is used: exactly one of each of the two places, or the
 * module is left as it was (one line, `koa-compose: patching failed`). Koa gets the copy by
 * `require` (src/registry.ts `replace`); the copy captures only while the agent runs.
 * Cost: one more promise and one more microtask per middleware per request, on the success path too.
 * Limitations: an app that composes with a compose of its own (Koa 3's `compose` option) is not
 * seen; errors Koa itself makes (`next() called multiple times`) are not captured here, but reach
 * Koa's `error` event (patches/koa.ts).
 */
import * as vm from 'node:vm';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { captureError } from '../src/errors';
import { log } from '../src/log';
import { fault } from '../src/fault';
import type { Fn } from '../src/shim';
import type { PatchDefinition } from '../src/registry';

let active = false;
const copies = new WeakMap<object, unknown>();

/** A middleware's promise rejected: captured, and passed on as it was. */
function rejected(err: unknown): never {
  if (active) capture(err);
  throw err;
}

/** A middleware threw synchronously: captured, and handed back for compose's own Promise.reject. */
function caught(err: unknown): unknown {
  if (active) capture(err);
  return err;
}

function capture(err: unknown): void {
  try {
    fault('koa-compose');
    captureError(err);
  } catch (e) {
    log.warnOnce('koa-compose-capture', `koa-compose: capturing an error failed: ${(e as Error).message}`);
  }
}

const CALL = /return Promise\.resolve\(fn\(context, /g;
const CATCH = /\} catch \(err\) \{(\s*)return Promise\.reject\(err\)/g;

/**
 * koa-compose's source with the two additions, or an Error saying why it cannot be used. Lines and
 * columns before each addition are untouched, and no line is added.
 */
export function rewrite(source: string): string | Error {
  const calls = [...source.matchAll(CALL)];
  const catches = [...source.matchAll(CATCH)];
  if (calls.length !== 1 || catches.length !== 1)
    return new Error(`its source has ${calls.length} middleware calls and ${catches.length} catches, not one of each`);
  const call = calls[0]!.index;
  const at = catches[0]!.index;
  if (!(at > call)) return new Error('its catch is not after the middleware call');
  // The call's statement ends at the last `)` before the catch's `}` (a `;` may follow it).
  const end = source.lastIndexOf(')', at);
  if (end < call) return new Error('the middleware call has no end');
  const withThen = source.slice(0, end + 1) + '.then(undefined, __hatchRejected)' + source.slice(end + 1, at);
  const rest = source
    .slice(at)
    .replace(CATCH, (_m, space: string) => `} catch (err) {${space}return Promise.reject(__hatchCaught(err))`);
  return withThen + rest;
}

/** The file koa-compose's exports came from (require's cache), or undefined. */
function fileOf(exports: unknown): string | undefined {
  for (const [file, m] of Object.entries(require.cache)) if (m?.exports === exports) return file;
  return undefined;
}

function compile(exports: Fn): unknown {
  const file = fileOf(exports);
  if (file === undefined) throw new Error('its file is not in the require cache');
  const source = rewrite(fs.readFileSync(file, 'utf8'));
  if (source instanceof Error) throw source;
  const params = ['exports', 'require', 'module', '__filename', '__dirname', '__hatchRejected', '__hatchCaught'];
  const fn = vm.compileFunction(source, params, { filename: file });
  const module = { exports: {} as unknown };
  fn.call(module.exports, module.exports, createRequire(file), module, file, path.dirname(file), rejected, caught);
  if (typeof module.exports !== 'function') throw new Error('its copy does not export a function');
  return module.exports;
}

export const koaCompose: PatchDefinition<Fn> = {
  module: 'koa-compose',
  feature: 'koa',
  versions: ['3.0.0', '5.0.0'],
  patch(exports) {
    if (typeof exports !== 'function') throw new Error('koa-compose does not export a function');
    if (!copies.has(exports)) copies.set(exports, compile(exports));
    active = true;
  },
  unpatch() {
    active = false;
  },
  replace(exports) {
    return copies.get(exports) ?? exports;
  },
};
