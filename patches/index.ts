/** Every patch the agent knows, in the order they are declared to require-in-the-middle. */
import type { PatchDefinition } from '../src/hook';
import { httpServer, httpsServer } from './http-server';
import { httpClient, httpsClient } from './http-client';
import { pg } from './pg';
import { pgPool } from './pg-pool';
import { pgCursor } from './pg-cursor';
import { pino } from './pino';
import { winston } from './winston';

export const ALL_PATCHES: PatchDefinition[] = [httpServer, httpsServer, httpClient, httpsClient, pg, pgPool, pgCursor, pino, winston];

/** Off with HATCH_LOG_INJECTION=off. */
export const LOG_PATCHES: PatchDefinition[] = [pino, winston];
