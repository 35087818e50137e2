/**
 * The recent-requests store behind the requests hatch: a sink on the bus. While a request is in
 * flight its queries, outgoing calls, renders and errors are collected under its ID; when its
 * `hatch:http.server` event arrives the record is filed among the recent (a ring of
 * HATCH_RECENT_REQUESTS) and, if slow enough, the slowest (HATCH_SLOW_REQUESTS). A request that
 * ended in an error (status 500 or above: its event carries an `error`) is also kept in a ring of its
 * own (HATCH_ERROR_REQUESTS), so that a rare error is not pushed out of the recent ones by traffic.
 * A job's run (`hatch:job`: a BullMQ attempt, a schedule's tick) is filed the same way, as a record
 * marked with `job` (method `JOB`, status 200 or 500), its queries collected under its ID.
 *
 * One ID can be shared by two requests in flight in the same process (a service calling itself: the
 * ID is propagated, the inner request adopts it). A request takes only the entries that began
 * within its own time span; the rest wait for the request they belong to.
 *
 * A `withRequestId` scope is neither a request nor a job, and nothing tells when it ends, so no
 * record of it is filed: its `hatch:scope` event (src/context.ts) marks its ID, and nothing is held
 * in flight under a marked ID. Held, a scope's queries waited until MAX_PENDING later scopes had
 * pushed them out: a worker with a scope per message kept 1,000 in flight for nothing (in
 * the requests hatch's `inFlight` and `evicted` too) and paid for it on every query. The last
 * MAX_SCOPES scope IDs are marked. A request that adopts a marked ID (a scope calling its own
 * process over HTTP) files without its timeline; its filing unmarks the ID for the next one.
 *
 * An entry that ends after its request was filed (a query the handler did not wait for, a call whose
 * socket closes later) is added to the request's record in the recent ring, if it began within the
 * request's span and the record is still there: it shows past the request's end. Held in flight
 * instead, it waited for a record that had been filed already, until MAX_PENDING later requests had
 * pushed it out. The records are found by a hash of their ID (LATE_SLOTS of them, the newest in
 * each): an entry whose record's slot was taken since is held as before.
 *
 * Everything is bounded: MAX_ENTRIES timeline entries per request (the rest only counted),
 * SQL cut to MAX_SQL characters, MAX_PENDING requests in flight (the oldest is dropped first).
 */
import {
  channels,
  Subscriptions,
  type DbQueryEvent,
  type ErrorDetail,
  type ErrorEvent,
  type HttpClientEvent,
  type HttpServerEvent,
  type JobEvent,
  type RenderEvent,
  type ScopeEvent,
} from '../bus';
import { now } from '../clock';

// Used through local names: tsc compiles a use of an exported const to a load from `exports` on
// every use (patches/redis/command.ts's MAX_KEY alone cost its first-key lookup about 0.1 µs a call).
const ENTRIES_LIMIT = 100;
const SQL_LIMIT = 2000;
const PENDING_LIMIT = 1000;
const SCOPES_LIMIT = 1000;
export const MAX_ENTRIES = ENTRIES_LIMIT;
export const MAX_SQL = SQL_LIMIT;
export const MAX_PENDING = PENDING_LIMIT;
export const MAX_SCOPES = SCOPES_LIMIT;
const MAX_ERRORS = 10;

export interface TimelineEntry {
  kind: 'query' | 'call' | 'render';
  /** SQL as sent (cut to MAX_SQL), `GET host/path` (no query string), or `engine template`. */
  label: string;
  /** ms from the request's start */
  offset: number;
  duration: number;
  /** `error`, or the call's status code */
  outcome: string;
  error: boolean;
}

export interface RequestRecord {
  id: string;
  method: string;
  route: string;
  path: string;
  status: number;
  aborted: boolean;
  /** Wall-clock time the request began (ISO 8601). */
  at: string;
  duration: number;
  timeline: TimelineEntry[];
  /** Timeline entries beyond MAX_ENTRIES, counted but not kept. */
  dropped: number;
  /** Errors the agent reported under this request's ID (the error hatch's test error, …). */
  errors: string[];
  /** The error the request ended in (status 500 or above), or null. */
  error: ErrorDetail | null;
  /**
   * Set when the record is a job's run, not a request's (src/jobs.ts): a BullMQ job's attempt, or a
   * schedule's tick. Its method is `JOB`, its route the queue and job name, its status 200 (completed)
   * or 500 (failed).
   */
  job?: JobMark | null;
}

/** What a job's record keeps of its hatch:job event. */
export type JobMark = Pick<JobEvent, 'system' | 'queue' | 'name' | 'jobId' | 'attempt' | 'outcome'>;

interface Pending {
  /** Until the request is filed, each entry's `offset` holds the performance.now() at which it began. */
  timeline: TimelineEntry[];
  dropped: number;
  /** Made at the first error only: most requests have none. */
  errors: string[] | undefined;
  errorsAt: number[] | undefined;
}

/**
 * A record as kept: the start's wall-clock time is a number, formatted only when someone looks;
 * `start` is the performance.now() it began at, for the entries that end after it is filed.
 */
type Stored = Omit<RequestRecord, 'at'> & { atMs: number; start: number };

/** Shared by every request that had no query, call, render or error (most /hello-like requests). */
const NONE: never[] = Object.freeze([]) as unknown as never[];

function view(r: Stored): RequestRecord {
  const { atMs, start, ...rest } = r;
  const job = r.job;
  if (job == null) return { ...rest, at: new Date(atMs).toISOString() };
  // A job's record keeps its mark's fields in a ring slot that is reused: the view gets a copy, and
  // its path, made here rather than for every job filed.
  const path = job.jobId === '' ? `${job.system} ${r.route}` : `${job.system} ${r.route} #${job.jobId}`;
  return { ...rest, path, at: new Date(atMs).toISOString(), job: { ...job } };
}

/** Every time in `at` lies in [from, to]. */
function within(at: number[], from: number, to: number): boolean {
  for (let i = 0; i < at.length; i++) if (!(at[i]! >= from && at[i]! <= to)) return false;
  return true;
}

/** Every pending entry began in [from, to]. */
function allWithin(timeline: TimelineEntry[], from: number, to: number): boolean {
  for (let i = 0; i < timeline.length; i++)
    if (!(timeline[i]!.offset >= from && timeline[i]!.offset <= to)) return false;
  return true;
}

/**
 * Entries arrive as they end, so a request whose queries ran one after another (the usual case) has
 * its timeline in order already: a look costs less than a sort and its comparator call per pair.
 */
function sorted(timeline: TimelineEntry[]): boolean {
  for (let i = 1; i < timeline.length; i++) if (timeline[i - 1]!.offset > timeline[i]!.offset) return false;
  return true;
}
const byOffset = (a: TimelineEntry, b: TimelineEntry) => a.offset - b.offset;

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

function record(
  e: HttpServerEvent,
  atMs: number,
  duration: number,
  timeline: TimelineEntry[],
  dropped: number,
  errors: string[],
  job: JobEvent | null,
): Stored {
  return {
    id: e.requestId,
    method: e.method,
    route: e.route,
    path: e.path ?? '',
    status: e.statusCode,
    aborted: e.aborted,
    atMs,
    start: e.start,
    duration,
    timeline,
    dropped,
    errors,
    error: e.error ?? null,
    job: job === null ? null : markOf(job),
  };
}

/** Overwrites a kept record with this request's (the same fields in the same order as record()). */
function fill(
  r: Stored,
  e: HttpServerEvent,
  atMs: number,
  duration: number,
  timeline: TimelineEntry[],
  dropped: number,
  errors: string[],
  job: JobEvent | null,
): void {
  r.id = e.requestId;
  r.method = e.method;
  r.route = e.route;
  // A path equal to the slot's (a server answers the same few paths) keeps the slot's string, which
  // has already survived a scavenge: the request's own copy then dies young instead of being copied.
  const path = e.path ?? '';
  if (r.path !== path) r.path = path;
  r.status = e.statusCode;
  r.aborted = e.aborted;
  r.atMs = atMs;
  r.start = e.start;
  r.duration = duration;
  r.timeline = timeline;
  r.dropped = dropped;
  r.errors = errors;
  r.error = e.error ?? null;
  const old = r.job;
  if (job === null) r.job = null;
  else if (old == null) r.job = markOf(job);
  else {
    // The slot's own mark (never shared: the slowest and errored records get their own), overwritten.
    old.system = job.system;
    old.queue = job.queue;
    old.name = job.name;
    old.jobId = job.jobId;
    old.attempt = job.attempt;
    old.outcome = job.outcome;
  }
}

function markOf(e: JobEvent): JobMark {
  return { system: e.system, queue: e.queue, name: e.name, jobId: e.jobId, attempt: e.attempt, outcome: e.outcome };
}

/** `queue/name` (or the name alone), by queue and name: names are bounded (src/jobs.ts), so is this. */
const labels = new Map<string, Map<string, string>>();
const MAX_LABELS = 1000;
let labelCount = 0;

function labelOf(queue: string, name: string): string {
  let byName = labels.get(queue);
  let label = byName?.get(name);
  if (label !== undefined) return label;
  label = queue === '' ? name : `${queue}/${name}`;
  if (labelCount < MAX_LABELS) {
    if (byName === undefined) labels.set(queue, (byName = new Map()));
    byName.set(name, label);
    labelCount++;
  }
  return label;
}

/**
 * A job's run as the request-shaped event the store files (see RequestRecord.job): one object,
 * refilled for each job (file() keeps none of it but its values). Its path is left out: a job's
 * record makes it when it is viewed (view()).
 */
const asRequest: HttpServerEvent = {
  requestId: '',
  method: 'JOB',
  route: '',
  path: undefined,
  statusCode: 200,
  aborted: false,
  start: 0,
  duration: 0,
  error: undefined,
};
function jobAsRequest(e: JobEvent): HttpServerEvent {
  const r = asRequest;
  r.requestId = e.requestId;
  r.route = labelOf(e.queue, e.name);
  r.statusCode = e.outcome === 'failed' ? 500 : 200;
  r.start = e.start;
  r.duration = e.duration;
  r.error = e.error;
  return r;
}

/**
 * A key no request has, kept in the map of requests in flight for good. V8 shrinks a Map's table
 * when a delete leaves it nearly empty, and a server that has one or two requests in flight at a
 * time empties it at each request: every request with a query paid a new table at its filing
 * (/db: 150 bytes a request, half the time of its set and delete). With this entry it is never empty.
 */
const HELD = Symbol('held');

/** The slots of recently filed records, by a hash of their ID (a power of two). */
const LATE_SLOTS = 256;

/**
 * An ID's slot: from its length and two of its characters (a UUID's are random; a counter's last
 * one changes). A few operations, paid once per request filed and once per request's first entry.
 */
function slotOf(id: string): number {
  const n = id.length;
  return (n * 31 + id.charCodeAt(n - 1) * 7 + id.charCodeAt(n >> 1)) & (LATE_SLOTS - 1);
}

export class RecentRequests {
  private readonly pending = new Map<string | typeof HELD, Pending>([
    [HELD, { timeline: [], dropped: 0, errors: undefined, errorsAt: undefined }],
  ]);
  private readonly recent: Stored[] = [];
  private next = 0;
  private readonly slow: Stored[] = [];
  /** Requests that ended in an error: a ring of their own records (errors are rare: no reuse). */
  private readonly errored: Stored[] = [];
  private nextErrored = 0;
  /**
   * One request in flight kept beside the map: the one whose first entry came while the map held no
   * other, which with one or two requests in flight at a time is most of them. It costs no map insert
   * and delete (a Map with entries coming and going makes a new table every few inserts). Every
   * request in the map came after it, so the oldest in flight is still the first dropped.
   */
  private oneId: string | undefined = undefined;
  private one: Pending | undefined = undefined;
  /** Requests whose in-flight events were dropped because MAX_PENDING were in flight. */
  evicted = 0;
  /** The IDs of the last MAX_SCOPES withRequestId scopes, oldest first: nothing is held for them. */
  private readonly scopes = new Set<string>();
  /** The newest record in the recent ring filed under each ID slot (slotOf), for late entries. */
  private readonly filed: (Stored | undefined)[] = new Array<Stored | undefined>(LATE_SLOTS).fill(undefined);
  private readonly subscriptions = new Subscriptions('requests store');

  constructor(
    private readonly recentMax: number,
    private readonly slowMax: number,
    private readonly erroredMax = 0,
  ) {}

  start(): void {
    this.subscriptions.on(channels.dbQuery, (m) => {
      const e = m as DbQueryEvent;
      // Outside any request (a pool's own query, a script without withRequestId) there is nothing to file.
      if (e.requestId === undefined) return;
      const text = e.text.length > SQL_LIMIT ? e.text.slice(0, SQL_LIMIT) + '…' : e.text;
      this.add(e.requestId, {
        kind: 'query',
        label: text,
        offset: e.start,
        duration: round(e.duration),
        outcome: e.error ? 'error' : 'ok',
        error: e.error,
      });
    });
    this.subscriptions.on(channels.httpClient, (m) => {
      const e = m as HttpClientEvent;
      this.add(e.requestId, {
        kind: 'call',
        label: e.path === undefined ? `${e.method} ${e.host}` : `${e.method} ${e.host}${e.path}`,
        offset: e.start,
        duration: round(e.duration),
        outcome: String(e.statusCode),
        error: e.statusCode === 'error',
      });
    });
    this.subscriptions.on(channels.render, (m) => {
      const e = m as RenderEvent;
      this.add(e.requestId, {
        kind: 'render',
        label: `${e.engine} ${e.template}`,
        offset: e.start,
        duration: round(e.duration),
        outcome: e.error ? 'error' : 'ok',
        error: e.error,
      });
    });
    this.subscriptions.on(channels.error, (m) => {
      const e = m as ErrorEvent;
      if (e.requestId === undefined) return;
      const p = this.pendingFor(e.requestId, undefined);
      if (p === undefined) return;
      const errors = (p.errors ??= []);
      if (errors.length < MAX_ERRORS) {
        errors.push(`${e.kind}: ${e.message ?? ''}`.slice(0, 1000));
        (p.errorsAt ??= []).push(now());
      }
    });
    this.subscriptions.on(channels.httpServer, (m) => this.file(m as HttpServerEvent, null));
    this.subscriptions.on(channels.job, (m) => {
      const e = m as JobEvent;
      this.file(jobAsRequest(e), e);
    });
    this.subscriptions.on(channels.scope, (m) => this.scope((m as ScopeEvent).requestId));
  }

  /**
   * A withRequestId scope began under `id`. An ID with entries in flight is a request's (the scope's
   * code runs in a request that adopted it, or beside one): it is left to that request.
   */
  private scope(id: string): void {
    const scopes = this.scopes;
    if (scopes.has(id)) {
      scopes.delete(id); // to the newest end: the oldest is the first unmarked
    } else {
      if (this.pendingOf(id) !== undefined) return;
      if (scopes.size >= SCOPES_LIMIT) scopes.delete(scopes.values().next().value as string);
    }
    scopes.add(id);
  }

  stop(): void {
    this.subscriptions.clear();
  }

  /**
   * The request's pending record; a new one starts with `first` as its only entry (if given). A
   * scope's ID has none, and gets none; nor does an entry that joins a record filed already (late).
   */
  private pendingFor(id: string, first: TimelineEntry | undefined): Pending | undefined {
    let p = this.pendingOf(id);
    if (p === undefined) {
      if (this.scopes.size !== 0 && this.scopes.has(id)) return undefined;
      // An error (no `first`) is timed when it is reported: one reported after its request ended is held.
      if (first !== undefined && this.late(id, first)) return undefined;
      if (this.inFlight >= PENDING_LIMIT) {
        if (this.oneId !== undefined) {
          this.drop(this.oneId); // older than any in the map
        } else {
          const keys = this.pending.keys();
          keys.next(); // HELD, the first key for good
          this.pending.delete(keys.next().value as string);
        }
        this.evicted++;
      }
      p = { timeline: first === undefined ? [] : [first], dropped: 0, errors: undefined, errorsAt: undefined };
      if (this.oneId === undefined && this.pending.size === 1) {
        this.oneId = id;
        this.one = p;
      } else {
        this.pending.set(id, p);
      }
    } else if (first !== undefined) {
      if (p.timeline.length < ENTRIES_LIMIT) p.timeline.push(first);
      else p.dropped++;
    }
    return p;
  }

  /**
   * Files an entry that began within the span of a request already filed under `id` into its
   * record; false when no such record is in the recent ring.
   */
  private late(id: string, entry: TimelineEntry): boolean {
    const r = this.filed[slotOf(id)];
    if (r === undefined) return false;
    // The span first: numbers compare faster than two IDs of one length (most first entries of a
    // request began after the request in their slot had ended).
    const at = entry.offset;
    if (!(at >= r.start && at <= r.start + r.duration) || r.id !== id) return false;
    entry.offset = round(at - r.start);
    if (r.timeline === NONE) r.timeline = [entry];
    else if (r.timeline.length < ENTRIES_LIMIT) {
      r.timeline.push(entry); // shared with the slowest or errored record of the request, if any
      if (!sorted(r.timeline)) r.timeline.sort(byOffset);
    } else r.dropped++;
    return true;
  }

  private add(id: string | undefined, entry: TimelineEntry): void {
    if (id !== undefined) this.pendingFor(id, entry);
  }

  /**
   * The pending record of a request in flight, beside the map or in it. A map holding only HELD has
   * no request in it: the ID is not looked up there, which would hash its 36 characters for nothing
   * (most requests, /hello's, collect nothing in flight; a /db request's first query starts its record).
   */
  private pendingOf(id: string): Pending | undefined {
    if (id === this.oneId) return this.one;
    return this.pending.size === 1 ? undefined : this.pending.get(id);
  }

  /** Replaces the pending record of a request in flight. */
  private repend(id: string, p: Pending): void {
    if (id === this.oneId) this.one = p;
    else this.pending.set(id, p);
  }

  /** The request is no longer in flight. */
  private drop(id: string): void {
    if (id === this.oneId) {
      this.oneId = undefined;
      this.one = undefined;
    } else {
      this.pending.delete(id);
    }
  }

  private file(e: HttpServerEvent, job: JobEvent | null): void {
    const p = this.pendingOf(e.requestId);
    if (p === undefined && this.scopes.size !== 0) this.scopes.delete(e.requestId);
    let timeline: TimelineEntry[] = NONE;
    let errors: string[] = NONE;
    let dropped = 0;
    if (p) {
      const end = e.start + e.duration;
      if (allWithin(p.timeline, e.start, end) && (p.errorsAt === undefined || within(p.errorsAt, e.start, end))) {
        // The usual case: everything in flight under this ID is this request's. Its arrays become the record's.
        timeline = p.timeline;
        errors = p.errors ?? NONE;
        dropped = p.dropped;
        for (let i = 0; i < timeline.length; i++) timeline[i]!.offset = round(timeline[i]!.offset - e.start);
        this.drop(e.requestId);
      } else {
        ({ timeline, errors, dropped } = this.split(e, p));
      }
    }
    if (timeline.length > 1 && !sorted(timeline)) timeline.sort(byOffset);
    const atMs = this.wallClock(e.start, e.start + e.duration);
    const duration = round(e.duration);
    if (this.recentMax > 0) {
      // Once the ring is full its records are reused, field by field: a new object per request
      // was alive in the ring at the next scavenge and had to be copied (Node 24 /hello, every
      // feature on: 73 -> 44 KB surviving each scavenge, --trace-gc-nvp).
      const old = this.recent.length < this.recentMax ? undefined : this.recent[this.next];
      let kept: Stored;
      if (old === undefined) this.recent.push((kept = record(e, atMs, duration, timeline, dropped, errors, job)));
      else fill((kept = old), e, atMs, duration, timeline, dropped, errors, job);
      this.filed[slotOf(e.requestId)] = kept;
      this.next = (this.next + 1) % this.recentMax;
    }
    if (this.slowMax > 0) {
      const s = this.slow;
      if (s.length < this.slowMax || duration > s[s.length - 1]!.duration) {
        let i = s.length;
        while (i > 0 && s[i - 1]!.duration < duration) i--;
        s.splice(i, 0, record(e, atMs, duration, timeline, dropped, errors, job)); // its own object: ring slots are reused
        if (s.length > this.slowMax) s.pop();
      }
    }
    if (e.error !== undefined && this.erroredMax > 0) {
      const r = record(e, atMs, duration, timeline, dropped, errors, job);
      if (this.errored.length < this.erroredMax) this.errored.push(r);
      else this.errored[this.nextErrored] = r;
      this.nextErrored = (this.nextErrored + 1) % this.erroredMax;
    }
  }

  /**
   * The wall-clock time (epoch ms) of a performance.now() value. The offset between the two clocks
   * is read again at most once a second (NTP moves the wall clock), not once per request.
   */
  private wallClock(at: number, nowish: number): number {
    // `nowish` (the request's end, about now) decides: a request that began before the last reading
    // of the clocks is the common case under load, and must not cause another.
    if (nowish - this.syncedAt > 1000 || nowish < this.syncedAt - 1000) {
      this.syncedAt = now();
      this.offset = Date.now() - this.syncedAt;
    }
    return this.offset + at;
  }
  private syncedAt = -Infinity;
  private offset = 0;

  /**
   * Two requests in flight under one ID: this one takes the entries that began within its own span
   * and leaves the rest pending for the other.
   */
  private split(e: HttpServerEvent, p: Pending): { timeline: TimelineEntry[]; errors: string[]; dropped: number } {
    const timeline: TimelineEntry[] = [];
    const errors: string[] = [];
    const end = e.start + e.duration;
    const mine = (at: number) => at >= e.start && at <= end;
    const rest: Pending = { timeline: [], dropped: 0, errors: [], errorsAt: [] };
    for (let i = 0; i < p.timeline.length; i++) {
      const entry = p.timeline[i]!;
      const at = entry.offset; // still the time it began
      if (mine(at)) {
        entry.offset = round(at - e.start);
        timeline.push(entry);
      } else {
        rest.timeline.push(entry);
      }
    }
    const pe = p.errors ?? [];
    for (let i = 0; i < pe.length; i++) {
      if (mine(p.errorsAt![i]!)) errors.push(pe[i]!);
      else {
        rest.errors!.push(pe[i]!);
        rest.errorsAt!.push(p.errorsAt![i]!);
      }
    }
    if (rest.timeline.length > 0 || rest.errors!.length > 0) {
      rest.dropped = p.dropped; // most likely the outer request's, which files last
      this.repend(e.requestId, rest);
      return { timeline, errors, dropped: 0 };
    }
    this.drop(e.requestId);
    return { timeline, errors, dropped: p.dropped };
  }

  /** The recent requests, newest first. */
  recentRequests(): RequestRecord[] {
    const out: RequestRecord[] = [];
    for (let k = 1; k <= this.recent.length; k++) out.push(view(this.newest(k)));
    return out;
  }

  /** The k-th newest kept record (1 = the newest), from the ring. */
  private newest(k: number): Stored {
    const n = this.recent.length;
    return this.recent[(this.next - k + n * 2) % n]!;
  }

  /** The requests that ended in an error, newest first. */
  erroredRequests(): RequestRecord[] {
    const out: RequestRecord[] = [];
    const n = this.errored.length;
    for (let k = 1; k <= n; k++) out.push(view(this.errored[(this.nextErrored - k + n * 2) % n]!));
    return out;
  }

  /**
   * What has been collected so far for a request still in flight (ID `id`, begun at performance.now()
   * `start`): copies, offsets from its start, oldest first. For the debug page, which is written
   * before the request is filed; the pending record is left as it is.
   */
  soFar(id: string, start: number): { timeline: TimelineEntry[]; dropped: number; errors: string[] } {
    const p = this.pendingOf(id);
    if (p === undefined) return { timeline: [], dropped: 0, errors: [] };
    const timeline: TimelineEntry[] = [];
    for (const e of p.timeline) if (e.offset >= start) timeline.push({ ...e, offset: round(e.offset - start) });
    timeline.sort((a, b) => a.offset - b.offset);
    const errors: string[] = [];
    const pe = p.errors ?? [];
    for (let i = 0; i < pe.length; i++) if (p.errorsAt![i]! >= start) errors.push(pe[i]!);
    return { timeline, dropped: p.dropped, errors };
  }

  /** The slowest requests kept, slowest first. */
  slowest(): RequestRecord[] {
    return this.slow.map(view);
  }

  find(id: string): RequestRecord | undefined {
    for (let k = 1; k <= this.recent.length; k++) {
      const r = this.newest(k); // newest first, as recentRequests()
      if (r.id === id) return view(r);
    }
    const n = this.errored.length;
    for (let k = 1; k <= n; k++) {
      const r = this.errored[(this.nextErrored - k + n * 2) % n]!;
      if (r.id === id) return view(r);
    }
    const s = this.slow.find((x) => x.id === id);
    return s && view(s);
  }

  get inFlight(): number {
    return this.pending.size - 1 + (this.oneId === undefined ? 0 : 1); // HELD is no request
  }
}
