// Stderr under the agent, for an app whose calls fail in the libraries' normal ways: a bad URL, a
// refused connection (node:http, fetch, undici), an SQL syntax error and a refused connection
// through pg, template syntax errors (ejs, pug, nunjucks), a handlebars runtime error, a missing
// template file. With no HATCH_LOG set, it prints on stderr exactly what it prints without the
// agent: the agent's own warnings are for its own failures and bad settings, never for the app's.
// Each failure happens inside a request context (withRequestId) and outside one, and the app
// writes what it caught (name, code, message) to stderr itself, as an app's error log would; the
// errors must be the same too.
// Limitation: stack traces are not compared (an error thrown through a wrapper has its frames:
// README, "Intended differences").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runScript } from '../support/app.mjs';
import { freeTcpPort } from '../support/postgres.mjs';

const source = `
const http = require('node:http');
const path = require('node:path');
const pg = require('pg');
const undici = require('undici');
const ejs = require('ejs'), pug = require('pug'), handlebars = require('handlebars'), nunjucks = require('nunjucks');
const { withRequestId } = process.execArgv.includes('hatch-agent') ? require('hatch-agent') : { withRequestId: (id, f) => f() };
const closed = 'http://127.0.0.1:' + process.env.CLOSED_PORT + '/x';
const say = (what, err) => console.error(what + ': ' + (err ? [err.name, err.code, err.message].join(' | ') : 'no error'));
async function failures(tag) {
  try { http.get('not a url'); say(tag + ' bad url'); } catch (err) { say(tag + ' bad url', err); }
  await new Promise((resolve) => http.get(closed, () => resolve()).on('error', (err) => { say(tag + ' http refused', err); resolve(); }));
  await fetch(closed).then(() => say(tag + ' fetch'), (err) => say(tag + ' fetch refused', err.cause ?? err));
  await undici.request(closed).then(() => say(tag + ' undici'), (err) => say(tag + ' undici refused', err));
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1 });
  await pool.query('SELEC 1').then(() => say(tag + ' sql'), (err) => say(tag + ' sql syntax', err));
  await new Promise((resolve) => pool.query('SELECT * FROM no_such_table', (err) => { say(tag + ' sql callback', err); resolve(); }));
  await pool.end();
  const refused = new pg.Client({ connectionString: 'postgres://u:p@127.0.0.1:' + process.env.CLOSED_PORT + '/db' });
  await refused.connect().then(() => say(tag + ' pg connect'), (err) => say(tag + ' pg refused', err));
  try { ejs.render('<% if (x { %>'); say(tag + ' ejs'); } catch (err) { say(tag + ' ejs syntax', err); }
  await new Promise((resolve) => ejs.renderFile(path.join(__dirname, 'no-such.ejs'), {}, (err) => { say(tag + ' ejs missing file', err); resolve(); }));
  try { pug.compile('div(')(); say(tag + ' pug'); } catch (err) { say(tag + ' pug syntax', err); }
  try { handlebars.compile('{{#each}}')({}); say(tag + ' handlebars'); } catch (err) { say(tag + ' handlebars error', err); }
  try { handlebars.compile('{{> missing}}')({}); say(tag + ' handlebars partial'); } catch (err) { say(tag + ' handlebars partial', err); }
  await new Promise((resolve) => new nunjucks.Environment().renderString('{% if %}', {}, (err) => { say(tag + ' nunjucks syntax', err); resolve(); }));
}
(async () => {
  await failures('outside');
  await withRequestId('failing-calls', () => failures('inside'));
  console.log('done');
})();
`;

test(`an app whose calls fail prints on stderr exactly what it prints without the agent (node ${process.versions.node})`, async () => {
  const env = { CLOSED_PORT: String(await freeTcpPort()), HATCH_LOG: '' };
  const plain = await runScript(source, { agent: false, env });
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stdout, 'done\n');
  // the failures did happen, each as its library reports it
  for (const what of [
    'bad url',
    'http refused',
    'fetch refused',
    'undici refused',
    'sql syntax',
    'sql callback',
    'pg refused',
    'ejs syntax',
    'ejs missing file',
    'pug syntax',
    'handlebars error',
    'handlebars partial',
    'nunjucks syntax',
  ]) {
    assert.match(plain.stderr, new RegExp(`inside ${what}: [\\w ]+ \\| `), `${what} failed without the agent`);
  }
  const agent = await runScript(source, { env });
  assert.equal(agent.code, 0, agent.stderr);
  assert.equal(agent.stdout, plain.stdout);
  assert.equal(agent.stderr, plain.stderr);
});
