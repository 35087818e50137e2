/**
 * The maintenance hatches: token-protected URLs under HATCH_PREFIX (default `/_hatch`), plugged
 * into the server patches' pre-handler seam (src/pre-handler.ts), so they answer on the app's own
 * servers, before the app's handler, inside the request's context (a hatch request has its ID, and
 * its health queries are commented and recorded).
 *
 * - Off unless HATCH_TOKEN is set (24 characters or more); a request needs the token (./auth.ts), in
 *   the Authorization header or, after a login (`/login`, HATCH_DEBUG_ERRORS=on only), in a cookie.
 * - Without a valid token the hatches touch nothing: the app's handler answers as if they did not
 *   exist, and the attempt is counted (errors{kind=hatch_auth}). HATCH_HEALTH_PUBLIC opens the
 *   health summary (pass or fail, no details) to everyone.
 * - GET and HEAD only; which hatch answers is the router's table (./router.ts).
 * - src/register.ts loads this module at the first request under the prefix, not at start-up.
 */
import type * as http from 'node:http';
import type { PreHandler } from '../pre-handler';
import { storage } from '../context';
import { channels } from '../bus';
import { log } from '../log';
import { tokenCheck } from './auth';
import { login } from './login';
import { healthHatch } from './health';
import { route } from './router';
import { send, wantsHtml, type HatchDeps, type Reply } from './reply';

export type { HatchDeps } from './reply';

export function createHatches(deps: HatchDeps): PreHandler {
  const { config } = deps;
  const prefix = config.hatchPrefix;
  const auth = tokenCheck(config.hatchToken);

  function respond(req: http.IncomingMessage, res: http.ServerResponse, reply: Promise<Reply>, url: URL): void {
    const html = wantsHtml(req, url);
    reply.then(
      (r) => send(req, res, r, html),
      (err) => {
        log.warnOnce('hatch-serve', `hatches: serving ${url.pathname} failed: ${(err as Error)?.message}`);
        send(req, res, { status: 500, json: { error: 'the hatch failed; see the agent log' } }, false);
      },
    );
  }

  return {
    prefix,
    handle(req, res) {
      const ok = auth.hatch(req);
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://hatch.invalid');
      } catch {
        return false;
      }
      // The raw URL is under the prefix; its normalized path (`/_hatch/../x` is `/x`) must be too.
      if (!url.pathname.startsWith(prefix)) return false;
      const sub = url.pathname.slice(prefix.length);
      const method = req.method ?? 'GET';
      // The one URL that answers without a token (and only with the debug pages on): a browser's way in.
      if (config.hatchDebugErrors && sub === '/login') {
        login(req, res, auth, prefix);
        return true;
      }
      if (!ok) {
        if (config.hatchHealthPublic && sub === '/health' && (method === 'GET' || method === 'HEAD')) {
          respond(req, res, healthHatch(deps, false), url);
          return true;
        }
        // No doorbell: the app answers, as if the hatches were not there.
        if (channels.error.hasSubscribers)
          channels.error.publish({
            kind: 'hatch_auth',
            requestId: storage.getStore()?.id,
            message: 'a request to the hatches without a valid token',
          });
        return false;
      }
      if (method !== 'GET' && method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD');
        respond(req, res, Promise.resolve({ status: 405, json: { error: 'hatches answer GET only' } }), url);
        return true;
      }
      respond(req, res, route(sub, url.searchParams, deps, req), url);
      return true;
    },
  };
}
