/**
 * The hatches' one table: each hatch's path as the index shows it, what it does, the sub-path it
 * answers and its handler. The index page and the 404's list are made from the same table, so a
 * hatch listed is a hatch served. Sub-paths are what follows HATCH_PREFIX; `/` is the index too.
 * A hatch with a cost (it blocks the event loop, or runs for seconds) says it on its own line. The
 * app's own hatches (`hatch()`, ./own.ts) follow the agent's, which they can never shadow.
 */
import type * as http from 'node:http';
import { indexHtml, jsonPage, page, type HatchInfo } from './pages';
import { logoutCookies } from './auth';
import { healthHatch } from './health';
import { errorHatch } from './error';
import { mailHatch } from './mail';
import { statsdHatch } from './statsd';
import { configHatch } from './config';
import { requestHatch, requestsHatch } from './requests';
import { reportHatch, reportCost, profileHatch, profileCost, heapHatch, heapCost } from './inside';
import { appHatchAt, appHatchList, serveAppHatch } from './own';
import { queuePingHatch } from './queue-ping';
import type { HatchDeps, Reply } from './reply';

export interface HatchRequest {
  req: http.IncomingMessage;
  deps: HatchDeps;
  prefix: string;
  query: URLSearchParams;
  /** For a route ending in `*`: the sub-path after it. */
  rest: string;
}

interface Hatch extends HatchInfo {
  /** The sub-path served: exact, or (ending in `*`) every sub-path that starts with what precedes it. */
  route: string;
  serve(r: HatchRequest): Reply | Promise<Reply>;
  /** What using it costs the process, when it costs more than a look at a store. */
  costOf?(deps: HatchDeps): string;
}

const HATCHES: Hatch[] = [
  {
    path: '',
    route: '',
    description: 'this index: every hatch and what it does',
    serve: (r) => index(r.prefix, r.deps),
  },
  {
    path: '/health',
    route: '/health',
    description:
      'live checks, each with its own timeout and latency: first each HATCH_HEALTH_URLS URL (end to end) answers below 500, then the parts: every pg Pool and Client the app uses answers SELECT 1 (through its own pool or client), every mail transport passes verify(), every BullMQ Queue the app created gives its waiting and active counts and has a worker connected, StatsD gets a probe, each HATCH_HEALTH_PATHS directory takes a write and each file a read; 200 when all pass, 503 naming the failing checks; ?history=1 shows the last 20 results of each check',
    serve: (r) => healthHatch(r.deps, true, r.query),
  },
  {
    path: '/mail?to=…&msg=…',
    route: '/mail',
    description:
      'sends a test message (subject and body name this request) through each mail transport the app created, or ?transport=<n>, to one address HATCH_MAIL_TO allows, and answers with what each transport answered: accepted, rejected, response, message ID',
    serve: (r) => mailHatch(r.deps, r.query),
  },
  {
    path: '/error?msg=…',
    route: '/error',
    description:
      'raises a test error inside this request, through the path app errors take (hatch:error, errors counter, stderr with the request ID, the request record); answers 500',
    serve: (r) => errorHatch(r.query),
  },
  {
    path: '/statsd?msg=…',
    route: '/statsd',
    description: 'sends a test counter to StatsD and answers with the exact line sent',
    serve: (r) => statsdHatch(r.deps, r.query),
  },
  {
    path: '/queue-ping?queue=…',
    route: '/queue-ping',
    description:
      "enqueues a hatch-ping job on one of the app's BullMQ queues and waits (HATCH_HEALTH_TIMEOUT_MS) for a worker to complete it: the job ID, its time to start and to finish and the worker that took it; 503 when no worker took it",
    serve: (r) => queuePingHatch(r.deps, r.query),
  },
  {
    path: '/config',
    route: '/config',
    description:
      'effective configuration, agent and Node versions, every patch with the module version it patched (or why not); secrets redacted',
    serve: (r) => configHatch(r.deps),
  },
  {
    path: '/requests',
    route: '/requests',
    description:
      'errored (status 500 or above, with error and stack), recent and slowest requests, each with its timeline of queries, outgoing calls (method, host, path) and renders (a waterfall in HTML; ?format=json for scripts)',
    serve: (r) => requestsHatch(r.deps, r.prefix),
  },
  {
    path: '/requests/<id>',
    route: '/requests/*',
    description: 'one request of the requests hatch, with its error and stack if it ended in one',
    serve: (r) => requestHatch(r.deps, r.prefix, r.rest),
  },
  {
    path: '/report',
    route: '/report',
    description:
      "Node's diagnostic report: JavaScript and native stacks, heap, libuv handles, resource usage; the environment redacted as /config redacts it, no network lookups",
    serve: (r) => reportHatch(r.deps),
    costOf: () => reportCost(),
  },
  {
    path: '/profile?seconds=N',
    route: '/profile',
    description:
      'a CPU profile of the live process (node:inspector in-process, no debugger port): a .cpuprofile download for Chrome DevTools or speedscope (JSON, or ?download); in HTML the top functions by self time',
    serve: (r) => profileHatch(r.query, r.req),
    costOf: () => profileCost(),
  },
  {
    path: '/heap',
    route: '/heap',
    description:
      'a heap snapshot of the live process, streamed as a .heapsnapshot download (Chrome DevTools Memory tab)',
    serve: (r) => heapHatch(r.deps, r.req),
    costOf: (deps) => heapCost(deps),
  },
  {
    path: '/logout',
    route: '/logout',
    description: 'clears the session cookies a login (/login, with HATCH_DEBUG_ERRORS=on) set in this browser',
    serve: (r) => ({
      status: 200,
      json: { loggedOut: true },
      html: page('logged out', '<p>The hatch cookies of this browser are cleared.</p>'),
      headers: { 'set-cookie': logoutCookies(r.req, r.prefix) },
    }),
  },
];

function index(prefix: string, deps: HatchDeps): Reply {
  const list = [
    ...HATCHES.map((h) => ({
      path: prefix + h.path,
      description: h.description,
      ...(h.costOf !== undefined ? { cost: h.costOf(deps) } : {}),
    })),
    ...appHatchList(prefix),
  ];
  return { status: 200, json: { hatches: list }, html: indexHtml(list) };
}

function notFound(prefix: string): Reply {
  const json = {
    error: 'no such hatch',
    hatches: [...HATCHES.map((h) => prefix + h.path), ...appHatchList(prefix).map((h) => h.path)],
  };
  return { status: 404, json, html: jsonPage('no such hatch', json) };
}

/** The reply of the hatch at `sub` (the path after the prefix), or the 404 listing every hatch. */
export async function route(
  sub: string,
  query: URLSearchParams,
  deps: HatchDeps,
  req: http.IncomingMessage,
): Promise<Reply> {
  const prefix = deps.config.hatchPrefix;
  const path = sub === '/' ? '' : sub;
  for (const h of HATCHES) {
    const below = h.route.endsWith('*') ? h.route.slice(0, -1) : undefined;
    if (below !== undefined ? path.startsWith(below) : path === h.route) {
      return h.serve({ req, deps, prefix, query, rest: below !== undefined ? path.slice(below.length) : '' });
    }
  }
  const own = appHatchAt(path);
  if (own !== undefined) return serveAppHatch(own, query, req);
  return notFound(prefix);
}
