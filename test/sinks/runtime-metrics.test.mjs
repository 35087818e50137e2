// Runtime metrics under `node -r hatch-agent`: event-loop delay, heap, RSS, GC pauses and active
// handles reach a real UDP listener as `runtime.*` gauges and timings, and sampling never keeps a
// process alive (checked by behaviour: the script ends on its own, nobody kills it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, runScript } from '../support/app.mjs';
import { udpListener, closedUdpPort } from '../support/udp.mjs';

// Forces a major GC now and then (NODE_OPTIONS=--expose-gc) and allocates between them, more than
// the young generation holds (--max-semi-space-size=1), so major and minor GC pauses are certain.
const APP = `
const http = require('node:http');
let keep = [];
setInterval(() => { globalThis.gc?.(); for (let i = 0; i < 200000; i++) keep.push({ i }); keep = []; }, 50);
const server = http.createServer((req, res) => res.end('ok'));
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

const GAUGES = [
  'event_loop.delay.p50',
  'event_loop.delay.p99',
  'event_loop.delay.max',
  'heap.used',
  'rss',
  'active_handles',
];

// a short sampling interval and one longer than a second, where GC entries wait for their sample
for (const [tags, everyMs] of [
  ['none', 200],
  ['dogstatsd', 2500],
]) {
  test(`runtime gauges and GC pauses arrive over UDP (HATCH_STATSD_TAGS=${tags}, every ${everyMs} ms)`, async () => {
    const udp = await udpListener();
    const app = await startApp(APP, {
      env: {
        HATCH_STATSD: 'on',
        HATCH_STATSD_PORT: String(udp.port),
        HATCH_STATSD_FLUSH_MS: '100',
        HATCH_STATSD_TAGS: tags,
        HATCH_RUNTIME_METRICS_MS: String(everyMs),
        NODE_OPTIONS: '--expose-gc --max-semi-space-size=1',
      },
    });
    try {
      const has = (ls, name, type) =>
        ls.some((l) => new RegExp(`^hatch\\.runtime\\.${name.replace(/\./g, '\\.')}:[0-9.]+\\|${type}$`).test(l));
      // the forced GCs and the allocations: major and minor pauses, as timings with their kind in the
      // name or in a tag
      const gc = (kind) =>
        tags === 'none'
          ? new RegExp(`^hatch\\.runtime\\.gc\\.pause\\.${kind}((:[0-9.]+)+\\|ms)+$`)
          : new RegExp(`^hatch\\.runtime\\.gc\\.pause((:[0-9.]+)+)\\|ms\\|#kind:${kind}$`);
      const lines = await udp.waitFor(
        (ls) => GAUGES.every((g) => has(ls, g, 'g')) && ['major', 'minor'].every((k) => ls.some((l) => gc(k).test(l))),
        30000,
      );
      // pauses in milliseconds: a forced full GC of this small heap takes a few ms, so the middle one
      // is far below 250 even on a busy machine; in µs or ns it would not be
      const majors = lines
        .filter((l) => gc('major').test(l))
        .flatMap((l) => [...l.matchAll(/:([0-9.]+)/g)].map((m) => Number(m[1])))
        .sort((a, b) => a - b);
      assert.ok(majors.length > 0 && majors.every((v) => v > 0), `major pauses: ${majors}`);
      assert.ok(majors[Math.floor(majors.length / 2)] < 250, `major pauses in ms: ${majors}`);
      // and they keep coming, sample after sample
      const seen = lines.length;
      await udp.waitFor((ls) => ['major', 'minor'].every((k) => ls.slice(seen).some((l) => gc(k).test(l))), 30000);
      const value = (name) => Number(lines.find((l) => l.startsWith(`hatch.runtime.${name}:`)).split(/[:|]/)[1]);
      assert.ok(value('heap.used') > 1e5, 'heap used in bytes');
      assert.ok(value('rss') >= value('heap.used'), 'rss in bytes');
      assert.ok(value('active_handles') >= 1, 'at least the listening server');
      assert.ok(value('event_loop.delay.max') >= value('event_loop.delay.p50'));
    } finally {
      await app.stop();
      await udp.close();
    }
  });
}

test('a script that does nothing still ends on its own with runtime metrics on', async () => {
  const port = await closedUdpPort();
  const r = await runScript('', {
    env: { HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(port), HATCH_RUNTIME_METRICS_MS: '100' },
  });
  assert.equal(r.code, 0);
  assert.equal(r.signal, null);
  assert.equal(r.stderr, '');
});

test('a script that waits a little ends on its own after its timer, with samples taken meanwhile', async () => {
  const udp = await udpListener();
  try {
    const r = await runScript('setTimeout(() => {}, 600);', {
      env: {
        HATCH_STATSD: 'on',
        HATCH_STATSD_PORT: String(udp.port),
        HATCH_STATSD_FLUSH_MS: '100',
        HATCH_RUNTIME_METRICS_MS: '100',
      },
    });
    assert.equal(r.code, 0);
    assert.equal(r.stderr, '');
    await udp.waitFor((ls) => ls.some((l) => l.startsWith('hatch.runtime.heap.used:')), 10000);
  } finally {
    await udp.close();
  }
});

test('HATCH_RUNTIME_METRICS_MS: a bad value is named on one line, 0 is accepted silently', async () => {
  const bad = await runScript('', { env: { HATCH_RUNTIME_METRICS_MS: '5' } });
  assert.equal(bad.code, 0);
  assert.match(bad.stderr, /HATCH_RUNTIME_METRICS_MS="5" is neither 0 \(off\) nor at least 100; using 100/);
  const off = await runScript('', {
    env: { HATCH_STATSD: 'on', HATCH_RUNTIME_METRICS_MS: '0', HATCH_STATSD_PORT: String(await closedUdpPort()) },
  });
  assert.equal(off.code, 0);
  assert.equal(off.stderr, '');
});
