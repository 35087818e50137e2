// The mail hatch against real SMTP servers in this process (smtp-server): one that takes mail from
// anyone, one that requires a login (AUTH PLAIN and LOGIN). The app (./mail-app.mjs) makes three
// nodemailer transports; the hatch sends through each (or the one chosen), and the test reads what
// arrived: the recipient, the subject and body with the request's ID, the login each used.
// Refusals: 403 without HATCH_MAIL_TO and for a recipient outside it, 400 for a bad address, with
// nothing sent. The app's own mail is the same with and without the agent (results and errors);
// HATCH_DISABLE, a version outside the range and bad HATCH_MAIL_TO entries each give their line;
// without the token the new hatches are the app's own 404, counted as hatch_auth.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startApp, runScript, get, UUID, fakeModule } from '../support/app.mjs';
import { startSmtp } from '../support/smtp.mjs';
import { udpListener } from '../support/udp.mjs';
import { TOKEN, STARTUP_MS, SLOW_OK, auth, until } from './apps.mjs';
import { MAIL_APP } from './mail-app.mjs';

let open; // takes mail from anyone
let locked; // requires a login
let udp;
let app; // HATCH_MAIL_TO set
let noTo; // no HATCH_MAIL_TO
let bare; // without the agent
before(async () => {
  [open, locked, udp] = await Promise.all([
    startSmtp({ reject: ['nobody@example.test'] }),
    startSmtp({ users: { mailer: 's3cret-pass' } }),
    udpListener(),
  ]);
  const smtp = { SMTP_A: String(open.port), SMTP_B: String(locked.port) };
  const statsd = { HATCH_STATSD: 'on', HATCH_STATSD_PORT: String(udp.port), HATCH_STATSD_FLUSH_MS: '100' };
  [app, noTo, bare] = await Promise.all([
    startApp(MAIL_APP, {
      env: {
        ...smtp,
        ...statsd,
        HATCH_TOKEN: TOKEN,
        HATCH_MAIL_TO: 'ops@example.test, @Example.ORG',
        HATCH_HEALTH_TIMEOUT_MS: SLOW_OK,
      },
      timeout: STARTUP_MS,
    }),
    startApp(MAIL_APP, { env: { ...smtp, HATCH_TOKEN: TOKEN }, timeout: STARTUP_MS }),
    startApp(MAIL_APP, { agent: false, env: smtp, timeout: STARTUP_MS }),
  ]);
});
after(async () => {
  await Promise.all([app?.stop(), noTo?.stop(), bare?.stop()]);
  await Promise.all([open?.stop(), locked?.stop()]);
  udp?.close();
});

const arrived = () => open.messages.length + locked.messages.length;

async function mail(query, headers = auth()) {
  const r = await get(`${app.url}/_hatch/mail?${query}`, headers);
  return {
    status: r.status,
    headers: r.headers,
    text: r.body,
    body: r.headers['content-type']?.includes('json') ? JSON.parse(r.body) : undefined,
  };
}

test('the mail hatch sends a test message through every transport, and each arrives as it said', async () => {
  const before = { open: open.messages.length, locked: locked.messages.length };
  const r = await mail('to=ops@example.test&msg=checking%20the%20relay');
  assert.equal(r.status, 200, r.text);
  const id = r.headers['x-request-id'];
  assert.match(id, UUID);
  assert.equal(r.body.requestId, id);
  assert.equal(r.body.sent, true);
  assert.deepEqual(
    r.body.results.map((x) => x.transport),
    [
      `mail transport 1 (127.0.0.1:${open.port})`,
      `mail transport 2 (127.0.0.1:${locked.port})`,
      `mail transport 3 (127.0.0.1:${locked.port})`,
    ],
  );
  assert.ok(!r.text.includes('s3cret-pass'), 'no credentials in the answer');
  for (const x of r.body.results) {
    assert.equal(x.sent, true, JSON.stringify(x));
    assert.deepEqual(x.accepted, ['ops@example.test']);
    assert.deepEqual(x.rejected, []);
    assert.match(x.response, /^250 .*queued as test-\d+/);
    assert.match(x.messageId, /^<.+@.+>$/);
  }
  // What arrived: one message at the open server, two at the locked one (one per login method).
  const a = open.messages.slice(before.open);
  const b = locked.messages.slice(before.locked);
  assert.equal(a.length, 1);
  assert.equal(b.length, 2);
  for (const [m, x] of [
    [a[0], r.body.results[0]],
    ...b.map((m) => [m, r.body.results.find((x) => x.messageId === m.headers['message-id'])]),
  ]) {
    assert.ok(x, 'each message arrived with the message ID its transport reported');
    assert.deepEqual(m.to, ['ops@example.test']);
    assert.equal(m.headers.to, 'ops@example.test');
    assert.equal(m.headers.subject, `hatch test mail (request ${id})`);
    assert.equal(m.headers['x-hatch-request-id'], id);
    assert.match(m.body, /test message from the hatch-agent mail hatch/);
    assert.ok(m.body.includes(`Request ID: ${id}`), m.body);
    assert.ok(m.body.includes('Message: checking the relay'), m.body);
    assert.ok(m.body.includes(x.transport), m.body);
    const k = (m === a[0] ? open : locked).messages.indexOf(m) + 1;
    assert.match(x.response, new RegExp(`^250 (?:2\\.6\\.0 )?queued as test-${k}$`));
  }
  // Transport 2 mails as the app's default sender; 1 and 3 have none, so the agent names itself.
  assert.equal(b.find((m) => m.user === 'mailer' && m.from === 'app@example.test')?.from, 'app@example.test');
  assert.match(a[0].from, /^hatch-agent@/);
  assert.deepEqual(
    locked.logins
      .slice(-2)
      .map((l) => `${l.method} ${l.user}`)
      .sort(),
    ['LOGIN mailer', 'PLAIN mailer'],
  );

  // The HTML view, by content.
  const html = await get(`${app.url}/_hatch/mail?to=ops@example.test&format=html`, auth());
  assert.equal(html.status, 200);
  assert.match(html.headers['content-type'], /text\/html/);
  assert.match(html.body, /<title>mail: sent<\/title>/);
  assert.equal((html.body.match(/<tr class="sent"/g) ?? []).length, 3);
  assert.ok(html.body.includes(`mail transport 1 (127.0.0.1:${open.port})`));
  assert.ok(html.body.includes(`hatch test mail (request ${html.headers['x-request-id']})`));
  const last = open.messages.at(-1);
  assert.ok(html.body.includes(last.headers['message-id'].replace(/</g, '&lt;').replace(/>/g, '&gt;')));
});

test('?transport=<n> sends through that transport only; an unknown one is named', async () => {
  const before = { open: open.messages.length, locked: locked.messages.length };
  const r = await mail('to=Someone@EXAMPLE.org&transport=2'); // at an allowed @domain, any case
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(
    r.body.results.map((x) => x.transport),
    [`mail transport 2 (127.0.0.1:${locked.port})`],
  );
  assert.equal(open.messages.length, before.open);
  assert.equal(locked.messages.length, before.locked + 1);
  // The domain arrives in lower case (nodemailer writes it so), as nodemailer reports it accepted.
  assert.deepEqual(locked.messages.at(-1).to, ['Someone@example.org']);
  assert.deepEqual(r.body.results[0].accepted, ['Someone@example.org']);
  const none = await mail('to=ops@example.test&transport=9');
  assert.equal(none.status, 404);
  assert.match(none.body.error, /no mail transport 9; there are: mail transport 1 .*mail transport 3/);
  assert.equal((await mail('to=ops@example.test&transport=x')).status, 400);
});

test('a rejected recipient is reported with the server response', async () => {
  const r = await get(`${noTo.url}/_hatch/mail?to=nobody@example.test`, auth());
  assert.equal(r.status, 403); // without HATCH_MAIL_TO: refused before anything else
  // The app with HATCH_MAIL_TO lists ops@ only; nobody@ at the open server is refused by the server.
  const a = await startApp(MAIL_APP, {
    env: { SMTP_A: String(open.port), HATCH_TOKEN: TOKEN, HATCH_MAIL_TO: '@example.test' },
    timeout: STARTUP_MS,
  });
  try {
    const before = open.messages.length;
    const x = await get(`${a.url}/_hatch/mail?to=nobody@example.test`, auth());
    assert.equal(x.status, 502, x.body);
    const body = JSON.parse(x.body);
    assert.equal(body.sent, false);
    const [res] = body.results;
    assert.equal(res.sent, false);
    assert.deepEqual(res.rejected, ['nobody@example.test']);
    assert.match(res.response, /^550 .*no such mailbox here/);
    assert.equal(res.code, 'EENVELOPE');
    assert.equal(open.messages.length, before);
  } finally {
    await a.stop();
  }
});

test('without HATCH_MAIL_TO, outside it, or to a bad address nothing is sent', async () => {
  const n = arrived();
  const none = await get(`${noTo.url}/_hatch/mail?to=ops@example.test`, auth());
  assert.equal(none.status, 403);
  assert.match(JSON.parse(none.body).error, /^HATCH_MAIL_TO is not set: the mail hatch sends to no one/);
  for (const to of ['ops@example.test.evil.com', 'other@example.test', 'OPS@example.test', 'ops@sub.example.org']) {
    const r = await mail(`to=${encodeURIComponent(to)}`);
    assert.equal(r.status, 403, to);
    assert.equal(r.body.error, `${to} is not allowed by HATCH_MAIL_TO (ops@example.test,@example.org)`);
  }
  for (const to of [
    '',
    'ops',
    'ops@example.test,x@example.org',
    'a@b@example.test',
    'Ops <ops@example.test>',
    '@example.org',
  ]) {
    const r = await mail(`to=${encodeURIComponent(to)}`);
    assert.equal(r.status, 400, to);
    assert.match(r.body.error, /is not one e-mail address/);
  }
  const html = await get(`${noTo.url}/_hatch/mail?to=ops@example.test&format=html`, auth());
  assert.equal(html.status, 403);
  assert.match(html.body, /HATCH_MAIL_TO is not set/);
  assert.equal(arrived(), n);
});

test('without the token the mail hatch and the health history are the app own 404, and counted', async () => {
  const n = arrived();
  const paths = ['/_hatch/mail?to=ops@example.test', '/_hatch/mail', '/_hatch/health?history=1'];
  const shape = (r) => {
    const headers = { ...r.headers };
    delete headers.date;
    delete headers['x-request-id'];
    return { status: r.status, headers, body: r.body };
  };
  for (const p of paths)
    for (const headers of [{}, auth(TOKEN.slice(0, -1) + 'x')]) {
      const [a, b] = await Promise.all([get(app.url + p, headers), get(bare.url + p, headers)]);
      assert.equal(a.headers['x-app'], 'own-404', p);
      assert.deepEqual(shape(a), shape(b), p);
    }
  await until(
    () =>
      udp.lines
        .filter((l) => l.startsWith('hatch.errors.hatch_auth:'))
        .reduce((s, l) => s + Number(/:(\d+)\|c$/.exec(l)[1]), 0) >=
      paths.length * 2,
    10000,
    `${paths.length * 2} hatch_auth counts`,
  );
  assert.equal(arrived(), n);
});

test("the app's own mail gives the same results and errors with and without the agent", async () => {
  const script = `
const nodemailer = require('nodemailer');
const t = nodemailer.createTransport({ host: '127.0.0.1', port: Number(process.env.SMTP_A) });
const drop = ({ messageId, envelopeTime, messageTime, ...rest }) => rest;
const fields = (e) => ({ name: e.name, message: e.message, code: e.code, response: e.response, responseCode: e.responseCode, command: e.command, rejected: e.rejected });
(async () => {
  const out = [];
  for (const to of ['ops@example.test', 'ops@example.test, nobody@example.test', 'nobody@example.test']) {
    try { out.push(drop(await t.sendMail({ from: 'app@example.test', to, subject: 's', text: 'x' }))); }
    catch (e) { out.push(fields(e)); }
  }
  await new Promise((ok) => t.verify((err, v) => { out.push([err && err.message, v]); ok(); }));
  console.log(JSON.stringify(out));
})();
`;
  const env = { SMTP_A: String(open.port), HATCH_TOKEN: TOKEN };
  const [w, wo] = await Promise.all([runScript(script, { env }), runScript(script, { env, agent: false })]);
  assert.equal(w.code, 0, w.stderr);
  assert.equal(w.stderr, '');
  const [a, b] = [JSON.parse(w.stdout), JSON.parse(wo.stdout)];
  // Both sent to the same server: only the queue numbers differ, which the comparison leaves out.
  const norm = (v) => JSON.parse(JSON.stringify(v).replace(/queued as test-\d+/g, 'queued as test-N'));
  assert.deepEqual(norm(a), norm(b));
  assert.deepEqual(a[0].accepted, ['ops@example.test']);
  assert.deepEqual(a[1].rejected, ['nobody@example.test']);
  assert.equal(a[2].code, 'EENVELOPE');
  assert.deepEqual(a[3], [null, true]);
});

test('HATCH_DISABLE (mail or nodemailer), a version outside the range, bad HATCH_MAIL_TO entries: one line each', async () => {
  const check = `const n = require('nodemailer'); console.log(n.createTransport[Symbol.for('hatch-agent.wrapped')] === true);`;
  const old = fakeModule('nodemailer', '5.1.1', `module.exports = { createTransport() { return 'v5'; } };`);
  fs.writeFileSync(path.join(old, 'app.js'), check);
  const [on, mailOff, nmOff, outside, badTo] = await Promise.all([
    runScript(check, { env: { HATCH_TOKEN: TOKEN } }),
    runScript(check, { env: { HATCH_TOKEN: TOKEN, HATCH_DISABLE: 'mail', HATCH_LOG: 'debug' } }),
    runScript(check, { env: { HATCH_TOKEN: TOKEN, HATCH_DISABLE: 'nodemailer', HATCH_LOG: 'debug' } }),
    runScript('', { file: path.join(old, 'app.js') }),
    runScript('', { env: { HATCH_MAIL_TO: 'ops@example.test,not-an-address,@,@example' } }),
  ]);
  assert.equal(on.stdout, 'true\n', on.stderr);
  assert.equal(on.stderr, '');
  for (const r of [mailOff, nmOff]) {
    assert.equal(r.stdout, 'false\n', r.stderr);
    assert.match(r.stderr, /nodemailer disabled by HATCH_DISABLE/);
    assert.doesNotMatch(r.stderr, /which is no patch/);
  }
  assert.equal(outside.stdout, 'false\n', outside.stderr);
  assert.deepEqual(outside.stderr.split('\n').filter(Boolean), [
    'hatch-agent warn: nodemailer@5.1.1 is outside the supported range >=6.0.0 <11.0.0; left untouched',
  ]);
  assert.deepEqual(badTo.stderr.split('\n').filter(Boolean), [
    'hatch-agent warn: HATCH_MAIL_TO="ops@example.test,not-an-address,@,@example" has entries that are no address or @domain (not-an-address, @, @example); using "ops@example.test"',
  ]);
});

test('an ES-module app under --import: transports from the default and the named import are both noticed', async () => {
  const r = await runScript(
    `
import nodemailer from 'nodemailer';
import { createTransport } from 'nodemailer';
import http from 'node:http';
// Kept, as an app keeps its transports: the agent holds them weakly, and a collected one is gone.
const transports = [
  nodemailer.createTransport({ host: '127.0.0.1', port: ${open.port} }),
  createTransport({ host: '127.0.0.1', port: ${locked.port}, auth: { user: 'mailer', pass: 's3cret-pass' } }),
];
const s = http.createServer((q, a) => a.end()).listen(0, '127.0.0.1', async () => {
  const res = await fetch('http://127.0.0.1:' + s.address().port + '/_hatch/health', { headers: { authorization: 'Bearer ${TOKEN}' } });
  console.log(JSON.stringify((await res.json()).checks.map((c) => [c.name, c.status])));
  s.close();
  transports.length = 0;
});`,
    { agent: 'import', env: { HATCH_TOKEN: TOKEN, HATCH_HEALTH_TIMEOUT_MS: SLOW_OK } },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), [
    [`mail transport 1 (127.0.0.1:${open.port})`, 'pass'],
    [`mail transport 2 (127.0.0.1:${locked.port})`, 'pass'],
  ]);
});
