// Runtime metrics under `node -r hatch-agent`: event-loop delay, heap, RSS, GC pauses and active
// handles reach a real UDP listener as `runtime.*` gauges and timings, and sampling never keeps a
// process alive (checked by behaviour: the script ends on its own, nobody kills it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, runScript } from '../support/app.mjs';
import { udpListener, closedUdpPort } from '../support/udp.mjs';

// Forces a major GC now and then (NODE_OPTIONS=--expose-gc), so a GC pause is certain to be seen.
const APP = `
const http = require('node:http');
setInterval(() => { globalThis.gc?.(); }, 50);
const server = http.createServer((req, res) => res.end('ok'));
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

const GAUGES = ['event_loop.delay.p50', 'event_loop.delay.p99', 'event_loop.delay.max', 'heap.used', 'rss', 'active_handles'];

for (const tags of ['none', 'dogstatsd']) {
  test(`runtime gauges and GC pauses arrive over UDP (HATCH_STATSD_TAGS=${tags})`, async () => {
    const udp = await udpListener();
    const app = await startApp(APP, {
      env: {
        HATCH_STATSD: 'on',
        HATCH_STATSD_PORT: String(udp.port),
        HATCH_STATSD_FLUSH_MS: '100',
        HATCH_STATSD_TAGS: tags,
        HATCH_RUNTIME_METRICS_MS: '200',
        NODE_OPTIONS: '--expose-gc',
      },
    });
    try {
      const has = (ls, name, type) => ls.some((l) => new RegExp(`^hatch\\.runtime\\.${name.replace(/\./g, '\\.')}:[0-9.]+\\|${type}$`).test(l));
      // the forced GCs: a major pause, as a timing with its kind in the name or in a tag
      const gc = tags === 'none' ? /^hatch\.runtime\.gc\.pause\.major(:[0-9.]+\|ms)+$/ : /^hatch\.runtime\.gc\.pause:[0-9.:]+\|ms\|#kind:major$/;
      const lines = await udp.waitFor((ls) => GAUGES.every((g) => has(ls, g, 'g')) && ls.some((l) => gc.test(l)), 30000);
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
  const r = await runScript('', { env: { HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(port), HATCH_RUNTIME_METRICS_MS: '100' } });
  assert.equal(r.code, 0);
  assert.equal(r.signal, null);
  assert.equal(r.stderr, '');
});

test('a script that waits a little ends on its own after its timer, with samples taken meanwhile', async () => {
  const udp = await udpListener();
  try {
    const r = await runScript('setTimeout(() => {}, 600);', {
      env: { HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(udp.port), HATCH_STATSD_FLUSH_MS: '100', HATCH_RUNTIME_METRICS_MS: '100' },
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
  const off = await runScript('', { env: { HATCH_STATSD: 'on', HATCH_RUNTIME_METRICS_MS: '0', HATCH_STATSD_PORT: String(await closedUdpPort()) } });
  assert.equal(off.code, 0);
  assert.equal(off.stderr, '');
});
