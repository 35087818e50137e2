/** Every patch the agent knows, in the order they are declared to require-in-the-middle. */
import type { PatchDefinition } from '../src/registry';
import { httpServer, httpsServer } from './http-server';
import { httpClient, httpsClient } from './http-client';
import { pg } from './pg';
import { pgPool } from './pg-pool';
import { pgCursor } from './pg-cursor';
import { express } from './express';
import { fastify } from './fastify';
import { koa } from './koa';
import { hapi } from './hapi';
import { ejs } from './ejs';
import { pug } from './pug';
import { handlebars } from './handlebars';
import { nunjucks } from './nunjucks';
import { pino } from './pino';
import { winston } from './winston';

export const ALL_PATCHES: PatchDefinition[] = [httpServer, httpsServer, httpClient, httpsClient, pg, pgPool, pgCursor, express, fastify, koa, hapi, ejs, pug, handlebars, nunjucks, pino, winston];

/** Off with HATCH_LOG_INJECTION=off. */
export const LOG_PATCHES: PatchDefinition[] = [pino, winston];
