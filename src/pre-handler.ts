/**
 * The server patches' one seam for code that may answer a request before the app does (today: the
 * maintenance hatches). The server patch knows only this interface; whoever plugs in knows nothing of
 * the patch. One slot, read once per request under the prefix: with nothing plugged in, the request
 * path costs one `undefined` check.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestContext } from './context';

export interface PreHandler {
  /** Requests whose URL is this prefix, or starts with it followed by `/` or `?`, are offered first. */
  prefix: string;
  /** Serves the request and returns true, or returns false (and touches nothing) to let the app have it. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
}

let current: PreHandler | undefined;

export function setPreHandler(h: PreHandler | undefined): void {
  current = h;
}

export function preHandler(): PreHandler | undefined {
  return current;
}

/**
 * The second seam: a watcher offered every request outside the prefix (before the app's handler),
 * with its context; what it returns runs just before the app's listeners get the request (once Node
 * has read the request's headers: the debug cookie is taken out there). Set only with HATCH_DEBUG_ERRORS=on (the debug pages, src/hatches/debug.ts): with
 * none set, the request path costs one `undefined` check.
 */
export type ResponseWatcher = (
  req: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
) => ((req: IncomingMessage) => void) | undefined;

let watcher: ResponseWatcher | undefined;

export function setResponseWatcher(w: ResponseWatcher | undefined): void {
  watcher = w;
}

export function responseWatcher(): ResponseWatcher | undefined {
  return watcher;
}

/** The debug pages' cookie (Path=/), named here so that the watcher can look for it without loading them. */
export const DEBUG_COOKIE = 'hatch_debug';
