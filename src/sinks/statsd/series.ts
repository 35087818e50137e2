/**
 * The StatsD sink's model: a Metric per metric name, a Series per combination of its dimension
 * values, found through nested Maps keyed by the raw values (no string built per event), each
 * holding its interval's values until a flush drains them (./packer.ts).
 *
 * Names: plain StatsD/Graphite joins sanitized dimensions into the name in a fixed order
 * (`hatch.http.server.GET.unmatched.200`); dogstatsd and telegraf put them in tags on a short name.
 * Each series' line head and tail are built once, as bytes, when the series is made.
 * Limitations: a series count above MAX_SERIES per metric folds new combinations into `other`;
 * more than MAX_VALUES values of one series in one interval are dropped (the sink counts them).
 */
import type { TagMode } from '../../config';

const MAX_SERIES = 2000;
export const MAX_VALUES = 100_000;

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
    if (this.values.length >= 1024 && this.count * 4 < this.values.length)
      this.values = new Float64Array(this.values.length / 2);
    this.count = 0;
  }
}

/**
 * Graphite path segment: no dots, slashes or other separators. Separators at either end are dropped,
 * not turned into `_` (`/users/{id}`, hapi's template, is `users_id`), and those inside become one `_`.
 */
export function segment(v: Dim): string {
  const s = String(v)
    .replace(/^[^A-Za-z0-9_-]+|[^A-Za-z0-9_-]+$/g, '')
    .replace(/[^A-Za-z0-9_-]+/g, '_');
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

/** The nested maps of a metric's series: one level per dimension, the series at the last. */
type Level = Map<Dim, Level | Series>;

export class Metric {
  private readonly root: Level = new Map();
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
    // A server's events mostly repeat one of the last two's dimensions (one query per request, or
    // two that alternate: a SET and a GET): no map lookups for those.
    if (a === this.lastA && b === this.lastB && c === this.lastC && this.last !== undefined) return this.last;
    if (a === this.prevA && b === this.prevB && c === this.prevC && this.prev !== undefined) {
      const s = this.prev;
      this.remember(a, b, c, s);
      return s;
    }
    const s = this.find(a, b, c);
    this.remember(a, b, c, s);
    return s;
  }
  private lastA: Dim | undefined;
  private lastB: Dim | undefined;
  private lastC: Dim | undefined;
  private last: Series | undefined;
  private prevA: Dim | undefined;
  private prevB: Dim | undefined;
  private prevC: Dim | undefined;
  private prev: Series | undefined;

  /** `s` becomes the last, the last the one before. */
  private remember(a: Dim, b: Dim | undefined, c: Dim | undefined, s: Series): void {
    this.prevA = this.lastA;
    this.prevB = this.lastB;
    this.prevC = this.lastC;
    this.prev = this.last;
    this.lastA = a;
    this.lastB = b;
    this.lastC = c;
    this.last = s;
  }

  private find(a: Dim, b?: Dim, c?: Dim): Series {
    const depth = this.dims.length;
    if (depth === 0) return (this.overflow ??= this.make([])); // a dimensionless metric: its one series
    let level: Level | undefined = this.root;
    if (depth > 1) level = this.child(level, a);
    if (depth > 2 && level !== undefined) level = this.child(level, b!);
    if (level === undefined) return this.other();
    const last = depth === 1 ? a : depth === 2 ? b! : c!;
    let s = level.get(last) as Series | undefined; // the last level holds the series
    if (s === undefined) {
      if (this.count >= MAX_SERIES) return this.other();
      s = this.make(depth === 1 ? [a] : depth === 2 ? [a, b!] : [a, b!, c!]);
      level.set(last, s);
      this.count++;
    }
    return s;
  }

  /** The next level of the nested maps, created if the series cap allows. */
  private child(parent: Level, key: Dim): Level | undefined {
    let next = parent.get(key) as Level | undefined;
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
