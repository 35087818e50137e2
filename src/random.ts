/**
 * Random identifiers for the request path, made in batches: each batch's bytes come from a 16 KiB
 * pool of crypto.randomFillSync output (every byte used once), formatted once into one flat string
 * that each identifier is sliced from. node:crypto's
 * randomUUID also draws from a cached batch, but it builds each UUID from 20 string pieces: a rope
 * that every later use (the header's validation, the socket write, a Map key) has to flatten, and
 * the incoming-request path paid for it on every request. A slice of a flat string is flat.
 *
 * The values are as random as randomUUID's (the same CSPRNG, fetched ahead in the same way). A
 * slice keeps its batch's string alive: small batches bound that to a few KiB per ID an app keeps.
 * node:crypto is loaded at the first identifier, not at start-up (it is a tenth of `node -e 0`).
 */
let crypto: typeof import('node:crypto') | undefined;
// One randomFillSync call costs about 1.2 us whatever its size up to 4 KiB (16 KiB: 3.6 us), and
// in a busy server it measured 0.3 us per request when it fetched one batch's 1 KiB at a time: the
// random bytes come from one kept 16 KiB pool instead, read a batch at a time.
const POOL = 16384;
let pool: Buffer | undefined;
let poolAt = POOL;

/** n (at most POOL) fresh random bytes, as a view of the pool valid until the next call. */
function randomBytes(n: number): Buffer {
  if (poolAt + n > POOL || pool === undefined) {
    // Loaded at the first identifier, not at start-up (see above).
    crypto ??= require('node:crypto') as typeof import('node:crypto');
    pool = crypto.randomFillSync(pool ?? Buffer.allocUnsafeSlow(POOL));
    poolAt = 0;
  }
  const view = pool.subarray(poolAt, poolAt + n);
  poolAt += n;
  return view;
}

const UUIDS = 64; // per batch: a 2.3 KiB string
let uuids = '';
let nextUuid = UUIDS;

/**
 * 16-bit tables of two characters each, built byte by byte (so they hold for either byte order):
 * `pair[b]` is byte b's two hex digits, `dashHi[n]` `-` and hex digit n, `loDash[n]` hex digit n
 * and `-`. A UUID's 36 characters are then 18 two-character stores, where a digit at a time was 32
 * stores, 32 table reads and a dash test per digit (about 1.2 k instructions per UUID on Node 20,
 * the largest cost of the agent's own on the incoming request path). The groups after the first
 * dash start at odd positions, so their pairs straddle two bytes (the low digit of one, the high
 * digit of the next): that is `pair` of the byte made of those two digits. Built at the first
 * batch, not at start-up; the batch is formatted into one kept buffer (its string is a copy).
 */
interface UuidTables {
  pair: Uint16Array;
  dashHi: Uint16Array;
  loDash: Uint16Array;
  out16: Uint16Array;
  out: Buffer;
}
let tables: UuidTables | undefined;

function pairs(count: number, first: (i: number) => number, second: (i: number) => number): Uint16Array {
  const table = new Uint16Array(count);
  const bytes = new Uint8Array(table.buffer);
  for (let i = 0; i < count; i++) {
    bytes[2 * i] = first(i);
    bytes[2 * i + 1] = second(i);
  }
  return table;
}

function uuidTables(): UuidTables {
  const digit = (n: number) => '0123456789abcdef'.charCodeAt(n);
  const dash = () => 45;
  const out16 = new Uint16Array(18 * UUIDS);
  return {
    pair: pairs(
      256,
      (b) => digit(b >> 4),
      (b) => digit(b & 15),
    ),
    dashHi: pairs(16, dash, digit),
    loDash: pairs(16, digit, dash),
    out16,
    out: Buffer.from(out16.buffer, 0, 36 * UUIDS),
  };
}

function fillUuids(): void {
  const rnd = randomBytes(16 * UUIDS);
  const t = (tables ??= uuidTables());
  const { pair, dashHi, loDash, out16: out } = t;
  for (let r = 0, o = 0; r < rnd.length; r += 16, o += 18) {
    // xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx: version 4, RFC 9562 variant (N is 8, 9, a or b)
    const b4 = rnd[r + 4]!;
    const b5 = rnd[r + 5]!;
    const b6 = (rnd[r + 6]! & 0x0f) | 0x40;
    const b8 = (rnd[r + 8]! & 0x3f) | 0x80;
    const b9 = rnd[r + 9]!;
    out[o] = pair[rnd[r]!]!;
    out[o + 1] = pair[rnd[r + 1]!]!;
    out[o + 2] = pair[rnd[r + 2]!]!;
    out[o + 3] = pair[rnd[r + 3]!]!;
    out[o + 4] = dashHi[b4 >> 4]!;
    out[o + 5] = pair[((b4 << 4) | (b5 >> 4)) & 255]!;
    out[o + 6] = loDash[b5 & 15]!;
    out[o + 7] = pair[b6]!;
    out[o + 8] = pair[rnd[r + 7]!]!;
    out[o + 9] = dashHi[b8 >> 4]!;
    out[o + 10] = pair[((b8 << 4) | (b9 >> 4)) & 255]!;
    out[o + 11] = loDash[b9 & 15]!;
    out[o + 12] = pair[rnd[r + 10]!]!;
    out[o + 13] = pair[rnd[r + 11]!]!;
    out[o + 14] = pair[rnd[r + 12]!]!;
    out[o + 15] = pair[rnd[r + 13]!]!;
    out[o + 16] = pair[rnd[r + 14]!]!;
    out[o + 17] = pair[rnd[r + 15]!]!;
  }
  uuids = t.out.toString('latin1');
  nextUuid = 0;
}

/** A random (version 4) UUID, lower-case, as a flat string. */
export function randomUuid(): string {
  if (nextUuid === UUIDS) fillUuids();
  const o = nextUuid++ * 36;
  return uuids.slice(o, o + 36);
}

const SPANS = 128; // per batch: a 2 KiB string
let spans = '';
let nextSpan = SPANS;
/** The span id W3C trace context forbids. */
export const ZERO_SPAN = '0000000000000000';

/** 16 random lower-case hex digits, never all zero (W3C trace context forbids an all-zero span id). */
export function randomSpanId(): string {
  if (nextSpan === SPANS) {
    spans = randomBytes(8 * SPANS).toString('hex');
    nextSpan = 0;
  }
  const o = nextSpan++ * 16;
  const span = spans.slice(o, o + 16);
  return span === ZERO_SPAN ? '0000000000000001' : span;
}
