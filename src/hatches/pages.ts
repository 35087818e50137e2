/**
 * HTML of the hatches: self-contained pages (inline CSS, no script), every value escaped, since
 * SQL text, paths, hosts and request IDs can be chosen by whoever sends a request. The requests page
 * draws each request as a waterfall: one row per query, outgoing call and render, its bar placed at
 * its start offset and as wide as its duration, relative to the request's own duration. A request that
 * ended in an error shows it: a one-line summary in the recent list, the class, message and stack
 * frames in the errors list and on its own page (and on the debug page, ./debug.ts).
 */
import type { ErrorDetail } from '../bus';
import type { RequestRecord, TimelineEntry } from '../sinks/recent';

export function escapeHtml(v: unknown): string {
  return String(v).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

const CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
code,pre{font-family:ui-monospace,monospace;font-size:12px}pre{background:#f6f6f6;padding:1em;overflow:auto}
.pass{color:#17702a;font-weight:bold}.fail{color:#b00020;font-weight:bold}
.request{border:1px solid #ccc;border-radius:4px;padding:.5em .8em;margin:.8em 0}
.request h3{font-size:1em;margin:0 0 .4em 0;font-weight:normal}
.status-err{color:#b00020}
.row{display:flex;align-items:center;gap:.6em;margin:2px 0}
.label{flex:0 0 32em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-family:ui-monospace,monospace;font-size:12px}
.track{flex:1 1 auto;position:relative;height:14px;background:#f3f3f3;min-width:200px}
.bar{position:absolute;top:1px;bottom:1px;min-width:2px;border-radius:2px}
.bar-request{background:#9e9e9e}.bar-query{background:#1e6fd9}.bar-call{background:#e08a00}.bar-render{background:#7b3fbf}
.bar.error{outline:2px solid #b00020}
.cost{font-size:12px;color:#8a4b00}
.ms{flex:0 0 7.5em;text-align:right;font-size:12px;color:#555;white-space:nowrap}
.dropped,.errors{font-size:12px;color:#b00020;margin:.3em 0}
.error-detail{border-left:4px solid #b00020;padding:.2em .8em;margin:.5em 0}.error-summary{color:#b00020;margin:.3em 0}
.error-detail pre.stack{margin:.3em 0;white-space:pre-wrap}
`;

export function page(title: string, body: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><style>${CSS}</style></head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

export function jsonPage(title: string, value: unknown): string {
  return page(title, `<pre>${escapeHtml(JSON.stringify(value, null, 2))}</pre>`);
}

export interface HatchInfo {
  path: string;
  description: string;
  /** What using it costs the process (blocks the event loop, runs for seconds): its own line. */
  cost?: string;
  /** One of the app's own hatches (`hatch()`). */
  app?: boolean;
}

export function indexHtml(hatches: HatchInfo[]): string {
  const rows = hatches
    .map(
      (h) =>
        `<tr${h.app ? ' class="app-hatch"' : ''}><td><code>GET ${escapeHtml(h.path)}</code></td><td>${h.app ? "<i>the app's own</i>: " : ''}${escapeHtml(h.description)}${h.cost !== undefined ? `<br><span class="cost">cost: ${escapeHtml(h.cost)}</span>` : ''}</td></tr>`,
    )
    .join('');
  return page(
    'hatch-agent: maintenance hatches',
    `<table><tr><th>hatch</th><th>what it does</th></tr>${rows}</table><p>Every hatch needs <code>Authorization: Bearer &lt;HATCH_TOKEN&gt;</code> (or, in a browser, the cookie <code>/login</code> sets with HATCH_DEBUG_ERRORS=on); add <code>?format=json</code> or <code>?format=html</code> to choose the format.</p>`,
  );
}

export interface CheckResult {
  name: string;
  /** HATCH_HEALTH_URLS are `end-to-end` (checked and listed first); the rest are the app's `part`s. */
  layer?: 'end-to-end' | 'part';
  status: 'pass' | 'fail';
  latencyMs: number;
  detail: string;
}

export function healthHtml(status: 'pass' | 'fail', checks: CheckResult[], note: string): string {
  const rows = checks
    .map(
      (c) =>
        `<tr class="check" data-check="${escapeHtml(c.name)}" data-layer="${escapeHtml(c.layer ?? '')}"><td>${escapeHtml(c.name)}</td><td>${escapeHtml(c.layer ?? '')}</td><td class="${c.status}">${c.status}</td><td>${c.latencyMs} ms</td><td>${escapeHtml(c.detail)}</td></tr>`,
    )
    .join('');
  return page(
    `health: ${status}`,
    `<p class="${status}">${
      status === 'pass'
        ? 'all checks pass'
        : 'failing: ' +
          escapeHtml(
            checks
              .filter((c) => c.status === 'fail')
              .map((c) => c.name)
              .join(', '),
          )
    }</p><table><tr><th>check</th><th>layer</th><th>status</th><th>latency</th><th>detail</th></tr>${rows}</table><p>${escapeHtml(note)}</p>`,
  );
}

function pct(v: number, total: number): string {
  if (!(total > 0)) return '0';
  return String(Math.max(0, Math.min(100, Math.round((v / total) * 10000) / 100)));
}

function entryRow(e: TimelineEntry, total: number): string {
  // The request may end before an entry (a call left running): the scale covers both.
  const left = pct(e.offset, total);
  const width = pct(e.duration, total);
  const title = `${e.kind} at +${e.offset} ms for ${e.duration} ms (${e.outcome}): ${e.label}`;
  return `<div class="row entry entry-${e.kind}" data-kind="${e.kind}"><span class="label" title="${escapeHtml(e.label)}">${escapeHtml(e.label)}</span><div class="track"><div class="bar bar-${e.kind}${e.error ? ' error' : ''}" style="left:${left}%;width:${width}%" title="${escapeHtml(title)}"></div></div><span class="ms">${e.duration} ms</span></div>`;
}

/** The error a request ended in: class, message, status, and its stack frames. */
export function errorHtml(e: ErrorDetail): string {
  const head =
    e.kind === 'status'
      ? `<p class="error-head">The app answered <b class="error-status">${e.status}</b> without an error the agent saw (<span class="error-name">${escapeHtml(e.name)}</span>: <span class="error-message">${escapeHtml(e.message)}</span>).</p>`
      : `<p class="error-head"><b class="error-name">${escapeHtml(e.name)}</b>: <span class="error-message">${escapeHtml(e.message)}</span> → status <b class="error-status">${e.status}</b></p>`;
  const stack =
    e.stack.length > 0
      ? `<pre class="stack">${e.stack.map((f) => escapeHtml(f)).join('\n')}</pre>`
      : e.kind === 'status'
        ? ''
        : '<p class="stack-none">no stack</p>';
  return `<div class="error-detail" data-kind="${escapeHtml(e.kind)}">${head}${stack}</div>`;
}

/** `detail`: the error with its stack (else its one-line summary). */
export function waterfall(r: RequestRecord, prefix: string, detail = false): string {
  const end = r.timeline.reduce((m, e) => Math.max(m, e.offset + e.duration), r.duration);
  // A job's run (src/jobs.ts) is filed like a request: its outcome in place of the status.
  const job = r.job;
  const status = job
    ? `${job.outcome}${job.attempt > 1 ? ` (attempt ${job.attempt})` : ''}`
    : r.aborted
      ? 'aborted'
      : String(r.status);
  const what = job ? `job ${r.path}` : `${r.method} ${r.path}`;
  const head = `<h3><a href="${escapeHtml(prefix)}/requests/${encodeURIComponent(r.id)}?format=html"><code class="request-id">${escapeHtml(r.id)}</code></a> <b>${escapeHtml(what)}</b> → <span class="${r.aborted || r.status >= 500 ? 'status-err' : ''}">${escapeHtml(status)}</span> · ${r.duration} ms · ${job ? 'job' : 'route'} ${escapeHtml(r.route)} · ${escapeHtml(r.at)}</h3>`;
  const rows = [
    `<div class="row entry-request"><span class="label">${job ? 'job' : 'request'}</span><div class="track"><div class="bar bar-request" style="left:0%;width:${pct(r.duration, end)}%" title="${r.duration} ms"></div></div><span class="ms">${r.duration} ms</span></div>`,
    ...r.timeline.map((e) => entryRow(e, end)),
  ].join('');
  const dropped = r.dropped > 0 ? `<p class="dropped">${r.dropped} more entries not kept</p>` : '';
  const errors =
    r.errors.length > 0 ? `<ul class="errors">${r.errors.map((e) => `<li>${escapeHtml(e)}</li>`).join('')}</ul>` : '';
  let error = '';
  if (r.error != null)
    error = detail
      ? errorHtml(r.error)
      : `<p class="error-summary">${escapeHtml(r.error.name)}: ${escapeHtml(r.error.message)}</p>`;
  return `<section class="request${job ? ' job' : ''}" data-request-id="${escapeHtml(r.id)}">${head}${error}<div class="timeline">${rows}</div>${dropped}${errors}</section>`;
}

export function requestsHtml(
  recent: RequestRecord[],
  slowest: RequestRecord[],
  errored: RequestRecord[],
  prefix: string,
): string {
  const slowRows = slowest
    .map(
      (r) =>
        `<tr><td><a href="${escapeHtml(prefix)}/requests/${encodeURIComponent(r.id)}?format=html"><code>${escapeHtml(r.id)}</code></a></td><td>${escapeHtml(r.method)} ${escapeHtml(r.path)}</td><td>${escapeHtml(r.route)}</td><td>${r.aborted ? 'aborted' : r.status}</td><td>${r.duration} ms</td><td>${r.timeline.length + r.dropped}</td></tr>`,
    )
    .join('');
  const legend =
    '<p>Bars: <span class="bar-request">&nbsp;request&nbsp;</span> <span class="bar-query">&nbsp;query&nbsp;</span> (SQL as sent; a Redis command as its name and first key, never its values) <span class="bar-call">&nbsp;outgoing call&nbsp;</span> <span class="bar-render">&nbsp;render&nbsp;</span>, placed at their start and as long as they took. <code>?format=json</code> for scripts.</p>';
  return page(
    'recent requests',
    `${legend}<h2>Errors, newest first (${errored.length})</h2><div class="errored">${errored.map((r) => waterfall(r, prefix, true)).join('')}</div>` +
      `<h2>Slowest (${slowest.length})</h2><table class="slowest"><tr><th>ID</th><th>request</th><th>route</th><th>status</th><th>duration</th><th>entries</th></tr>${slowRows}</table>` +
      `<h2>Recent, newest first (${recent.length})</h2><div class="recent">${recent.map((r) => waterfall(r, prefix)).join('')}</div>`,
  );
}

export function requestHtml(r: RequestRecord, prefix: string): string {
  return page(`request ${r.id}`, waterfall(r, prefix, true));
}
