/**
 * Request IDs: the allowlist lives here and nowhere else.
 * An ID reaches SQL comments and outgoing headers, so only characters that can end neither
 * (no `*`, `/`, quotes, spaces, CR/LF, non-ASCII) are accepted; anything else is replaced.
 */
import { randomUuid } from './random';

const ALLOWED = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The last ID known to pass the allowlist: the one made, or the last one checked. A request's ID
 * is checked again where it is written (each SQL comment): the same string then needs no regex.
 */
let lastValid: string | undefined;

export function isValidRequestId(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  if (value === lastValid) return true;
  if (value.length > 128 || !ALLOWED.test(value)) return false;
  lastValid = value;
  return true;
}

/** A new ID: a random UUID (src/random.ts: batched, and a flat string). */
export function newRequestId(): string {
  const id = randomUuid(); // hex digits and `-`: within the allowlist
  lastValid = id;
  return id;
}
