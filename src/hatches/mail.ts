/**
 * The mail hatch: `?to=<address>&msg=<text>` sends a test message through each mail transport the
 * app created (src/instances.ts: those whose kind can `sendTest`, nodemailer's today), or only
 * through `?transport=<n>` (the n of `mail transport n`), and answers with what each transport
 * answered: accepted, rejected, the server's response, the message ID (or its error).
 * - Only to HATCH_MAIL_TO: one address per request, which must be listed there or be at a listed
 *   `@domain` (the domain compared case-insensitively). Without HATCH_MAIL_TO nothing is sent (403),
 *   so a stolen token cannot make the app an open relay; a malformed `to` answers 400.
 * - Subject and body say it is a hatch test and carry the request's ID (also in an X-Hatch-Request-Id header).
 * - Each send runs under HATCH_HEALTH_TIMEOUT_MS; 200 when every transport accepted it, 502 otherwise.
 * Limitations: a send that times out may still be delivered later; the transport's plugins and
 * defaults apply to the test message as to the app's own.
 */
import { storage } from '../context';
import { MAIL_TO_ENTRY } from '../config';
import { resources, type MailAnswer } from '../instances';
import { escapeHtml, jsonPage, page } from './pages';
import { cleanMsg, type HatchDeps, type Reply } from './reply';

interface Sent extends MailAnswer {
  transport: string;
}

function refused(status: number, error: string): Reply {
  return { status, json: { error }, html: jsonPage(`mail: refused (${status})`, { error }) };
}

/** Whether HATCH_MAIL_TO (entries as src/config.ts keeps them: domains lower-cased) allows `to`. */
function allowed(to: string, list: readonly string[]): boolean {
  const at = to.lastIndexOf('@');
  const local = to.slice(0, at);
  const domain = to.slice(at + 1).toLowerCase();
  return list.some((e) => (e.startsWith('@') ? e.slice(1) === domain : e === `${local}@${domain}`));
}

function withTimeout(p: Promise<MailAnswer>, ms: number): Promise<MailAnswer> {
  return new Promise((resolve) => {
    const t = setTimeout(
      () => resolve({ sent: false, accepted: [], rejected: [], error: `no answer within ${ms} ms` }),
      ms,
    );
    t.unref();
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (err) => {
        clearTimeout(t);
        resolve({ sent: false, accepted: [], rejected: [], error: (err as Error)?.message ?? String(err) });
      },
    );
  });
}

export async function mailHatch(deps: HatchDeps, query: URLSearchParams): Promise<Reply> {
  const list = deps.config.hatchMailTo;
  if (list.length === 0)
    return refused(
      403,
      'HATCH_MAIL_TO is not set: the mail hatch sends to no one (set it to the addresses or @domains a test may go to)',
    );
  const to = (query.get('to') ?? '').trim();
  if (to.length > 254 || to.startsWith('@') || !MAIL_TO_ENTRY.test(to))
    return refused(400, `to=${JSON.stringify(to.slice(0, 100))} is not one e-mail address (name@domain.tld)`);
  if (!allowed(to, list)) return refused(403, `${to} is not allowed by HATCH_MAIL_TO (${list.join(',')})`);
  const rawN = query.get('transport');
  let chosen: number | undefined;
  if (rawN !== null) {
    if (!/^[1-9]\d{0,5}$/.test(rawN)) return refused(400, `transport=${JSON.stringify(rawN)} is not a number from 1`);
    chosen = Number(rawN);
  }
  const all = resources().filter((r) => r.sendTest !== undefined);
  const transports = chosen === undefined ? all : all.filter((r) => r.n === chosen);
  if (transports.length === 0)
    return refused(
      404,
      all.length === 0
        ? 'the app has created no mail transport (nodemailer createTransport) that is open now'
        : `no mail transport ${chosen}; there are: ${all.map((r) => r.name).join(', ')}`,
    );

  const requestId = storage.getStore()?.id ?? '';
  const msg = cleanMsg(query.get('msg'), 'hatch test');
  const subject = `hatch test mail (request ${requestId})`;
  const ms = deps.config.hatchHealthTimeoutMs;
  const results: Sent[] = await Promise.all(
    transports.map(async (r) => {
      const text =
        `This is a test message from the hatch-agent mail hatch, sent through the app's own ${r.name}.\n` +
        `Request ID: ${requestId}\nMessage: ${msg}\n`;
      const answer = await withTimeout(
        r.sendTest!({ to, subject, text, headers: { 'X-Hatch-Request-Id': requestId } }),
        ms,
      );
      return { transport: r.name, ...answer };
    }),
  );
  const ok = results.every((r) => r.sent);
  const rows = results
    .map(
      (r) =>
        `<tr class="sent" data-transport="${escapeHtml(r.transport)}"><td>${escapeHtml(r.transport)}</td><td class="${r.sent ? 'pass' : 'fail'}">${r.sent ? 'sent' : 'failed'}</td><td>${escapeHtml(r.accepted.join(', '))}</td><td>${escapeHtml(r.rejected.join(', '))}</td><td>${escapeHtml(r.response ?? '')}</td><td><code>${escapeHtml(r.messageId ?? '')}</code></td><td>${escapeHtml(r.error ?? '')}</td></tr>`,
    )
    .join('');
  return {
    status: ok ? 200 : 502,
    json: { to, requestId, subject, sent: ok, results },
    html: page(
      `mail: ${ok ? 'sent' : 'failed'}`,
      `<p>To <code>${escapeHtml(to)}</code>, subject <code>${escapeHtml(subject)}</code>.</p><table><tr><th>transport</th><th>status</th><th>accepted</th><th>rejected</th><th>response</th><th>message ID</th><th>error</th></tr>${rows}</table>`,
    ),
  };
}
