/**
 * pg's three patch definitions: pg's Client (queries, their comments and timings: ./client.ts),
 * pg-pool (connect callbacks: ./pool.ts) and pg-cursor (read callbacks: ./cursor.ts); the health
 * hatch's knowledge of pg is in ./probe.ts. Only these declarations load at start-up: each patch's
 * code is required when the app first requires its module (a module file costs about 0.25 ms to
 * load), so a process without pg loads none of it. A failure to load is reported by the registry
 * as that patch failing, and the module is left untouched.
 */
import type * as Pg from 'pg';
import type PgPool from 'pg-pool';
import type PgCursor from 'pg-cursor';
import type { PatchDefinition } from '../../src/registry';

/** What a definition's file provides: its patch and unpatch of the module's exports T. */
export type PatchCode<T> = Pick<PatchDefinition<T>, 'patch' | 'unpatch'>;

function loadedFrom<T>(load: () => PatchCode<T>): PatchCode<T> {
  let code: PatchCode<T> | undefined;
  return {
    patch: (exports, config) => (code ??= load()).patch(exports, config),
    unpatch: (exports) => (code ??= load()).unpatch(exports),
  };
}

// Each patch's code is required at its module's first require (see the header), not at start-up.
export const pg: PatchDefinition<typeof Pg> = {
  module: 'pg',
  feature: 'pg',
  versions: ['8.0.3', '9.0.0'],
  ...loadedFrom(() => (require('./client') as typeof import('./client')).clientPatch),
};

export const pgPool: PatchDefinition<typeof PgPool> = {
  module: 'pg-pool',
  feature: 'pg',
  versions: ['3.1.1', '4.0.0'],
  ...loadedFrom(() => (require('./pool') as typeof import('./pool')).poolPatch),
};

export const pgCursor: PatchDefinition<typeof PgCursor> = {
  module: 'pg-cursor',
  feature: 'pg',
  versions: ['2.0.0', '3.0.0'],
  ...loadedFrom(() => (require('./cursor') as typeof import('./cursor')).cursorPatch),
};
