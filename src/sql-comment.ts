/**
 * The `/* <request-id> *\/ ` prefix, and outside requests the run's `/* job:<name> run:<id> *\/ `
 * (src/run.ts). Prepended, never appended: PostgreSQL cuts long statements at
 * track_activity_query_size, and log readers see the start of a statement first. Either is
 * recognised, so a text that already starts with one gets no second.
 */
import { isValidRequestId } from './request-id';

const OURS = /^\/\* (?:[A-Za-z0-9._:-]{1,128}|job:[A-Za-z0-9_-]{1,64} run:[A-Za-z0-9._:-]{1,128}) \*\/ /;

export function hasRequestComment(text: string): boolean {
  // '/' is char 47: skip the regex for the common case of plain SQL.
  return text.charCodeAt(0) === 47 && OURS.test(text);
}

/** The text to send, or `undefined` when it must go out unchanged. */
export function commentedSql(text: string, id: string): string | undefined {
  if (hasRequestComment(text) || !isValidRequestId(id)) return undefined;
  return '/* ' + id + ' */ ' + text;
}

/**
 * The text with the run's prefix (src/run.ts runSqlComment: built once, from an allowlisted ID and a
 * metric-safe job name), or `undefined` when it already starts with one of our comments.
 */
export function runCommentedSql(text: string, prefix: string): string | undefined {
  return hasRequestComment(text) ? undefined : prefix + text;
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

/**
 * The statement's first keyword (SELECT, INSERT, …) or OTHER: a bounded metric dimension.
 * Leading blanks, comments (ours included) and parentheses are skipped.
 */
export function sqlOperation(text: string): string {
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
