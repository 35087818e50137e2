/** pg's patches: the Client (queries and their comments), pg-pool (connect callbacks), pg-cursor (read callbacks). */
export { pg } from './client';
export { pgPool } from './pool';
export { pgCursor } from './cursor';
