/**
 * StatsD sink: the only importer of hot-shots.
 *
 * The request path never touches the StatsD client (one hot-shots call per request costs about a
 * third of a hello-world server's throughput). An event only pushes a number onto the array of its
 * series, found through nested Maps keyed by the raw dimension values, so no string is built per
 * event. A timer (every HATCH_STATSD_FLUSH_MS, unref'd) and the process's exit format every value
 * into packets of at most 1432 bytes handed to hot-shots, so the server still sees every value and
 * its percentiles stay true.
 *
 * Names: plain StatsD/Graphite joins sanitized dimensions into the name in a fixed order
 * (`hatch.http.server.GET.unmatched.200`); dogstatsd and telegraf put them in tags on a short name.
 * Limitations: a series count above MAX_SERIES per metric folds new combinations into `other`;
 * more than MAX_VALUES values of one series in one interval are dropped (and counted).
 */
import type { Config, TagMode } from '../config';
import { channels, Subscriptions, type DbQueryEvent, type ErrorEvent, type HttpClientEvent, type HttpServerEvent, type RenderEvent, type RuntimeEvent } from '../bus';
import { sqlOperation } from '../sql-comment';
import { log } from '../log';

/** An IP literal (what HATCH_STATSD_HOST's allowed characters can form): no lookup, no node:net at start-up. */
function isIp(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(':');
}

/** dns.lookup of every address, with node:dns loaded at the first name to look up (not at start-up). */
function lookup(host: string, cb: (err: NodeJS.ErrnoException | null, all: Array<{ address: string; family: number }>) => void): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  (require('node:dns') as typeof import('node:dns')).lookup(host, { all: true }, cb);
}

const MAX_PACKET = 1432; // fits one Ethernet-MTU UDP datagram, hot-shots' own recommendation
const MAX_SERIES = 2000;
const MAX_VALUES = 100_000;
const RESOLVE_EVERY_MS = 60_000; // a host name is looked up again this often, so a moved StatsD is followed

type Dim = string | number;

/**
 * One series: its counter sum, or the values recorded since the last flush in a Float64Array that
 * is kept from one interval to the next (grown by doubling, halved when far too big), so recording
 * allocates nothing in steady state: a plain array emptied at every flush grew again from nothing
 * each second, and its copies were garbage the young generation had to carry.
 */
export class Series {
  values = new Float64Array(16);
  count = 0;
  sum = 0;
  /** The line's name and its suffix (`|ms`, tags), as the bytes a flush writes. */
  readonly head: Buffer;
  readonly tail: Buffer;
  constructor(head: string, tail: string) {
    this.head = Buffer.from(head, 'latin1');
    this.tail = Buffer.from(tail, 'latin1');
  }

  /** Records one value (false when the series already holds MAX_VALUES this interval). */
  add(v: number): boolean {
    if (this.count === this.values.length) {
      if (this.count >= MAX_VALUES) return false;
      const bigger = new Float64Array(Math.min(this.values.length * 2, MAX_VALUES));
      bigger.set(this.values);
      this.values = bigger;
    }
    this.values[this.count++] = v;
    return true;
  }

  /** Forgets the interval's values; keeps the storage unless it is four times what was used. */
  reset(): void {
    if (this.values.length >= 1024 && this.count * 4 < this.values.length) this.values = new Float64Array(this.values.length / 2);
    this.count = 0;
  }
}

/** Graphite path segment: no dots, slashes or other separators. */
function segment(v: Dim): string {
  const s = String(v).replace(/^\/+|\/+$/g, '').replace(/[^A-Za-z0-9_-]+/g, '_');
  return s === '' ? 'root' : s;
}
/** DogStatsD tag value: no `|`, `,`, `#`, blanks or non-ASCII. */
function dogTag(v: Dim): string {
  return String(v).replace(/[^\x21-\x7e]|[|,#@]/g, '_') || 'none';
}
/** Telegraf tag value: additionally no `:` `=` (they split the line). */
function telegrafTag(v: Dim): string {
  return String(v).replace(/[^\x21-\x7e]|[|,#@:=]/g, '_') || 'none';
}

export class Metric {
  private readonly root = new Map<Dim, any>();
  private count = 0;
  private overflow: Series | undefined;
  readonly all: Series[] = [];

  constructor(
    readonly name: string,
    readonly type: 'ms' | 'c' | 'g',
    readonly dims: readonly string[],
    private readonly prefix: string,
    private readonly mode: TagMode,
  ) {}

  /** The series for these dimension values (as many as `dims`); allocates only for a new one. */
  series(a: Dim, b?: Dim, c?: Dim): Series {
    // A server's events mostly repeat the last one's dimensions: no map lookups for those.
    if (a === this.lastA && b === this.lastB && c === this.lastC && this.last !== undefined) return this.last;
    const s = this.find(a, b, c);
    this.lastA = a;
    this.lastB = b;
    this.lastC = c;
    this.last = s;
    return s;
  }
  private lastA: Dim | undefined;
  private lastB: Dim | undefined;
  private lastC: Dim | undefined;
  private last: Series | undefined;

  private find(a: Dim, b?: Dim, c?: Dim): Series {
    const depth = this.dims.length;
    if (depth === 0) return (this.overflow ??= this.make([])); // a dimensionless metric: its one series
    let level: Map<Dim, any> | undefined = this.root;
    if (depth > 1) level = this.child(level, a);
    if (depth > 2 && level !== undefined) level = this.child(level, b!);
    if (level === undefined) return this.other();
    const last = depth === 1 ? a : depth === 2 ? b! : c!;
    let s: Series | undefined = level.get(last);
    if (s === undefined) {
      if (this.count >= MAX_SERIES) return this.other();
      s = this.make(depth === 1 ? [a] : depth === 2 ? [a, b!] : [a, b!, c!]);
      level.set(last, s);
      this.count++;
    }
    return s;
  }

  /** The next level of the nested maps, created if the series cap allows. */
  private child(parent: Map<Dim, any>, key: Dim): Map<Dim, any> | undefined {
    let next = parent.get(key);
    if (next === undefined) {
      if (this.count >= MAX_SERIES) return undefined;
      next = new Map();
      parent.set(key, next);
    }
    return next;
  }

  private other(): Series {
    return (this.overflow ??= this.make(this.dims.map(() => 'other')));
  }

  private make(values: Dim[]): Series {
    const base = this.prefix + this.name;
    let s: Series;
    if (this.mode === 'dogstatsd') {
      const tags = this.dims.map((d, i) => `${d}:${dogTag(values[i]!)}`).join(',');
      s = new Series(base, tags ? `|${this.type}|#${tags}` : `|${this.type}`);
    } else if (this.mode === 'telegraf') {
      const tags = this.dims.map((d, i) => `,${d}=${telegrafTag(values[i]!)}`).join('');
      s = new Series(base + tags, `|${this.type}`);
    } else {
      s = new Series(values.length ? base + '.' + values.map(segment).join('.') : base, `|${this.type}`);
    }
    this.all.push(s);
    return s;
  }
}

function num(v: number): string {
  return String(Math.round(v * 1000) / 1000);
}

const DOT = 46;
const COLON = 58;
const NEWLINE = 10;
const SLACK = 2048; // a packet buffer's room past MAX_PACKET: one line is written before it is known to fit

// The two packet buffers every flush writes into (a line that does not fit moves to the other):
// kept, not allocated per packet, so a flush leaves no buffers behind for the GC (hot-shots copies
// each packet as it is handed over).
const scratch = [Buffer.allocUnsafeSlow(MAX_PACKET + SLACK), Buffer.allocUnsafeSlow(MAX_PACKET + SLACK)] as const;

/**
 * Writes the flush's lines straight into datagram buffers: no string per value. A flush formats
 * every value recorded in the interval (tens of thousands a second on a busy server), and building
 * `name:value|ms` strings, joining them into packets and encoding those again cost about 1 µs per
 * value, more than recording it.
 */
class Packer {
  private buf: Buffer = scratch[0];
  private spare: Buffer = scratch[1];
  private len = 0;
  /** Where the line being written began (after its newline); 0 for the packet's first line. */
  private lineAt = 0;
  /** `packet` is a view of a reused buffer: valid only during the call. */
  constructor(private readonly emit: (packet: Buffer) => void) {}

  /** Starts a line (after a newline, unless it is the packet's first). */
  begin(): void {
    if (this.len > 0) this.buf[this.len++] = NEWLINE;
    this.lineAt = this.len;
  }

  /** Ends the line: if it made the packet too long, the packet is sent without it and it starts the next. */
  end(): void {
    if (this.len <= MAX_PACKET || this.lineAt === 0) return this.maybeFull();
    const old = this.buf;
    const size = this.len - this.lineAt;
    const next = size + SLACK <= this.spare.length ? this.spare : Buffer.allocUnsafe(size + SLACK);
    const n = old.copy(next, 0, this.lineAt, this.len);
    this.emit(old.subarray(0, this.lineAt - 1)); // without the newline
    this.buf = next;
    // The spare is whichever kept buffer is not in use (a grown one is not kept).
    this.spare = old === scratch[0] || old === scratch[1] ? old : next === scratch[0] ? scratch[1] : scratch[0];
    this.len = n;
    this.lineAt = 0;
    this.maybeFull();
  }

  private maybeFull(): void {
    if (this.len >= MAX_PACKET) this.cut();
  }

  /** Room left in this packet for the current line. */
  room(): number {
    return MAX_PACKET - this.len;
  }

  /** Ends the packet (and, at the end of a flush, the last one). */
  cut(): void {
    if (this.len === 0) return;
    this.emit(this.buf.subarray(0, this.len));
    this.len = 0;
    this.lineAt = 0;
  }

  bytes(b: Buffer): void {
    if (this.len + b.length > this.buf.length) this.grow(b.length);
    this.buf.set(b, this.len); // a builtin, no call into C++ as Buffer.copy
    this.len += b.length;
  }

  byte(c: number): void {
    if (this.len === this.buf.length) this.grow(1);
    this.buf[this.len++] = c;
  }

  /** A value as num() prints it (at most three decimals, no trailing zeros), digit by digit. */
  number(v: number): void {
    if (this.len + 32 > this.buf.length) this.grow(32);
    const n = Math.round(v * 1000);
    if (!(n >= 0 && n < 1e15)) {
      this.len += this.buf.write(num(v), this.len, 'latin1'); // negative, huge or not a number: rare
      return;
    }
    const whole = Math.floor(n / 1000);
    const frac = n - whole * 1000;
    this.int(whole);
    if (frac !== 0) {
      const b = this.buf;
      b[this.len++] = DOT;
      b[this.len++] = 48 + Math.floor(frac / 100);
      const rest = frac % 100;
      if (rest !== 0) {
        b[this.len++] = 48 + Math.floor(rest / 10);
        if (rest % 10 !== 0) b[this.len++] = 48 + (rest % 10);
      }
    }
  }

  private int(x: number): void {
    const b = this.buf;
    const start = this.len;
    do {
      const q = Math.floor(x / 10);
      b[this.len++] = 48 + (x - q * 10);
      x = q;
    } while (x > 0);
    // digits were written lowest first
    for (let i = start, j = this.len - 1; i < j; i++, j--) {
      const t = b[i]!;
      b[i] = b[j]!;
      b[j] = t;
    }
  }

  private grow(need: number): void {
    const bigger = Buffer.allocUnsafe(this.buf.length + need + SLACK);
    this.buf.copy(bigger, 0, 0, this.len);
    this.buf = bigger;
  }
}

/**
 * Formats and empties every series into datagrams of at most MAX_PACKET bytes, lines joined by
 * newlines: a counter's `name:sum|c`, and multi-value lines for timings, `name:v1|ms:v2|ms:…` or
 * (dogstatsd) `name:v1:v2:…|ms|#tags`, cut so each fits a packet.
 */
export function drainPackets(metrics: Metric[], mode: TagMode): Buffer[] {
  const packets: Buffer[] = [];
  drainTo(metrics, mode, (packet) => packets.push(Buffer.from(packet)));
  return packets;
}

/** As drainPackets, handing each datagram to `send` as a view of a reused buffer (copy it or send it at once). */
export function drainTo(metrics: Metric[], mode: TagMode, send: (packet: Buffer) => void): void {
  const p = new Packer(send);
  for (const m of metrics) {
    for (const s of m.all) {
      if (m.type === 'c') {
        if (s.sum !== 0) {
          const { head, tail } = s;
          p.begin();
          p.bytes(head);
          p.byte(COLON);
          p.number(s.sum);
          p.bytes(tail);
          p.end();
        }
        s.sum = 0;
        continue;
      }
      const vals = s.values;
      const count = s.count;
      if (count === 0) continue;
      const { head, tail } = s;
      // Several values to a line, cut so each line fits its packet: dogstatsd's `name:v1:v2|ms|#tags`,
      // or `name:v1|ms:v2|ms` (the Etsy daemon, Telegraf and statsd_exporter split a line at each
      // `:`). The name is written once per line, not once per value: five times fewer bytes and
      // datagrams for a request's timing, which cost the sender about 0.4 us per /hello request.
      const eachValue = mode !== 'dogstatsd';
      let i = 0;
      while (i < count) {
        // A new packet when this one cannot take the line's name, one value and its suffix.
        if (p.room() < head.length + tail.length + 24) p.cut();
        p.begin();
        p.bytes(head);
        do {
          p.byte(COLON);
          p.number(vals[i++]!);
          if (eachValue) p.bytes(tail);
        } while (i < count && p.room() > tail.length + 24);
        if (!eachValue) p.bytes(tail);
        p.end();
      }
      s.reset();
    }
  }
  p.cut();
}

/** The lines of one flush, as text (for tests and debugging; the sink itself sends with drainTo). */
export function drainLines(metrics: Metric[], mode: TagMode): string[] {
  return drainPackets(metrics, mode).flatMap((b) => b.toString('latin1').split('\n'));
}

interface HotShotsLike {
  sendMessage(message: string | Buffer, callback?: (err?: Error | null) => void): void;
  close(cb?: () => void): void;
}

export class StatsdSink {
  readonly httpServer: Metric;
  readonly dbQuery: Metric;
  readonly httpClient: Metric;
  readonly render: Metric;
  readonly errors: Metric;
  /** runtime.* gauges (src/runtime-metrics.ts); one value per series, the latest. */
  readonly runtime: Record<string, Metric>;
  readonly gcPause: Metric;
  private readonly metrics: Metric[];
  private client: HotShotsLike | undefined;
  private address: string | undefined;
  private resolving = false;
  private resolvedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private dropped = 0;
  private readonly subscriptions = new Subscriptions('statsd sink');

  constructor(private readonly config: Config) {
    const { statsdPrefix: p, statsdTags: mode } = config;
    this.httpServer = new Metric('http.server', 'ms', ['method', 'route', 'status_code'], p, mode);
    this.dbQuery = new Metric('db.query', 'ms', ['system', 'operation', 'outcome'], p, mode);
    this.httpClient = new Metric('http.client', 'ms', ['method', 'host', 'status_code'], p, mode);
    this.render = new Metric('render', 'ms', ['engine', 'template', 'outcome'], p, mode);
    this.errors = new Metric('errors', 'c', ['kind'], p, mode);
    const gauge = (name: string) => new Metric(`runtime.${name}`, 'g', [], p, mode);
    this.runtime = {
      p50: gauge('event_loop.delay.p50'),
      p99: gauge('event_loop.delay.p99'),
      max: gauge('event_loop.delay.max'),
      heapUsed: gauge('heap.used'),
      rss: gauge('rss'),
      activeHandles: gauge('active_handles'),
    };
    this.gcPause = new Metric('runtime.gc.pause', 'ms', ['kind'], p, mode);
    this.metrics = [this.httpServer, this.dbQuery, this.httpClient, this.render, this.errors, ...Object.values(this.runtime), this.gcPause];
  }

  start(): void {
    this.subscriptions.on(channels.httpServer, (m) => {
      const e = m as HttpServerEvent;
      this.time(this.httpServer.series(e.method, e.route, e.aborted ? 'aborted' : e.statusCode), e.duration);
    });
    this.subscriptions.on(channels.dbQuery, (m) => {
      const e = m as DbQueryEvent;
      // operation: found by the publisher on the app's own text; from the text sent for a publisher without it
      this.time(this.dbQuery.series(e.system, e.operation ?? sqlOperation(e.text), e.error ? 'error' : 'ok'), e.duration);
    });
    this.subscriptions.on(channels.httpClient, (m) => {
      const e = m as HttpClientEvent;
      this.time(this.httpClient.series(e.method, e.host, e.statusCode), e.duration);
    });
    this.subscriptions.on(channels.render, (m) => {
      const e = m as RenderEvent;
      this.time(this.render.series(e.engine, e.template, e.error ? 'error' : 'ok'), e.duration);
    });
    this.subscriptions.on(channels.error, (m) => {
      this.errors.series((m as ErrorEvent).kind).sum++;
    });
    this.subscriptions.on(channels.runtime, (m) => {
      const e = m as RuntimeEvent;
      const r = this.runtime;
      for (const [metric, v] of [[r.p50, e.eventLoopDelay.p50], [r.p99, e.eventLoopDelay.p99], [r.max, e.eventLoopDelay.max], [r.heapUsed, e.heapUsed], [r.rss, e.rss], [r.activeHandles, e.activeHandles]] as const) {
        const g = metric.series('');
        g.count = 0; // a gauge sends its latest value only
        g.add(v);
      }
      for (const g of e.gc) this.time(this.gcPause.series(g.kind), g.duration);
    });
    if (isIp(this.config.statsdHost)) this.address = this.config.statsdHost;
    else this.resolve(); // early, so the first values find an address
    this.timer = setInterval(() => this.flush(), this.config.statsdFlushMs);
    this.timer.unref();
    // A natural exit gets one last asynchronous flush; 'exit' (process.exit, the end of the loop)
    // still sends synchronously, because hot-shots' UDP socket is bound by then and the address is
    // an IP, so dgram sends at once without a lookup.
    process.on('beforeExit', this.onBeforeExit);
    process.on('exit', this.onExit);
  }

  stop(): void {
    this.subscriptions.clear();
    if (this.timer) clearInterval(this.timer);
    process.removeListener('beforeExit', this.onBeforeExit);
    process.removeListener('exit', this.onExit);
    this.flush();
  }

  private time(s: Series, ms: number): void {
    if (!s.add(ms)) this.dropped++;
  }

  private readonly onBeforeExit = () => {
    if (this.pending()) this.flush();
  };
  private readonly onExit = () => this.flush();

  private pending(): boolean {
    return this.metrics.some((m) => m.all.some((s) => s.count > 0 || s.sum !== 0));
  }

  /** Formats everything recorded so far and hands it to hot-shots. Never throws. */
  flush(): void {
    try {
      if (this.dropped > 0) {
        log.warnOnce('statsd-dropped', `statsd: more than ${MAX_VALUES} values of one series in one flush interval; the excess is dropped`);
        this.dropped = 0;
      }
      // The client is asked for at the first packet (an idle interval has none). Without one (address
      // not known yet, or the lookup failed) the values are dropped. hot-shots copies each packet
      // (Buffer.from) before sendMessage returns, so the view can be reused.
      let client: HotShotsLike | undefined | null = null;
      drainTo(this.metrics, this.config.statsdTags, (packet) => {
        if (client === null) client = this.getClient();
        client?.sendMessage(packet, this.onSent);
      });
    } catch (err) {
      log.warnOnce('statsd-flush', `statsd flush failed: ${(err as Error).message}`);
    }
  }

  private readonly onSent = (err?: Error | null) => {
    if (err) log.warnOnce('statsd-send', `statsd: sending to ${this.config.statsdHost}:${this.config.statsdPort} failed (${err.message}); metrics are dropped until it answers`);
  };

  /** Looks the host name up in the background; a new address replaces the client on the next flush. */
  private resolve(): void {
    if (this.resolving) return;
    this.resolving = true;
    const host = this.config.statsdHost;
    // IPv4 first: `localhost` often lists ::1 first, while StatsD daemons mostly listen on IPv4.
    lookup(host, (err, all) => {
      this.resolving = false;
      this.resolvedAt = Date.now();
      const address = all?.find((a) => a.family === 4)?.address ?? all?.[0]?.address;
      if (err || address === undefined) {
        err ??= Object.assign(new Error('no address'), { code: 'ENODATA' });
        log.warnOnce('statsd-dns', `statsd: cannot resolve HATCH_STATSD_HOST=${host} (${err.code ?? err.message}); metrics are dropped until it resolves`);
      } else if (address !== this.address) {
        this.address = address;
        const old = this.client;
        this.client = undefined;
        old?.close();
      }
    });
  }

  /** A counter line for the hatches: `<prefix>hatch.<name>:1|c`, the name made metric-safe (at most 64 characters). */
  hatchLine(name: string): string {
    const safe = name.split('.').map((p) => segment(p.slice(0, 64))).join('.').slice(0, 64);
    return `${this.config.statsdPrefix}hatch.${safe}:1|c`;
  }

  /**
   * Sends one line now, unbuffered (the health probe, the statsd hatch). UDP confirms nothing: `ok`
   * means the host resolved and the datagram left without a socket error, not that StatsD got it.
   */
  sendNow(line: string): Promise<{ ok: boolean; detail: string }> {
    return new Promise((resolve) => {
      const to = `${this.config.statsdHost}:${this.config.statsdPort}`;
      const send = () => {
        try {
          const client = this.getClient();
          if (!client) return resolve({ ok: false, detail: `${this.config.statsdHost} does not resolve` });
          client.sendMessage(line, (err) => resolve(err ? { ok: false, detail: `sending to ${to} failed: ${err.message}` } : { ok: true, detail: `sent to ${to} (UDP: sent without error, receipt not confirmed)` }));
        } catch (err) {
          resolve({ ok: false, detail: `sending to ${to} failed: ${(err as Error).message}` });
        }
      };
      if (this.address !== undefined) return send();
      // Not resolved yet (or it failed): look it up now rather than report a stale failure.
      lookup(this.config.statsdHost, (err, all) => {
        const address = all?.find((a) => a.family === 4)?.address ?? all?.[0]?.address;
        if (err || address === undefined) return resolve({ ok: false, detail: `${this.config.statsdHost} does not resolve (${err?.code ?? 'no address'})` });
        this.address ??= address;
        send();
      });
    });
  }

  private getClient(): HotShotsLike | undefined {
    if (!isIp(this.config.statsdHost) && Date.now() - this.resolvedAt > RESOLVE_EVERY_MS) this.resolve();
    if (this.client) return this.client;
    if (this.address === undefined) return undefined;
    // Loaded on the first flush, not at start-up: start-up stays cheap.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const StatsD = require('hot-shots') as new (opts: object) => HotShotsLike;
    this.client = new StatsD({
      host: this.address,
      port: this.config.statsdPort,
      maxBufferSize: 0, // we already pack whole packets
      errorHandler: (err: Error) => this.onSent(err),
    });
    return this.client;
  }
}
