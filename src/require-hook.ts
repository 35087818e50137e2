/**
 * require-in-the-middle, without the `debug` package it loads for its own debug lines: `debug`
 * (with tty and supports-color) was 5 of the 6 ms that loading the hook took, a fifth of the agent's
 * start-up. Only the require that require-in-the-middle's own file makes is answered, with a
 * silent logger, and nothing is put in the module cache: the app's `require('debug')` is untouched.
 * With DEBUG set (someone wants debug lines) it is loaded as it is.
 */
export function loadRequireInTheMiddle(): typeof import('require-in-the-middle') {
  if (process.env.DEBUG) return require('require-in-the-middle') as typeof import('require-in-the-middle');
  const Module = require('node:module') as {
    _load: (request: string, parent: { filename?: string } | undefined, isMain: boolean) => unknown;
  };
  const load = Module._load;
  const silent = () => Object.assign(() => {}, { enabled: false });
  Module._load = function (this: unknown, request: string, parent: { filename?: string } | undefined) {
    if (
      request === 'debug' &&
      typeof parent?.filename === 'string' &&
      /[\\/]require-in-the-middle[\\/]index\.js$/.test(parent.filename)
    )
      return silent;
    return Reflect.apply(load, this, arguments);
  } as typeof Module._load;
  try {
    return require('require-in-the-middle') as typeof import('require-in-the-middle');
  } finally {
    Module._load = load;
  }
}
