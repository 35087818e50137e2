/**
 * Serving the app's own hatches (registered with `hatch()`, src/app-hatches.ts): `<prefix>/<name>`
 * calls the handler with `{ query, request }` inside the hatch request's context (the router is
 * called there synchronously, so the handler's queries and calls carry the request's ID and land in
 * its record), and answers what it returned or resolved to as JSON, or as a page showing that JSON.
 * HEAD answers 200 without running the handler. A throw or a rejection answers 500 with the error's
 * message (and nothing of its stack); so does a value that is no JSON (a cycle, a BigInt). The app
 * is not told: its handler's error is its answer.
 * Limitations: no timeout (a handler that never settles leaves its request open, as an app route
 * would); the answer is always JSON, a handler cannot choose its status or headers.
 */
import type * as http from 'node:http';
import { appHatches, type AppHatch } from '../app-hatches';
import { jsonPage } from './pages';
import type { Reply } from './reply';

/** The app hatch at `sub` (`/<name>`), or undefined. */
export function appHatchAt(sub: string): AppHatch | undefined {
  if (!sub.startsWith('/')) return undefined;
  return appHatches().get(sub.slice(1));
}

/** The app hatches as the index lists them. */
export function appHatchList(prefix: string): Array<{ path: string; description: string; app: true }> {
  return [...appHatches().values()].map((h) => ({
    path: `${prefix}/${h.name}`,
    description: h.description || `the app's own hatch ${h.name}`,
    app: true as const,
  }));
}

function failed(h: AppHatch, err: unknown): Reply {
  const message = err instanceof Error ? err.message : String(err);
  const json = { error: `the app's hatch ${h.name} failed`, message };
  return { status: 500, json, html: jsonPage(`hatch ${h.name} failed`, json) };
}

function answer(h: AppHatch, value: unknown): Reply {
  const json = value === undefined ? null : value;
  try {
    JSON.stringify(json);
  } catch (err) {
    return failed(h, new Error(`its answer is no JSON (${(err as Error)?.message})`));
  }
  return { status: 200, json, html: jsonPage(`hatch ${h.name}`, json) };
}

export function serveAppHatch(h: AppHatch, query: URLSearchParams, req: http.IncomingMessage): Reply | Promise<Reply> {
  // No prototype: a `?__proto__=` is a name like any other.
  const q: Record<string, string> = Object.create(null);
  // HEAD asks whether the hatch is there: the handler (which may do something) is not run.
  if (req.method === 'HEAD') return { status: 200, json: null };
  for (const [k, v] of query) if (!(k in q)) q[k] = v;
  let out: unknown;
  try {
    out = h.handler({ query: q, request: req });
  } catch (err) {
    return failed(h, err);
  }
  if (out !== null && typeof (out as PromiseLike<unknown>)?.then === 'function')
    return Promise.resolve(out).then(
      (v) => answer(h, v),
      (err) => failed(h, err),
    );
  return answer(h, out);
}
