// A real SMTP server in the test process (the smtp-server package), on a free loopback port: it
// records every message it accepts (envelope, headers, decoded text body) and every login (method
// and user). With `users` ({ name: password }) it requires AUTH (PLAIN and LOGIN offered); without,
// anyone may send. STARTTLS is not offered (no certificate to trust). Recipients in `reject` are
// refused at RCPT TO with a 550. stop() closes it; start() listens again on the same port.
// `connects` counts connections; setting `greetAfterMs` makes it wait that long before its greeting.
// Limitations: the body decoding knows quoted-printable and 7bit/8bit only (what nodemailer uses
// for ASCII text).
import { SMTPServer } from 'smtp-server';

/** Headers (unfolded, names lower-cased) and the decoded body of a raw message. */
export function parseMessage(raw) {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
  let body = raw.slice(split + 4);
  const headers = {};
  for (const line of head.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  if (/quoted-printable/i.test(headers['content-transfer-encoding'] ?? ''))
    body = body.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
  return { headers, body };
}

export async function startSmtp({ users, reject = [] } = {}) {
  const messages = [];
  const logins = [];
  const handle = { connects: 0, greetAfterMs: 0 };
  let server;
  let port = 0;
  const make = () =>
    new SMTPServer({
      disabledCommands: users ? ['STARTTLS'] : ['STARTTLS', 'AUTH'],
      authMethods: ['PLAIN', 'LOGIN'],
      allowInsecureAuth: true,
      authOptional: !users,
      logger: false,
      closeTimeout: 1000, // stop() does not wait 30 s for a client's idle connection
      onConnect(session, cb) {
        handle.connects++;
        setTimeout(cb, handle.greetAfterMs);
      },
      onAuth(auth, session, cb) {
        if (users && users[auth.username] === auth.password) {
          logins.push({ method: auth.method, user: auth.username });
          return cb(null, { user: auth.username });
        }
        cb(Object.assign(new Error('Invalid username or password'), { responseCode: 535 }));
      },
      onRcptTo(address, session, cb) {
        if (reject.includes(address.address))
          return cb(Object.assign(new Error(`<${address.address}> no such mailbox here`), { responseCode: 550 }));
        cb();
      },
      onData(stream, session, cb) {
        let raw = '';
        stream.setEncoding('utf8');
        stream.on('data', (d) => (raw += d));
        stream.on('end', () => {
          messages.push({
            from: session.envelope.mailFrom?.address,
            to: session.envelope.rcptTo.map((r) => r.address),
            user: session.user,
            raw,
            ...parseMessage(raw),
          });
          // A fixed answer, so that results compare equal from run to run.
          cb(null, `queued as test-${messages.length}`);
        });
      },
    });
  const listen = () =>
    new Promise((resolve, reject) => {
      server = make();
      server.on('error', () => {}); // a client that goes away mid-session is not the test's failure
      server.server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        port = server.server.address().port;
        resolve();
      });
    });
  await listen();
  return Object.assign(handle, {
    get port() {
      return port;
    },
    messages,
    logins,
    stop: () => new Promise((resolve) => server.close(resolve)),
    start: listen,
  });
}
