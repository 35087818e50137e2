/**
 * Every SQL comment the agent writes, and the one entry point the database patches call:
 *
 *   sqlToSend(text, driver)  // driver: 'pg' | 'postgres' | 'mysql2'
 *
 * It reads the current request context (src/context.ts), the process's run (src/run.ts) and the
 * active configuration itself, and returns the text to send, or `undefined` to send `text`
 * unchanged (comments off, nothing to say, or the text already carries a comment it must not get
 * a second one over). It never throws for a string. The caller decides only *whether* a text may
 * change at all: a named or prepared statement whose server-side identity is its text (pg's
 * `name`, postgres.js with `prepare: true`, mysql2's `execute`) must not be passed in. A caller
 * that maps a server error's position back into the app's text uses `positionInText(sent, text, pos)`.
 *
 * Formats (HATCH_SQL_COMMENT):
 * - `on` (the default): prepended, never appended, so PostgreSQL's track_activity_query_size cannot
 *   cut it off and log readers see it first. In a request `/* <id> *\/ `, or, once the framework
 *   matched a route, `/* <id> GET /users/:id *\/ `; outside requests `/* job:<name> run:<id> *\/ `.
 *   The ID is allowlisted; the route template comes from app code, and is still neutralised: every
 *   character outside a small URL-path set (`*`, quotes, blanks, `?`, `%`, control and non-ASCII
 *   characters, and `:` for mysql2, whose client-side placeholders could read `:id`) is
 *   percent-encoded, so no route can end the comment, open a nested one (PostgreSQL nests
 *   `/* /* *\/ *\/`) or hold a placeholder. A text that already starts with one of our comments
 *   gets no second; an app's own comment does not stop ours.
 * - `sqlcommenter`: the sqlcommenter specification (google.github.io/sqlcommenter/spec), read by
 *   pganalyze, Datadog DBM, Cloud SQL/AlloyDB Query Insights and PlanetScale: `key='value'` pairs,
 *   key and value URL-encoded (encodeURIComponent, lone surrogates made U+FFFD first), then `'`
 *   escaped as `\'`, values in single quotes, sorted by key, joined by `,`, appended as
 *   ` /*…*\/` before a trailing `;`. Keys: `db_driver`, and `request_id`, `route` (the template,
 *   once known) and `traceparent` (HATCH_TRACEPARENT=on and the ID can be a trace-id: the same
 *   header an outgoing call of the request carries, src/propagation.ts) in a request; `job` and
 *   `run` outside requests. As the spec says, a statement that holds any comment (`--` or `/*`,
 *   anywhere: a string literal holding one counts too) is never changed; neither is a blank one.
 * HATCH_RUN_COMMENT=off leaves SQL outside requests unchanged in both formats.
 * Limitations: the route is read when the query is sent, so a query issued before the framework
 * matched (a middleware's) carries none; `on` keeps its prepended form for the ID, so a tool that
 * reads only sqlcommenter needs `sqlcommenter`.
 */
import { isValidRequestId } from './request-id';
import { storage, finalRoute, type RequestContext } from './context';
import { activeConfig, type Config } from './config';
import { currentRun, runSqlComment } from './run';
import { traceparentFor } from './propagation';

/** The drivers that call sqlToSend: the sqlcommenter `db_driver` value, and driver-specific escaping. */
export type SqlDriver = 'pg' | 'postgres' | 'mysql2';

const ID = '[A-Za-z0-9._:-]{1,128}';
/** What a neutralised route may hold (see routeText): no blank, no `*`, no quote, no `?`. */
const ROUTE = '\\/[A-Za-z0-9/_.~:@!$&+,;=(){}\\[\\]|%-]*';
const OURS = new RegExp(`^/\\* (?:${ID}(?: (?:[A-Z]{1,20} )?${ROUTE})?|job:[A-Za-z0-9_-]{1,64} run:${ID}) \\*/ `);
/** Our sqlcommenter comment at the end: pairs in quotes, one of them db_driver, before an optional `;`. */
const OURS_APPENDED =
  /\/\*(?:[A-Za-z0-9%._~!()*-]+='(?:[^'\\]|\\.)*',)*db_driver='(?:[^'\\]|\\.)*'(?:,[A-Za-z0-9%._~!()*-]+='(?:[^'\\]|\\.)*')*\*\/\s*;?\s*$/;

/** Whether the text carries one of the comments we write (any format), so it gets no second. */
export function hasRequestComment(text: string): boolean {
  // '/' is char 47: skip the regexes for the common case of plain SQL.
  if (text.charCodeAt(0) === 47 && OURS.test(text)) return true;
  return endsWithOurs(text);
}

function endsWithOurs(text: string): boolean {
  let i = text.length - 1;
  while (i >= 0 && isBlank(text.charCodeAt(i))) i--;
  const last = text.charCodeAt(i);
  if (last !== 47 && last !== 59) return false; // '/' or ';'
  if (!text.includes("db_driver='")) return false; // a native scan before the regex
  // The comment is near the end: a bounded tail keeps the regex's work bounded on long statements.
  return OURS_APPENDED.test(text.length > 4096 ? text.slice(-4096) : text);
}

function isBlank(ch: number): boolean {
  return ch === 32 || ch === 9 || ch === 10 || ch === 13 || ch === 12;
}

/** `/* <id> *\/ <text>`, or `undefined` when it must go out unchanged (kept for callers without a context). */
export function commentedSql(text: string, id: string): string | undefined {
  if (hasRequestComment(text) || !isValidRequestId(id)) return undefined;
  return '/* ' + id + ' */ ' + text;
}

/**
 * The text with the run's prefix (src/run.ts runSqlComment: built once, from an allowlisted ID and a
 * metric-safe job name), or `undefined` when it already carries one of our comments.
 */
export function runCommentedSql(text: string, prefix: string): string | undefined {
  return hasRequestComment(text) ? undefined : prefix + text;
}

/** Whether sqlToSend may change anything now: lets a patch skip its work for a query that goes out as it is. */
export function sqlCommentWanted(): boolean {
  const c = activeConfig();
  return c.sqlComment && (c.runComment || storage.getStore() !== undefined);
}

/** sqlCommentWanted for a query issued in `store` (undefined: outside any request), read by the caller already. */
export function sqlCommentWantedIn(store: RequestContext | undefined): boolean {
  const c = activeConfig();
  return c.sqlComment && (c.runComment || store !== undefined);
}

/** The text to send for `text` in the current context, or `undefined` to send it unchanged (see the header). */
export function sqlToSend(text: string, driver: SqlDriver): string | undefined {
  return sqlToSendIn(text, driver, storage.getStore());
}

/**
 * sqlToSend for a query issued in `store` (undefined: outside any request), for a driver that sends
 * it later, outside its caller's context (mysql2 starts a queued pool query from another's callback).
 */
export function sqlToSendIn(text: string, driver: SqlDriver, store: RequestContext | undefined): string | undefined {
  const c = activeConfig();
  if (!c.sqlComment || typeof text !== 'string') return undefined;
  if (c.sqlCommentFormat === 'sqlcommenter') return sqlcommenterText(text, store, driver, c);
  if (store !== undefined) return prefixedText(text, store, driver);
  const prefix = runSqlComment();
  return prefix === undefined ? undefined : runCommentedSql(text, prefix);
}

/**
 * A server error's `position` (1-based, in characters of the text sent) as a position in the app's
 * own text: past a prepended comment, and past an appended one (PostgreSQL points past the comment
 * for an error at the end of input or at the final `;`). A position inside our comment, which no
 * error of the app's SQL can have, becomes the place the comment was put.
 */
export function positionInText(sent: string, text: string, position: number): number {
  if (sent === text) return position;
  // sent = A + Y + B, text = A + X + B: the longest common start A and end B.
  const max = Math.min(sent.length, text.length);
  let a = 0;
  while (a < max && sent.charCodeAt(a) === text.charCodeAt(a)) a++;
  let b = 0;
  while (b < max - a && sent.charCodeAt(sent.length - 1 - b) === text.charCodeAt(text.length - 1 - b)) b++;
  const y = sent.length - a - b;
  const x = text.length - a - b;
  if (position <= a) return position;
  if (position > a + y) return position - y + x;
  return a + 1;
}

/** The route template the framework matched, or undefined while none has. */
function knownRoute(store: RequestContext): string | undefined {
  const route = finalRoute(store);
  return route === 'unmatched' || route === '' ? undefined : route;
}

function methodOf(store: RequestContext): string | undefined {
  // The http and http2 server patches keep the request's method on its context.
  const m = (store as { method?: unknown }).method;
  return typeof m === 'string' && /^[A-Z]{1,20}$/.test(m) ? m : undefined;
}

// What a route keeps as it is in the `on` format; everything else is percent-encoded.
const ROUTE_PLAIN = /^[A-Za-z0-9/_.~:@!$&+,;=(){}[\]|-]*$/;
const ROUTE_OTHER = /[^A-Za-z0-9/_.~:@!$&+,;=(){}[\]|-]/gu;
const ROUTE_OTHER_MYSQL = /[^A-Za-z0-9/_.~@!$&+,;=(){}[\]|-]/gu;

function percent(ch: string): string {
  let e: string;
  try {
    e = encodeURIComponent(ch);
  } catch {
    return '%EF%BF%BD'; // a lone surrogate: U+FFFD, as a well-formed string would hold
  }
  if (e !== ch) return e;
  return '%' + ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0');
}

// The last route neutralised, per driver kind: a request's queries (and most requests) share one.
let lastRaw: string | undefined;
let lastMysql = false;
let lastSafe: string | undefined;

/** The route as the `on` format writes it: starting with `/`, no character that could end or nest a comment. */
export function routeText(route: string, driver: SqlDriver): string | undefined {
  const mysql = driver === 'mysql2';
  if (route === lastRaw && mysql === lastMysql) return lastSafe;
  let safe =
    !mysql && ROUTE_PLAIN.test(route) ? route : route.replace(mysql ? ROUTE_OTHER_MYSQL : ROUTE_OTHER, percent);
  if (safe.charCodeAt(0) !== 47) safe = '/' + safe; // ours always start with '/': hasRequestComment knows them by it
  lastRaw = route;
  lastMysql = mysql;
  lastSafe = safe;
  return safe;
}

function prefixedText(text: string, store: RequestContext, driver: SqlDriver): string | undefined {
  const id = store.id;
  if (hasRequestComment(text) || !isValidRequestId(id)) return undefined;
  const route = knownRoute(store);
  if (route === undefined) return '/* ' + id + ' */ ' + text;
  const safe = routeText(route, driver);
  const method = methodOf(store);
  return '/* ' + id + ' ' + (method === undefined ? '' : method + ' ') + safe + ' */ ' + text;
}

/** Whether the statement holds a comment of any kind, as the sqlcommenter spec asks (conservatively). */
export function hasAnyComment(text: string): boolean {
  return text.includes('--') || text.includes('/*');
}

/** A key or a value as the spec serialises it: URL-encoded, then `'` escaped with a backslash. */
export function sqlcommenterEncode(raw: string): string {
  let encoded: string;
  try {
    encoded = encodeURIComponent(raw);
  } catch {
    encoded = encodeURIComponent(raw.replace(/[\uD800-\uDFFF]/g, (c, i: number) => wellFormed(raw, c, i)));
  }
  return encoded.includes("'") ? encoded.replace(/'/g, "\\'") : encoded;
}

function wellFormed(s: string, c: string, i: number): string {
  const code = c.charCodeAt(0);
  if (code <= 0xdbff) {
    const next = s.charCodeAt(i + 1);
    return next >= 0xdc00 && next <= 0xdfff ? c : '\uFFFD';
  }
  const prev = s.charCodeAt(i - 1);
  return prev >= 0xd800 && prev <= 0xdbff ? c : '\uFFFD';
}

/** `/*k1='v1',k2='v2'*\/`: the pairs serialised, sorted by serialised key, comma-joined (the spec's comment). */
export function sqlcommenterComment(pairs: Record<string, string>): string {
  const items: string[] = [];
  for (const key of Object.keys(pairs))
    items.push(sqlcommenterEncode(key) + "='" + sqlcommenterEncode(pairs[key]!) + "'");
  items.sort();
  return '/*' + items.join(',') + '*/';
}

/** The text with `comment` appended as the spec says: after the statement, before a trailing `;`. */
export function appendComment(text: string, comment: string): string {
  let end = text.length;
  while (end > 0 && isBlank(text.charCodeAt(end - 1))) end--;
  const after = text.slice(end); // blanks after the statement (and after its `;`) stay where they were
  if (end > 0 && text.charCodeAt(end - 1) === 59 /* ; */) {
    let body = end - 1;
    while (body > 0 && isBlank(text.charCodeAt(body - 1))) body--;
    return text.slice(0, body) + ' ' + comment + ';' + after;
  }
  return text.slice(0, end) + ' ' + comment + after;
}

function sqlcommenterText(
  text: string,
  store: RequestContext | undefined,
  driver: SqlDriver,
  c: Config,
): string | undefined {
  if (hasAnyComment(text)) return undefined;
  let blank = true;
  for (let i = 0; i < text.length && blank; i++) blank = isBlank(text.charCodeAt(i));
  if (blank) return undefined;
  // The keys in their sorted order (db_driver < job < request_id < route < run < traceparent), so
  // the comment is built without a sort; sqlcommenterComment is the general form the tests check it by.
  let out: string;
  if (store !== undefined) {
    const id = store.id;
    if (!isValidRequestId(id)) return undefined;
    out = "/*db_driver='" + driver + "',request_id='" + sqlcommenterEncode(id) + "'";
    const route = knownRoute(store);
    if (route !== undefined) out += ",route='" + sqlcommenterEncode(route) + "'";
    const tp = c.traceparent ? traceparentFor(id) : undefined;
    if (tp !== undefined) out += ",traceparent='" + tp + "'";
  } else {
    if (!c.runComment) return undefined;
    const run = currentRun();
    out =
      "/*db_driver='" + driver + "',job='" + sqlcommenterEncode(run.job) + "',run='" + sqlcommenterEncode(run.id) + "'";
  }
  return appendComment(text, out + '*/');
}

const OPERATIONS = [
  'SELECT',
  'INSERT',
  'UPDATE',
  'DELETE',
  'MERGE',
  'WITH',
  'VALUES',
  'TABLE',
  'BEGIN',
  'START',
  'COMMIT',
  'ROLLBACK',
  'SAVEPOINT',
  'RELEASE',
  'CREATE',
  'ALTER',
  'DROP',
  'TRUNCATE',
  'COPY',
  'CALL',
  'DO',
  'SET',
  'RESET',
  'SHOW',
  'EXPLAIN',
  'VACUUM',
  'ANALYZE',
  'LISTEN',
  'NOTIFY',
  'UNLISTEN',
  'PREPARE',
  'EXECUTE',
  'DEALLOCATE',
  'DECLARE',
  'FETCH',
  'CLOSE',
  'MOVE',
  'GRANT',
  'REVOKE',
  'LOCK',
  'REFRESH',
  'DISCARD',
  'REINDEX',
  'CLUSTER',
  'COMMENT',
];
/** The keywords by length, so a word is compared in place with a few of them: no string is made per query. */
const BY_LENGTH: string[][] = [];
for (const k of OPERATIONS) (BY_LENGTH[k.length] ??= []).push(k);
const LONGEST = Math.max(...OPERATIONS.map((k) => k.length));

// The last statement read and its keyword: an app sends the same few texts over and over (most
// often the very same string), so the scan below runs once per new text, not once per query.
// Only a short text is held, so no large statement is kept alive until the next query.
const REMEMBERED_TEXT = 1024;
let lastText: string | undefined;
let lastOperation = 'OTHER';

/**
 * The statement's first keyword (SELECT, INSERT, …) or OTHER: a bounded metric dimension.
 * Leading blanks, comments (ours included) and parentheses are skipped.
 */
export function sqlOperation(text: string): string {
  if (text === lastText) return lastOperation;
  const op = operationOf(text);
  if (text.length <= REMEMBERED_TEXT) {
    lastText = text;
    lastOperation = op;
  }
  return op;
}

function operationOf(text: string): string {
  let i = 0;
  const n = text.length;
  while (i < n) {
    const ch = text.charCodeAt(i);
    if (ch === 32 || ch === 9 || ch === 10 || ch === 13 || ch === 40 /* ( */) {
      i++;
    } else if (ch === 47 && text.charCodeAt(i + 1) === 42) {
      const end = text.indexOf('*/', i + 2);
      if (end < 0) return 'OTHER';
      i = end + 2;
    } else if (ch === 45 && text.charCodeAt(i + 1) === 45) {
      const end = text.indexOf('\n', i + 2);
      if (end < 0) return 'OTHER';
      i = end + 1;
    } else {
      break;
    }
  }
  let j = i;
  while (j < n && j - i <= LONGEST) {
    const ch = text.charCodeAt(j) | 32; // ASCII lower-case
    if (ch < 97 || ch > 122) break;
    j++;
  }
  const candidates = BY_LENGTH[j - i];
  if (candidates === undefined) return 'OTHER';
  next: for (const k of candidates) {
    for (let c = 0; c < k.length; c++) {
      if ((text.charCodeAt(i + c) & ~32) !== k.charCodeAt(c)) continue next; // a letter, upper-cased
    }
    return k;
  }
  return 'OTHER';
}
