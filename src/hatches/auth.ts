/**
 * The hatches' token check: `Authorization: Bearer <HATCH_TOKEN>`, compared in constant time
 * (SHA-256 digests of both, so the lengths are equal, then crypto.timingSafeEqual), or a session
 * cookie that the login hatch (HATCH_DEBUG_ERRORS=on, ./login.ts) sets after the token was typed in.
 *
 * Two cookies, each `<expiry>.<HMAC-SHA256(token, scope:expiry)>`: the token itself is never in a
 * cookie, a cookie ends after SESSION_SECONDS, and each opens one scope only:
 * - `hatch_session`, Path=<prefix>: the hatches;
 * - `hatch_debug`, Path=/: the debug pages only (./debug.ts). It has to reach every app URL, since a
 *   debug page answers an app URL, which a cookie scoped to the prefix never reaches; so it opens no
 *   hatch, and the debug watcher takes it out of the request before the app sees it.
 * Both HttpOnly, SameSite=Strict, Secure when the request came over TLS (or a proxy says
 * `X-Forwarded-Proto: https`). Every instance that shares the token accepts the cookies of every
 * other (nothing is stored server-side); changing the token ends every session.
 * node:crypto is loaded here, with the hatches, at their first request.
 * Limitations: one token, no scopes beyond the two; a header longer than 1024 characters is refused
 * unread; a session cannot be ended early except by changing the token (logout clears the browser's).
 */
import type * as http from 'node:http';
import { DEBUG_COOKIE } from '../pre-handler';

export const HATCH_COOKIE = 'hatch_session';
export { DEBUG_COOKIE };
export const SESSION_SECONDS = 8 * 3600;

export interface Auth {
  /** The hatches: the Authorization header, or the hatch cookie. */
  hatch(req: http.IncomingMessage): boolean;
  /** The debug pages: the Authorization header, or the debug cookie. */
  debug(req: http.IncomingMessage): boolean;
  /** The token as typed into the login form. */
  isToken(s: string): boolean;
  /** The Set-Cookie values of a login. */
  cookies(req: http.IncomingMessage, prefix: string): string[];
}

/** The attributes both cookies get: Secure when the request came over TLS or a proxy says it did. */
function attributes(req: http.IncomingMessage, maxAge: number): string {
  const proto = req.headers['x-forwarded-proto'];
  const secure =
    (req.socket as { encrypted?: boolean } | undefined)?.encrypted === true ||
    (typeof proto === 'string' && proto.split(',')[0]!.trim().toLowerCase() === 'https');
  return `HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}; Max-Age=${maxAge}`;
}

/** The Set-Cookie values of a logout: both cookies emptied and expired. */
export function logoutCookies(req: http.IncomingMessage, prefix: string): string[] {
  const attrs = attributes(req, 0);
  return [`${HATCH_COOKIE}=; Path=${prefix}; ${attrs}`, `${DEBUG_COOKIE}=; Path=/; ${attrs}`];
}

/** The value of cookie `name` in a Cookie header, or undefined. */
export function cookieValue(header: unknown, name: string): string | undefined {
  if (typeof header !== 'string' || header.length > 8192) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** A check of requests against `token` (undefined: a random one no request can know). */
export function tokenCheck(token: string | undefined): Auth {
  // Required here, not imported: node:crypto loads with the hatches, not at start-up.
  const crypto = require('node:crypto') as typeof import('node:crypto');
  const secret = token ?? crypto.randomBytes(32).toString('hex');
  const digest = (s: string) => crypto.createHash('sha256').update(s).digest();
  const want = digest(secret);
  const isToken = (s: string) => crypto.timingSafeEqual(digest(s), want);
  const mac = (scope: string, expiry: string) =>
    crypto.createHmac('sha256', secret).update(`${scope}:${expiry}`).digest('hex');

  const bearer = (req: http.IncomingMessage): boolean => {
    const h = req.headers.authorization;
    if (typeof h !== 'string' || h.length > 1024) return false;
    const m = /^Bearer[ ]+(\S+)[ ]*$/i.exec(h);
    return m !== null && isToken(m[1]!);
  };
  const session = (req: http.IncomingMessage, name: string): boolean => {
    const v = cookieValue(req.headers.cookie, name);
    const m = v === undefined ? null : /^(\d{1,12})\.([0-9a-f]{64})$/.exec(v);
    if (m === null || Number(m[1]) * 1000 <= Date.now()) return false;
    return crypto.timingSafeEqual(Buffer.from(mac(name, m[1]!), 'hex'), Buffer.from(m[2]!, 'hex'));
  };

  return {
    hatch: (req) => bearer(req) || session(req, HATCH_COOKIE),
    debug: (req) => bearer(req) || session(req, DEBUG_COOKIE),
    isToken: (s) => s.length <= 1024 && isToken(s),
    cookies(req, prefix) {
      const expiry = String(Math.floor(Date.now() / 1000) + SESSION_SECONDS);
      const attrs = attributes(req, SESSION_SECONDS);
      const value = (name: string) => `${expiry}.${mac(name, expiry)}`;
      return [
        `${HATCH_COOKIE}=${value(HATCH_COOKIE)}; Path=${prefix}; ${attrs}`,
        `${DEBUG_COOKIE}=${value(DEBUG_COOKIE)}; Path=/; ${attrs}`,
      ];
    },
  };
}
