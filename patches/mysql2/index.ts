/**
 * mysql2's patch definition: Connection#query and #execute timed (and query() commented), Pool
 * callbacks bound to the caller's context (./query.ts), and the health hatch's knowledge of mysql2
 * (./probe.ts). Its module is mysql2's `lib/connection.js`, which both `mysql2` and `mysql2/promise`
 * require (the promise entry no longer loads the main file): one patch covers both, by `require` and
 * by `import`. patches/index.ts declares it lazily, so this folder loads only when mysql2 is loaded.
 */
import type { PatchDefinition } from '../../src/registry';
import { mysql2Patch, type Mysql2Exports } from './query';

export const mysql2: PatchDefinition<Mysql2Exports> = {
  module: 'mysql2/lib/connection',
  feature: 'mysql2',
  versions: ['3.0.0', '4.0.0'],
  ...mysql2Patch,
};
