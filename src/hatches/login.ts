/**
 * The login hatch (`<prefix>/login`, with HATCH_DEBUG_ERRORS=on only): how a browser, which cannot
 * send an Authorization header of its own, gets the token to the agent. GET answers a form; POST
 * (`token=…`, form-encoded, at most MAX_BODY bytes) checks the token and, when it is right, sets the
 * two session cookies of ./auth.ts and sends the browser to the requests hatch.
 *
 * Why a form and not `?token=` in a link: a URL's query string lands in proxies' access logs and the
 * browser's history. The form posts to this same origin only (its page allows `form-action 'self'`).
 * Limitation: this is the one hatch URL that answers without a token, so with HATCH_DEBUG_ERRORS=on
 * a scanner can tell that the agent is there (a wrong token is counted as errors{kind=hatch_auth}).
 */
import type * as http from 'node:http';
import { channels } from '../bus';
import { storage } from '../context';
import { escapeHtml, page } from './pages';
import { CSP, send, type Reply } from './reply';
import type { Auth } from './auth';

export const MAX_BODY = 2048;

const FORM_CSP = CSP.replace("form-action 'none'", "form-action 'self'");

function form(prefix: string, status: number, note: string): Reply {
  const html = page(
    'hatch-agent: log in',
    `${note}<form method="post" action="${escapeHtml(prefix)}/login"><label>HATCH_TOKEN <input type="password" name="token" autocomplete="current-password" size="48" autofocus></label> <button type="submit">log in</button></form>` +
      `<p>Sets two cookies for ${8} hours: one for the hatches under <code>${escapeHtml(prefix)}</code>, one that shows you a debug page when a request of yours to this app ends in a 5xx. <a href="${escapeHtml(prefix)}/logout">Log out</a> clears them.</p>`,
  );
  return {
    status,
    html,
    json: { error: note === '' ? 'log in with a form post of token=…' : 'wrong token' },
    headers: { 'content-security-policy': FORM_CSP },
  };
}

/** Serves `<prefix>/login`; the request is the login's whatever the method. */
export function login(req: http.IncomingMessage, res: http.ServerResponse, auth: Auth, prefix: string): void {
  const method = req.method ?? 'GET';
  if (method === 'GET' || method === 'HEAD') return send(req, res, form(prefix, 200, ''), true);
  if (method !== 'POST') {
    res.setHeader('allow', 'GET, HEAD, POST');
    return send(req, res, { status: 405, json: { error: 'the login answers GET and POST' } }, false);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  req.on('data', (c: Buffer) => {
    size += c.length;
    if (size > MAX_BODY) over = true;
    else chunks.push(c);
  });
  req.on('error', () => {});
  req.on('end', () => {
    try {
      if (over)
        return send(req, res, { status: 413, json: { error: `a login body is at most ${MAX_BODY} bytes` } }, false);
      const token = new URLSearchParams(Buffer.concat(chunks).toString('utf8')).get('token') ?? '';
      if (!auth.isToken(token)) {
        if (channels.error.hasSubscribers)
          channels.error.publish({
            kind: 'hatch_auth',
            requestId: storage.getStore()?.id,
            message: 'a login to the hatches with a wrong token',
          });
        return send(req, res, form(prefix, 403, '<p class="fail">Wrong token.</p>'), true);
      }
      res.setHeader('set-cookie', auth.cookies(req, prefix));
      res.setHeader('location', `${prefix}/requests`);
      send(req, res, { status: 303, json: { ok: true, next: `${prefix}/requests` } }, false);
    } catch {
      if (!res.headersSent) send(req, res, { status: 500, json: { error: 'the login failed' } }, false);
    }
  });
}
