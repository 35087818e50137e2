// The app of the mail and health-parts tests, run under `node -r hatch-agent`: nodemailer transports
// made the ways apps make them, to the SMTP servers of test/support/smtp.mjs (SMTP_A: no login;
// SMTP_B: a login required):
// 1. options, no login, to SMTP_A;
// 2. a URL with credentials and a default sender, to SMTP_B (AUTH PLAIN, nodemailer's first choice);
// 3. options with auth and its method LOGIN (auth.method: nodemailer 6.0.0 knows no authMethod), to SMTP_B (only when SMTP_B is set).
// Routes: /send?to=a,b sends the app's own mail through transport 1 and answers with nodemailer's
// result or error, as JSON; /signup sends one and answers 200, or 500 when the mail fails (the
// end-to-end check of the health tests). Its own 404 says nothing about the hatches.
export const MAIL_APP = `
const http = require('node:http');
const nodemailer = require('nodemailer');
const a = Number(process.env.SMTP_A);
const b = Number(process.env.SMTP_B || 0);
const plain = nodemailer.createTransport({ host: '127.0.0.1', port: a, secure: false });
// Kept, as an app keeps its transports: the agent holds them weakly, and a collected one is gone.
globalThis.transports = [plain];
if (b) {
  globalThis.transports.push(
    nodemailer.createTransport('smtp://mailer:s3cret-pass@127.0.0.1:' + b, { from: 'app@example.test' }),
    nodemailer.createTransport({ host: '127.0.0.1', port: b, auth: { user: 'mailer', pass: 's3cret-pass', method: 'LOGIN' } }),
  );
}
const fields = (e) => ({ error: true, name: e.name, message: e.message, code: e.code, response: e.response, responseCode: e.responseCode, command: e.command, rejected: e.rejected });
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/send') {
    let out;
    try {
      const info = await plain.sendMail({ from: 'app@example.test', to: url.searchParams.get('to'), subject: 'the app mails', text: 'hello from the app' });
      out = { ...info };
    } catch (e) {
      out = fields(e);
    }
    res.setHeader('content-type', 'application/json');
    return res.end(JSON.stringify(out));
  }
  if (url.pathname === '/signup') {
    try {
      await plain.sendMail({ from: 'app@example.test', to: 'new-user@example.test', subject: 'welcome', text: 'welcome' });
      return res.end('signed up');
    } catch (e) {
      res.statusCode = 500;
      return res.end('signup mail failed: ' + e.message);
    }
  }
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'x-app': 'own-404' });
  res.end('the app has no ' + url.pathname);
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;
