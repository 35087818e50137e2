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

const HEX = Buffer.from('0123456789abcdef', 'latin1');
const UUIDS = 64; // per batch: a 2.3 KiB string
let uuids = '';
let nextUuid = UUIDS;

function fillUuids(): void {
  const rnd = randomBytes(16 * UUIDS);
  const out = Buffer.allocUnsafe(36 * UUIDS);
  let o = 0;
  for (let r = 0; r < rnd.length; r += 16) {
    rnd[r + 6] = (rnd[r + 6]! & 0x0f) | 0x40; // version 4
    rnd[r + 8] = (rnd[r + 8]! & 0x3f) | 0x80; // RFC 9562 variant
    for (let b = 0; b < 16; b++) {
      if (b === 4 || b === 6 || b === 8 || b === 10) out[o++] = 45; // '-'
      const v = rnd[r + b]!;
      out[o++] = HEX[v >> 4]!;
      out[o++] = HEX[v & 15]!;
    }
  }
  uuids = out.toString('latin1');
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
