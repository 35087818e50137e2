/**
 * Request IDs: the allowlist lives here and nowhere else.
 * An ID reaches SQL comments and outgoing headers, so only characters that can end neither
 * (no `*`, `/`, quotes, spaces, CR/LF, non-ASCII) are accepted; anything else is replaced.
 */
import { randomUuid } from './random';

const ALLOWED = /^[A-Za-z0-9._:-]{1,128}$/;

export function isValidRequestId(value: unknown): value is string {
  return typeof value === 'string' && value.length <= 128 && ALLOWED.test(value);
}

/** A new ID: a random UUID (src/random.ts: batched, and a flat string). */
export function newRequestId(): string {
  return randomUuid();
}
