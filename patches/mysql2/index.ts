/**
 * mysql2's patch definition: Connection#query and #execute timed (and query() commented), Pool
 * callbacks bound to the caller's context (./query.ts), and the health hatch's knowledge of mysql2
 * (./probe.ts). patches/index.ts declares it lazily, so this folder loads only when the app first
 * requires mysql2 (`mysql2/promise` requires it too, so the promise API is covered by the same patch).
 */
import type { PatchDefinition } from '../../src/registry';
import { mysql2Patch, type Mysql2Exports } from './query';

export const mysql2: PatchDefinition<Mysql2Exports> = {
  module: 'mysql2',
  feature: 'mysql2',
  versions: ['3.0.0', '4.0.0'],
  ...mysql2Patch,
};
