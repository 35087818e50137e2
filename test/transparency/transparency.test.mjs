// Transparency: a function the agent hands out in place of a library's own must look like it.
// test/transparency/app.cjs uses every patched module inside a request and reports what code can
// see of their functions; it runs without the agent, then under `-r hatch-agent` with
// HATCH_TEST_WRAPPERS=1 (the shim then lists every wrapper it marks). Two comparisons:
// 1. every wrapper the agent marked (found on the modules' exports and prototypes, on what the app
//    got back, and in the shim's list), with the original it holds: name, length, own keys and
//    descriptors, `prototype`, [[Prototype]], toString();
// 2. the two runs: every function reachable from the modules and every function the app was
//    handed (compiled templates, Express's `next`, an engine's callback), the instanceof relations
//    the libraries document, a few identities (a Query's callback is the app's own). This finds a
//    replaced function whether the agent marked it or not.
// A difference fails the test unless test/transparency/intended.mjs lists it, with its reason (the
// README shows the same table). The number of wrappers per module is printed (a test diagnostic),
// so a wrapper that escaped the enumeration can be noticed, and a module whose patch wraps
// something must show at least one. Both runs must print the same stderr (nothing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { runScript } from '../support/app.mjs';
import { INTENDED } from './intended.mjs';

const source = fs.readFileSync(new URL('./app.cjs', import.meta.url), 'utf8');

/** The intended entry for a difference, if any. */
const intended = (kind, where) => INTENDED.find((e) => e.kind === kind && e.where.test(where));

/** Every difference between the run without the agent and the run under it, as { kind, where, detail }. */
export function differences(plain, agent) {
  const out = [];
  for (const w of agent.wrappers)
    for (const d of w.diffs) out.push({ kind: d.split(':')[0], where: `${w.module} ${w.where}`, detail: d });
  const keys = new Set([...Object.keys(plain.shapes), ...Object.keys(agent.shapes)]);
  const added = [];
  for (const k of keys) {
    const a = agent.shapes[k];
    const b = plain.shapes[k];
    if (b === undefined) {
      // what the walk found below an added wrapper (its prototype's constructor) is the same addition
      if (!added.some((p) => k.startsWith(p + '.'))) {
        added.push(k);
        out.push({ kind: 'added', where: k, detail: 'only under the agent' });
      }
      continue;
    }
    if (a === undefined) {
      out.push({ kind: 'removed', where: k, detail: 'missing under the agent' });
      continue;
    }
    for (const f of Object.keys({ ...a, ...b })) {
      if (JSON.stringify(a[f]) === JSON.stringify(b[f])) continue;
      // a key order that differs shows in `own` too: one difference, named once
      if (
        f === 'own' &&
        JSON.stringify(Object.keys(a.own).sort()) === JSON.stringify(Object.keys(b.own).sort()) &&
        Object.keys(a.own).every((p) => JSON.stringify(a.own[p]) === JSON.stringify(b.own[p]))
      )
        continue;
      const kind =
        f === 'toString'
          ? 'toString'
          : f === 'keys' && JSON.stringify([...a.keys].sort()) === JSON.stringify([...b.keys].sort())
            ? 'own key order'
            : 'shape';
      out.push({
        kind,
        where: k,
        detail: `${f}: ${JSON.stringify(a[f])} under the agent, ${JSON.stringify(b[f])} without`,
      });
    }
  }
  for (const [what, map] of [
    ['instanceof', 'instances'],
    ['identity', 'identities'],
  ]) {
    for (const k of new Set([...Object.keys(plain[map]), ...Object.keys(agent[map])])) {
      if (plain[map][k] !== agent[map][k])
        out.push({ kind: what, where: k, detail: `${agent[map][k]} under the agent, ${plain[map][k]} without` });
    }
  }
  return out;
}

// The modules whose patch installs wrappers (fastify adds a hook, undici/fetch subscribe to
// channels: nothing of theirs is replaced, and the walk must find nothing marked there).
const WRAPPING = [
  'http',
  'https',
  'pg',
  'pg-pool',
  'pg-cursor',
  'express',
  'finalhandler',
  'koa',
  'ejs',
  'pug',
  'handlebars',
  'nunjucks',
  'pino',
  'winston',
  'bullmq',
  'node-cron',
  'cron',
  'ioredis',
];

test(`every function the agent hands out looks like the library's own (node ${process.versions.node})`, async (t) => {
  const env = { HATCH_LOG: '' };
  const plainRun = await runScript(source, { agent: false, env });
  assert.equal(plainRun.code, 0, plainRun.stderr);
  const agentRun = await runScript(source, { agent: true, env: { ...env, HATCH_TEST_WRAPPERS: '1' } });
  assert.equal(agentRun.code, 0, agentRun.stderr);
  // (Express 4.16 makes Node print DEP0066 in both runs: the process ID is all that may differ)
  const pidless = (s) => s.replace(/^\(node:\d+\)/gm, '(node)');
  assert.equal(pidless(agentRun.stderr), pidless(plainRun.stderr), 'the agent printed on stderr');
  const plain = JSON.parse(plainRun.stdout);
  const agent = JSON.parse(agentRun.stdout);
  assert.equal(plain.wrappers, undefined, 'without the agent nothing is marked');

  // The enumeration: per module, and nothing the shim marked escaped it but per-call wrappers.
  const counts = {};
  for (const w of agent.wrappers) counts[w.module] = (counts[w.module] ?? 0) + 1;
  t.diagnostic(`wrappers enumerated per module: ${JSON.stringify(counts)} (shim list: ${agent.registry})`);
  for (const m of WRAPPING) assert.ok(counts[m] > 0, `no wrapper of ${m} was found`);
  for (const m of ['fastify', 'undici', '@koa/router', 'pg-query-stream'])
    assert.equal(counts[m], undefined, `${m}: nothing of it is replaced`);
  const escaped = agent.escaped.filter((where) => !/ compiled template$/.test(where));
  assert.deepEqual(escaped, [], 'wrappers the walk did not reach (add their module or prototype to app.cjs)');
  assert.ok(
    agent.wrappers.some((w) => / compiled template \(registry\)$/.test(w.where)),
    'compiled templates were compared',
  );

  const found = differences(plain, agent);
  const unexplained = found.filter((d) => !intended(d.kind, d.where));
  assert.deepEqual(
    unexplained.map((d) => `${d.kind} at ${d.where}: ${d.detail}`),
    [],
    'differences not in test/transparency/intended.mjs',
  );
  const gaps = [
    ...new Set(
      found.filter((d) => intended(d.kind, d.where)?.why.startsWith('to mark')).map((d) => `${d.kind} at ${d.where}`),
    ),
  ];
  if (gaps.length) t.diagnostic(`known gaps (to mark): ${gaps.join('; ')}`);
});

test('the table of intended differences is the one README shows', () => {
  const readme = fs.readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('### Intended differences'));
  assert.ok(
    section.length > 0 && readme.includes('### Intended differences'),
    'README has an "Intended differences" section',
  );
  for (const e of INTENDED) assert.ok(section.includes(`\`${e.kind}\``), `README's table names the kind ${e.kind}`);
});
