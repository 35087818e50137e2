/**
 * Request IDs: the allowlist lives here and nowhere else.
 * An ID reaches SQL comments and outgoing headers, so only characters that can end neither
 * (no `*`, `/`, quotes, spaces, CR/LF, non-ASCII) are accepted; anything else is replaced.
 */
import { randomUuid } from './random';

// The allowlist is [A-Za-z0-9._:-]{1,128}. The length is checked apart, so the pattern is a plain
// `+` loop, which the regex engine runs without the bounded form's repetition counter: a UUID is
// checked in about 470 instructions instead of 930 (Node 20), once at every SQL comment.
const ALLOWED = /^[A-Za-z0-9._:-]+$/;

/**
 * The last ID that passed: a request's queries each check its one ID for their SQL comment, and a
 * batch of jobs enqueued together carries one, so the regex ran again for an ID it had just
 * passed (about 470 instructions a query after the first). An equal string passed; any other is
 * checked. Until an ID has passed it is undefined, which a value of `undefined` must not match.
 */
let lastValid: string | undefined;

export function isValidRequestId(value: unknown): value is string {
  if (value === lastValid && lastValid !== undefined) return true;
  if (!(typeof value === 'string' && value.length <= 128 && ALLOWED.test(value))) return false;
  lastValid = value;
  return true;
}

/** A new ID: a random UUID (src/random.ts: batched, and a flat string). */
export function newRequestId(): string {
  return randomUuid();
}
