// StatsD into Graphite, the whole chain: an Express app under `node -r hatch-agent`, the Etsy statsd
// daemon with its graphite backend (default names), a real carbon-cache, and the whisper files read
// back with whisper-fetch. Checks the names README gives (stats.timers.hatch.http.server.GET.users_id.200.*,
// stats_counts.hatch.errors.invalid_request_id, ...) and that their values are the test's requests:
// the route's `count` series sums to the requests made, the errors counter to the hostile requests,
// and mean/upper_90 are real durations in ms (the handler waits a known time; nothing the server
// measured can exceed what the client saw).
//
// The daemon flushes every 2 s into a 1 s retention, so no two flushes share a whisper point even when
// one is late (at 1 s, a late flush could round to its successor's second and be overwritten). The
// requests may straddle a flush: counts are summed over the points, durations weighted by count.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, get } from '../support/app.mjs';
import { startStatsdDaemon } from '../support/statsd-daemon.mjs';
import { startCarbon } from '../support/carbon.mjs';

const FLUSH_S = 2;
const STEP_MS = 10; // /users/<n> answers after n * STEP_MS ms
const USERS = [1, 2, 3, 4, 5, 6, 7];
// How much later than the client's round trip the server's timing may end: the agent times a request
// to its response's 'close', which Node emits a tick after 'finish', and the client (another process)
// can have read the whole response before that tick runs. On a busy machine that was 2.5 ms (a full
// run, 2026-12-02: upper 76.8 ms against the client's 74.3 ms). A timing in other units, or from another
// start, is off by far more than this.
const SCHEDULING_MS = 20;
const HOSTILE = 3; // requests to /ping with an X-Request-ID the agent refuses

const APP = `
const express = require('express');
const app = express();
app.get('/users/:id', (req, res) => setTimeout(() => res.json({ id: req.params.id }), ${STEP_MS} * Number(req.params.id)));
app.get('/ping', (req, res) => res.send('pong'));
const server = app.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

// The names a default statsd graphite backend (legacyNamespace) gives the agent's default-prefix metrics.
const TIMER = 'stats.timers.hatch.http.server.GET.users_id.200';
const PING = 'stats.timers.hatch.http.server.GET.ping.200';
const ERRORS_COUNT = 'stats_counts.hatch.errors.invalid_request_id';
const ERRORS_RATE = 'stats.hatch.errors.invalid_request_id';
const FIELDS = ['count', 'mean', 'upper_90', 'mean_90', 'upper', 'lower'];

const sum = (series) => [...series.values()].reduce((a, v) => a + v, 0);

test('the agent -> Etsy statsd (graphite backend) -> carbon-cache: the whisper files hold the route timer and the errors counter', async () => {
  const carbon = await startCarbon();
  let daemon;
  let app;
  try {
    daemon = await startStatsdDaemon({
      flushInterval: FLUSH_S * 1000,
      graphite: { host: '127.0.0.1', port: carbon.port },
    });
    app = await startApp(APP, {
      env: { HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(daemon.port), HATCH_STATSD_FLUSH_MS: '100' },
    });
    const from = Math.floor(Date.now() / 1000) - 5;

    const client = []; // each /users request's round trip as the client saw it, ms
    for (const id of USERS) {
      const t = performance.now();
      const r = await get(`${app.url}/users/${id}`);
      client.push(performance.now() - t);
      assert.equal(r.status, 200);
      assert.equal(r.body, JSON.stringify({ id: String(id) }));
    }
    for (let i = 0; i < HOSTILE; i++) {
      const r = await get(`${app.url}/ping`, { 'x-request-id': '*/ bad' });
      assert.equal(r.status, 200);
    }

    // Every series as a Map(timestamp -> value) of its non-null points.
    const read = async (metric) => {
      const f = await carbon.fetch(metric, from);
      const points = new Map();
      f?.values.forEach((v, i) => {
        if (v !== null) points.set(f.start + i * f.step, v);
      });
      return points;
    };
    const readAll = async () => {
      const s = {};
      for (const k of FIELDS) s[k] = await read(`${TIMER}.${k}`);
      s.pingCount = await read(`${PING}.count`);
      s.errors = await read(ERRORS_COUNT);
      s.errorsRate = await read(ERRORS_RATE);
      return s;
    };
    // A flush's points with values: every field is there (carbon writes one file after another).
    const busy = (s) => [...s.count].filter(([, n]) => n > 0).map(([t]) => t);
    const complete = (s) => busy(s).every((t) => FIELDS.every((k) => s[k].has(t)));

    // carbon writes asynchronously: poll until the values are all in (or a deadline), then assert.
    let s;
    const deadline = Date.now() + 30_000;
    for (;;) {
      s = await readAll();
      if (
        sum(s.count) >= USERS.length &&
        sum(s.pingCount) >= HOSTILE &&
        sum(s.errors) >= HOSTILE &&
        sum(s.errorsRate) * FLUSH_S >= HOSTILE &&
        complete(s)
      )
        break;
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const why = () =>
      `\nwhisper files: ${carbon.metrics().join(' ') || '(none)'}\nseries: ${JSON.stringify(Object.fromEntries(Object.entries(s).map(([k, v]) => [k, Object.fromEntries(v)])))}\nstatsd: ${daemon.output().slice(-3000)}`;

    assert.equal(sum(s.count), USERS.length, `${TIMER}.count over its points${why()}`);
    assert.equal(sum(s.pingCount), HOSTILE, `${PING}.count${why()}`);
    assert.equal(sum(s.errors), HOSTILE, `${ERRORS_COUNT}${why()}`);
    assert.equal(sum(s.errorsRate) * FLUSH_S, HOSTILE, `${ERRORS_RATE} is per second${why()}`);
    assert.ok(complete(s), `a point with requests lacks mean, upper_90, ...${why()}`);

    // The durations are the requests': between the handler's wait and the client's round trip.
    let weighted = 0;
    for (const t of busy(s)) {
      const [n, mean, upper90, mean90, upper, lower] = FIELDS.map((k) => s[k].get(t));
      weighted += mean * n;
      assert.ok(lower >= STEP_MS - 2, `lower ${lower} ms at ${t}: no request took less than ${STEP_MS} ms${why()}`);
      assert.ok(lower <= mean && mean <= upper, `lower <= mean <= upper at ${t}${why()}`);
      assert.ok(
        lower <= mean90 && mean90 <= upper90 && upper90 <= upper,
        `lower <= mean_90 <= upper_90 <= upper at ${t}${why()}`,
      );
    }
    const waited = USERS.reduce((a, id) => a + id * STEP_MS, 0) / USERS.length;
    const seen = client.reduce((a, v) => a + v, 0) / client.length;
    const mean = weighted / USERS.length;
    assert.ok(
      mean >= waited - 2 && mean <= seen + SCHEDULING_MS,
      `mean ${mean} ms: the handlers waited ${waited} ms on average, the client saw ${seen} ms${why()}`,
    );
    const top = Math.max(...busy(s).map((t) => s.upper.get(t)));
    assert.ok(
      top >= Math.max(...USERS) * STEP_MS - 2 && top <= Math.max(...client) + SCHEDULING_MS,
      `upper ${top} ms vs the slowest request (client: ${Math.max(...client)} ms)${why()}`,
    );

    // Templates, never the concrete IDs.
    assert.ok(!carbon.metrics().some((m) => /users_\d/.test(m)), why());
    assert.equal((await daemon.stats()).messages.bad_lines_seen, 0, why());
  } finally {
    await app?.stop();
    await daemon?.stop();
    await carbon.stop();
  }
});
