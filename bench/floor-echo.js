// The floor (bench/floor.js) and an echoed request ID: each request runs in AsyncLocalStorage.run
// and its response carries `x-request-id` with a 36-character ID, one fixed string (no ID is made,
// read or checked). An agent that echoes the ID, as hatch-agent does, sends these bytes on every
// response, and the client reads them: this variant shows what the echo alone costs, on both sides
// of the connection, apart from the agent's own work. bench/overhead.mjs runs it as `als-floor/echo`
// (with `--only`).
'use strict';
const { AsyncLocalStorage } = require('node:async_hooks');
const http = require('node:http');

const als = new AsyncLocalStorage();
const emit = http.Server.prototype.emit;
const ID = '0b7a6c1e-2f3d-4c5b-8a9e-1f2d3c4b5a6e';
http.Server.prototype.emit = function (event, req, res) {
  if (event !== 'request') return emit.apply(this, arguments);
  res.setHeader('x-request-id', ID);
  return als.run({ id: ID }, Reflect.apply, emit, this, arguments);
};
