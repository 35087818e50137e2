#!/usr/bin/env node
// Per-call cost of hatch-agent's wrappers, with a plain Node benchmark loop: in instructions per
// call counted by valgrind's callgrind (--instructions; the figure this shared VM cannot disturb),
// or in ns of CPU time per call.
//   node bench/wrappers.mjs [--instructions] [--calls N] [--only TEXT] [--no-write]   (after `npm install --prefix bench`)
// --only runs the cases whose name holds TEXT (`--only scope`), and writes nothing to RESULTS.md.
// The parent binds a local StatsD receiver and runs the measuring child with the agent preloaded
// and every feature on. The child measures each wrapped function against the original the
// wrapper holds (Symbol.for('hatch-agent.original')), first with the sinks subscribed to the
// diagnostics channels (StatsD, flight recorder, recent requests), then after agent.stop() has
// unsubscribed them (the wrappers stay in place and fall through to "no subscribers").
// What one call is, per wrapper (the same work for wrapped and original, so the difference is the wrapper's):
// - pg Client.query: a callback query queued on a client that is not connected, then completed by
//   pg's own Query#handleReadyForQuery (no network in the loop), 5 to a scope: inside a request whose
//   end is published as the http patch publishes it (the requests store files it), and inside a
//   withRequestId scope, which no record ends (the store holds its queries until MAX_PENDING later
//   scopes have pushed them out). Each call's figure includes its fifth of the scope's own cost;
//   the difference is the wrapper's. (http servers need no wrapper: the context is entered from
//   Node's http.server.request.start channel, and the request path is measured in bench/instructions.mjs.)
// - http.request: a request over an in-memory Duplex (createConnection), destroyed at once; its
//   'close' is let through (setImmediate every 500 calls) so the timing's end is in the loop;
// - render: ejs.renderFile of a cached template (callback form), and a function from ejs.compile.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as cg from './callgrind.mjs';
import { benchDir, benchRequire, opt, statsdValueCount } from './variants.mjs';
import * as dgram from 'node:dgram';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(benchDir, '..');
const argv = process.argv;
const INSTRUCTIONS = argv.includes('--instructions');
const CALLS = Number(opt('calls', INSTRUCTIONS ? 20_000 : 200_000));
const SAMPLES = INSTRUCTIONS ? 3 : 7;
const UNIT = INSTRUCTIONS ? 'instructions' : 'ns';
const ONLY = opt('only', '');

if (process.env.HATCH_BENCH_CHILD !== '1') {
  const sink = dgram.createSocket('udp4');
  let values = 0;
  sink.on('message', (m) => (values += statsdValueCount(m)));
  await new Promise((r) => sink.bind(0, '127.0.0.1', r));
  const dir = INSTRUCTIONS ? cg.outputDir() : null;
  const args = [
    process.execPath,
    '--expose-gc',
    '-r',
    path.join(root, 'dist/src/index.js'),
    fileURLToPath(import.meta.url),
    ...argv.slice(2),
  ];
  const [cmd, cmdArgs] = cg.wrap(dir, args);
  const child = spawn(cmd, cmdArgs, {
    env: {
      ...process.env,
      HATCH_BENCH_CHILD: '1',
      HATCH_STATSD: 'on',
      HATCH_STATSD_PORT: String(sink.address().port),
      HATCH_TOKEN: 'bench-token-0123456789abcdef',
      HATCH_FLIGHT_RECORDER: path.join(os.tmpdir(), `hatch-bench-recorder-${process.pid}.jsonl`),
      ...cg.env(dir),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const code = await new Promise((r) => child.on('exit', r));
  sink.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  if (code !== 0) throw new Error(`child exited ${code}`);
  const rows = JSON.parse(out);
  const f = (x) => x.toFixed(0);
  // A difference below the noise can come out negative: printed with its own sign, not as "+-".
  const d = (x) => (x < 0 ? `-${f(-x)}` : `+${f(x)}`);
  const table = rows.map(
    (r) =>
      `| ${r.name} | ${f(r.original)} | ${f(r.wrapped)} | **${d(r.wrapped - r.original)}** | ${f(r.originalOff)} | ${f(r.wrappedOff)} | **${d(r.wrappedOff - r.originalOff)}** |`,
  );
  const report = `## Per-call cost of each wrapper

- date: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; ${os.cpus().length} × ${os.cpus()[0].model}, shared VM; Node ${process.version}
- command: \`node bench/wrappers.mjs${INSTRUCTIONS ? ' --instructions' : ''} --calls ${CALLS}\` (plain loop, ${CALLS} calls per sample, median of ${SAMPLES} samples after a warm-up; ${INSTRUCTIONS ? 'instructions of the main thread per call, what it spent compiling and collecting garbage left out, counted by valgrind callgrind with the JIT on' : 'ns of process CPU time (user+sys) per call'})
- "subscribed": the agent running with every sink (StatsD to a local receiver, ${values} values received; flight recorder;
  recent-requests store); "no subscribers": after \`agent.stop()\`, wrappers still in place, nothing listening on the channels.
- "original" is the function the wrapper holds, called the same way, in the same process; the ns columns include the
  work of the call itself (see the header of bench/wrappers.mjs), so the cost of the wrapper is the difference.

| call | original ${UNIT} | wrapped ${UNIT} (subscribed) | wrapper cost | original ${UNIT} | wrapped ${UNIT} (no subscribers) | wrapper cost |
|---|---|---|---|---|---|---|
${table.join('\n')}

Every case is a single call in a tight loop, far faster than any server: the StatsD sink keeps at most 100,000 values
of one series per flush interval and drops the rest (with one warning line), and an event it drops costs slightly less
than one it keeps. The per-request costs under load, where GC and the kernel weigh too, are in the overhead sections.

${INSTRUCTIONS ? 'Instruction counts do not depend on the load of the machine. GC is left out: a scavenge falls in one sample or the next, and moved a case by up to 3 k a call between runs; what a wrapper makes survive a scavenge is not in these figures.' : 'Noise: samples of the same loop vary by roughly ±10-20%, so differences below ~100 ns are within noise.'}
`;
  // Timed and counted results are kept side by side: each mode has its own section.
  if (!argv.includes('--no-write') && ONLY === '')
    (await import('./results-file.mjs')).writeSection(INSTRUCTIONS ? 'wrappers-instructions' : 'wrappers', report);
  console.log(report);
} else {
  await child();
}

async function child() {
  const require = benchRequire;
  const http = require('node:http');
  const { Duplex } = require('node:stream');
  const pg = require('pg');
  const ejs = require('ejs');
  const hatch = require(path.join(root, 'dist/src/index.js'));
  const ORIGINAL = Symbol.for('hatch-agent.original');
  const orig = (fn) => {
    if (typeof fn[ORIGINAL] !== 'function') throw new Error(`${fn.name} is not wrapped`);
    return fn[ORIGINAL];
  };
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

  // Each case: setup() -> { run(fn) } where fn is the function under test; async ones await.
  const counter = cg.inProcess();
  async function sample(loop, n) {
    if (counter) return (await counter.ownWork(() => loop(n))) / n;
    // CPU time of this process, not wall time: on a starved shared VM wall time mostly measures
    // the time the process was not scheduled.
    const c = process.cpuUsage();
    await loop(n);
    const d = process.cpuUsage(c);
    return ((d.user + d.system) * 1000) / n;
  }
  async function measure(loop) {
    await loop(Math.max(1000, CALLS / 4)); // warm-up, not measured (nor counted: each switch of counting is slow)
    globalThis.gc();
    const xs = [];
    for (let i = 0; i < SAMPLES; i++) xs.push(await sample(loop, CALLS));
    return median(xs);
  }

  // pg Client.query, 5 queries per scope, as a /db request or a worker's message makes a few. In a
  // request: its end is published as the http patch publishes it (src/bus.ts HttpServerEvent), so
  // the requests store files its record. In a withRequestId scope (a worker's, README): no record
  // ends it, so the store holds the scope's queries until MAX_PENDING later scopes push them out.
  const client = new pg.Client({ host: '127.0.0.1', port: 1 }); // never connected
  const queue = () => client._queryQueue ?? client.queryQueue;
  const noop = () => {};
  const served = require('node:diagnostics_channel').channel('hatch:http.server');
  const ids = Array.from({ length: 1000 }, (_, i) => `bench-${100000 + i}`);
  const pgLoop = (ends) => (query) => async (n) => {
    for (let r = 0; r < n / 5; r++) {
      const id = ids[r % ids.length];
      const start = performance.now();
      hatch.withRequestId(id, () => {
        for (let i = 0; i < 5; i++) {
          query.call(client, 'SELECT 1 AS one', noop);
          queue().pop().handleReadyForQuery(undefined);
        }
      });
      if (ends && served.hasSubscribers) {
        const duration = performance.now() - start;
        served.publish({
          requestId: id,
          method: 'GET',
          route: '/db',
          path: '/db',
          statusCode: 200,
          aborted: false,
          start,
          duration,
        });
      }
    }
  };

  // http.request
  const duplex = () =>
    new Duplex({
      read() {},
      write(_c, _e, cb) {
        cb();
      },
    });
  const opts = { host: '127.0.0.1', port: 9, path: '/x', agent: false, createConnection: duplex };
  const requestLoop = (request) => async (n) => {
    for (let i = 0; i < n; i++) {
      const r = request(opts);
      r.on('error', noop);
      r.destroy();
      if (i % 500 === 499) await new Promise((res) => setImmediate(res));
    }
    await new Promise((res) => setImmediate(res));
  };

  // render
  const file = path.join(benchDir, 'views', 'page.ejs');
  const data = {
    title: 'Items',
    items: Array.from({ length: 20 }, (_, i) => ({ id: i, name: `item <${i}>`, price: i * 1.5 })),
  };
  const renderFileLoop = (renderFile) => async (n) => {
    for (let i = 0; i < n / 10; i++) renderFile.call(ejs, file, data, { cache: true }, noop);
  };
  const compiledWrapped = ejs.compile('<p><%= title %></p>', { filename: path.join(benchDir, 'views', 'inline.ejs') });
  const compiledOriginal = orig(ejs.compile).call(ejs, '<p><%= title %></p>', {
    filename: path.join(benchDir, 'views', 'inline.ejs'),
  });
  const compiledLoop = (fn) => async (n) => {
    for (let i = 0; i < n; i++) fn(data);
  };

  const all = [
    ['pg `Client.query` (callback, 5 per request, the request filed)', pgLoop(true), pg.Client.prototype.query, 1],
    ['pg `Client.query` (callback, 5 per `withRequestId` scope)', pgLoop(false), pg.Client.prototype.query, 1],
    ['`http.request` (+ its `ClientRequest.emit`s)', requestLoop, http.request, 1],
    ['ejs `renderFile` (cached template, 20 items)', renderFileLoop, ejs.renderFile, 10],
    ['ejs compiled template function', compiledLoop, null, 1],
  ];
  const cases = all.filter(([name]) => name.includes(ONLY));
  if (cases.length === 0) throw new Error(`--only ${ONLY}: no case's name holds it`);
  const rows = cases.map(([name]) => ({ name }));
  for (const phase of ['on', 'off']) {
    if (phase === 'off') globalThis[Symbol.for('hatch-agent.agent')].stop();
    for (let i = 0; i < cases.length; i++) {
      const [, loop, fn, per] = cases[i];
      const wrapped = fn ? loop(fn) : loop(compiledWrapped);
      const original = fn ? loop(orig(fn)) : loop(compiledOriginal);
      // renderFile runs n/10 calls per loop of n: scale back to ns per call.
      const o = (await measure(original)) * per;
      const w = (await measure(wrapped)) * per;
      Object.assign(rows[i], phase === 'on' ? { original: o, wrapped: w } : { originalOff: o, wrappedOff: w });
      process.stderr.write(
        `${phase} ${cases[i][0]}: original ${o.toFixed(0)} ${UNIT}, wrapped ${w.toFixed(0)} ${UNIT}\n`,
      );
    }
  }
  process.stdout.write(JSON.stringify(rows));
}
