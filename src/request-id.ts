/**
 * Request IDs: the allowlist lives here and nowhere else.
 * An ID reaches SQL comments and outgoing headers, so only characters that can end neither
 * (no `*`, `/`, quotes, spaces, CR/LF, non-ASCII) are accepted; anything else is replaced.
 */
const ALLOWED = /^[A-Za-z0-9._:-]{1,128}$/;

export function isValidRequestId(value: unknown): value is string {
  return typeof value === 'string' && value.length <= 128 && ALLOWED.test(value);
}

// node:crypto is loaded at the first ID, not at start-up (it is about a tenth of `node -e 0`).
let uuid: (() => string) | undefined;

export function newRequestId(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (uuid ??= (require('node:crypto') as typeof import('node:crypto')).randomUUID)();
}
