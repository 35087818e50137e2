// The registry of announced instances (src/instances.ts), in process against the built package:
// what a driver's ResourceKind decides (listed, parts, target), the bound per kind, the weak hold,
// and that nothing is kept (or even listened for) while the hatches are off. Announcements go
// through the real `hatch:instance` channel, as a patch sends them; the kinds here are a driver's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

const require = createRequire(import.meta.url);
const { rememberInstances, resources } = require('../../dist/src/instances.js');
const { channels } = require('../../dist/src/bus.js');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

const announce = (of, instance) => channels.instance.publish({ of, instance });

// A driver with containers (hubs) and their parts (links), as pg has pools and clients.
const link = {
  system: 'test',
  kind: 'link',
  max: 3,
  target: (l) => `${l.host}:${l.port}`,
  listed: (l) => !l.closed,
  probe: async (l) => (l.broken ? Promise.reject(new Error('broken link')) : `link ${l.port} answered`),
};
const hub = {
  system: 'test',
  kind: 'hub',
  max: 2,
  target: () => '',
  listed: () => true,
  parts: (h) => h.links,
  probe: async () => 'hub answered',
};

test('nothing is listened for or kept while the hatches are off', () => {
  assert.equal(channels.instance.hasSubscribers, false);
  rememberInstances(false);
  const early = { host: 'a', port: 1 };
  announce(link, early); // nobody listens: a patch would not even publish
  rememberInstances(true);
  try {
    assert.deepEqual(resources(), []);
    assert.equal(channels.instance.hasSubscribers, true);
  } finally {
    rememberInstances(false);
  }
  assert.equal(channels.instance.hasSubscribers, false);
});

test('listed, parts and target decide the checks; containers first; each probe through its kind', async (t) => {
  rememberInstances(true);
  t.after(() => rememberInstances(false));
  const own = { host: 'db', port: 11 };
  const mine = { host: 'db', port: 12 };
  const closed = { host: 'db', port: 13, closed: true };
  const h = { links: [own] };
  announce(link, mine);
  announce(link, own);
  announce(link, closed);
  announce(link, mine); // announced again (a second connect): kept once
  announce(hub, h);
  const list = resources();
  assert.deepEqual(
    list.map((r) => r.name),
    ['test hub 1', 'test link 1 (db:12)'],
  );
  assert.equal(await list[0].probe(100), 'hub answered');
  assert.equal(await list[1].probe(100), 'link 12 answered');
  mine.broken = true;
  await assert.rejects(resources()[1].probe(100), /broken link/);
  // A kind that throws is reported by its check, never into the caller.
  const throwing = {
    ...link,
    kind: 'odd',
    listed: () => {
      throw new Error('cannot tell');
    },
  };
  announce(throwing, { host: 'x', port: 1 });
  const odd = resources().find((r) => r.name.startsWith('test odd 1'));
  assert.ok(odd, JSON.stringify(resources().map((r) => r.name)));
  await assert.rejects(odd.probe(100), /cannot tell/);
  // keep the announced objects alive up to here
  assert.ok(h && own && closed);
});

test('at most `max` of a kind; instances are held weakly and their room is freed when collected', async (t) => {
  rememberInstances(true);
  t.after(() => rememberInstances(false));
  const kind = { ...link, kind: 'bounded', max: 3 };
  const names = () =>
    resources()
      .filter((r) => r.name.startsWith('test bounded'))
      .map((r) => r.name);
  // Made, announced and dropped in a function of their own: a suspended async frame may keep
  // stale references to objects it made itself.
  const late = { host: 'h', port: 4 };
  (() => {
    for (const port of [1, 2, 3]) announce(kind, { host: 'h', port });
    announce(kind, late); // full: not remembered
    assert.deepEqual(names(), ['test bounded 1 (h:1)', 'test bounded 2 (h:2)', 'test bounded 3 (h:3)']);
  })();
  for (let i = 0; i < 5 && names().length > 0; i++) {
    await new Promise((r) => setImmediate(r)); // WeakRefs are cleared after the current job
    gc();
  }
  assert.deepEqual(names(), []);
  const next = { host: 'h', port: 5 };
  announce(kind, next);
  assert.deepEqual(names(), ['test bounded 4 (h:5)']);
  assert.ok(late && next);
});
