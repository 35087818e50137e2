/**
 * The server patches' one seam for code that may answer a request before the app does (today: the
 * maintenance hatches). The server patch knows only this interface; whoever plugs in knows nothing of
 * the patch. One slot, read once per request under the prefix: with nothing plugged in, the request
 * path costs one `undefined` check.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

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
