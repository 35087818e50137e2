// The one table of intended differences between a library under the agent and the same library
// without it, read by transparency.test.mjs and shown in README ("Intended differences"). Any other
// difference the test finds fails it.
// Each entry: `kind` (what differs, as the test names it), `where` (a RegExp over the place: the
// module, then the path the walk took or what the app saw), and `why`. An entry whose `why` starts
// with "to mark" is a known gap: a wrapper made outside src/shim.ts markWrapper, in a file to be
// changed, listed so that it stays visible until it is fixed.
export const INTENDED = [
  {
    kind: 'toString',
    where: /./,
    why: "A wrapper's source is its own. No patched library reads toString() of a function the agent replaced: Express and Fastify read handlers' `length` (kept), Koa's generator check reads the app's middleware, which is never replaced.",
  },
  {
    kind: 'own key order',
    where: /^(app )?pug /,
    why: "A sloppy-mode original (pug's compiled template) lists `arguments`, `caller` before `prototype`; the wrapper, a strict function, has its `prototype` first. The keys and their descriptors are the same.",
  },
  {
    kind: 'added',
    where: /^http2 Http2Server\.prototype\.emit$/,
    why: "`emit` becomes an own property of http2's server classes' prototypes (the original stays on EventEmitter.prototype): wrapping EventEmitter's would touch every emitter in the process. (http and https servers need no wrapper: the request context is entered from Node's http.server.request.start channel.)",
  },
  {
    kind: 'added',
    where: /^http ClientRequest\.prototype\.emit$/,
    why: "`ClientRequest.prototype.emit`, for the same reason: the client's timing sees 'response' and 'close' without adding listeners.",
  },
  {
    kind: 'added',
    where:
      /^http ServerResponse\.prototype\.(_storeHeader|getHeader|hasHeader|getHeaders|getHeaderNames|getRawHeaderNames|removeHeader)$/,
    why: 'The response carries `x-request-id`: these OutgoingMessage methods become own properties of ServerResponse.prototype, so the echoed header is written and seen without setHeader (and ClientRequest, also an OutgoingMessage, is untouched).',
  },
  {
    kind: 'added',
    where: /^koa Application\.prototype\.emit$/,
    why: "Koa reports a request's error with `app.emit('error', err, ctx)`: Koa's Application.prototype gets its own `emit`, which captures that error for the request's record (the original stays on EventEmitter.prototype, shared by every emitter).",
  },
  {
    kind: 'added',
    where: /^winston (winston\.Logger\.prototype|logger<\d+>)\.write$/,
    why: "Records get `requestId`: Logger.prototype gets its own `write` (the original stays on stream.Transform's prototype, shared by every stream).",
  },
  {
    kind: 'added',
    where: /^bullmq Queue\.prototype\.waitUntilReady$/,
    why: "Queue's constructor calls waitUntilReady: the agent announces the queue there for the hatches (patches/bullmq/index.ts); the original stays on QueueBase.prototype",
  },
  {
    kind: 'identity',
    where: /^pg Query\.callback is the app callback$/,
    why: "to mark: patches/pg/client.ts plan() hands pg a bound callback (src/context.ts bindContext) for a Submittable; pg stores it as `query.callback`, where the app sees the agent's function in place of its own.",
  },
];
