// The floor: the least an agent that carries a request ID through async context can do. Each
// request runs in AsyncLocalStorage.run with a store of its own, and nothing else happens: no ID
// is made or echoed, nothing is timed or sent. What this costs, every such agent pays (on Node 20
// and 22 AsyncLocalStorage is an async hook called at every promise, tick and socket write; on
// Node 24 it is an AsyncContextFrame). bench/overhead.mjs runs it as the variant `als-floor`.
'use strict';
const { AsyncLocalStorage } = require('node:async_hooks');
const http = require('node:http');

const als = new AsyncLocalStorage();
const emit = http.Server.prototype.emit;
http.Server.prototype.emit = function (event) {
  if (event !== 'request') return emit.apply(this, arguments);
  return als.run({ id: '' }, Reflect.apply, emit, this, arguments);
};
