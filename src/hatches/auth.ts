/**
 * The hatches' token check: `Authorization: Bearer <HATCH_TOKEN>`, compared in constant time
 * (SHA-256 digests of both, so the lengths are equal, then crypto.timingSafeEqual). node:crypto is
 * loaded here, with the hatches, at their first request.
 * Limitations: one token, no scopes; a header longer than 1024 characters is refused unread.
 */
import type * as http from 'node:http';

/** A check of requests against `token` (undefined: a random one no request can know). */
export function tokenCheck(token: string | undefined): (req: http.IncomingMessage) => boolean {
  // Required here, not imported: node:crypto loads with the hatches, not at start-up.
  const crypto = require('node:crypto') as typeof import('node:crypto');
  const digest = (s: string) => crypto.createHash('sha256').update(s).digest();
  const want = digest(token ?? crypto.randomBytes(32).toString('hex'));
  return (req) => {
    const h = req.headers.authorization;
    if (typeof h !== 'string' || h.length > 1024) return false;
    const m = /^Bearer[ ]+(\S+)[ ]*$/i.exec(h);
    if (m === null) return false;
    return crypto.timingSafeEqual(digest(m[1]!), want);
  };
}
