/**
 * The requests hatches: the recent, the slowest and the errored requests the store
 * (src/sinks/recent.ts) kept, each with its timeline (an errored one with its error and stack), and
 * one request by its ID. HTML draws each as a waterfall (./pages.ts).
 */
import { escapeHtml, page, requestHtml, requestsHtml } from './pages';
import type { HatchDeps, Reply } from './reply';

export function requestsHatch(deps: HatchDeps, prefix: string): Reply {
  const recent = deps.recent.recentRequests();
  const slowest = deps.recent.slowest();
  const errored = deps.recent.erroredRequests();
  return {
    status: 200,
    json: { recent, slowest, errored, inFlight: deps.recent.inFlight, evicted: deps.recent.evicted },
    html: requestsHtml(recent, slowest, errored, prefix),
  };
}

/** `rest` is the URL's path after `/requests/`: the ID, percent-encoded or not. */
export function requestHatch(deps: HatchDeps, prefix: string, rest: string): Reply {
  let id = rest;
  try {
    id = decodeURIComponent(id);
  } catch {
    // kept as it came
  }
  const r = deps.recent.find(id);
  if (!r) {
    const json = { error: 'no such request among those kept', id };
    return {
      status: 404,
      json,
      html: page('request not found', `<p>No request <code>${escapeHtml(id)}</code> among those kept.</p>`),
    };
  }
  return { status: 200, json: r, html: requestHtml(r, prefix) };
}
