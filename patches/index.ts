/**
 * Every instrumentation the agent declares (src/registry.ts applies them): the module patches, in
 * the order they are declared to require-in-the-middle, and the channel subscribers.
 */
import type { Definition, PatchDefinition, SubscriberDefinition } from '../src/registry';
import { httpServer, httpsServer } from './http-server/index';
import { http2Server } from './http2-server';
import { httpClient, httpsClient } from './http-client';
import { undici } from './undici';
import { pg, pgPool, pgCursor } from './pg/index';
import { express } from './express';
import { fastify } from './fastify';
import { koa } from './koa';
import { hapi } from './hapi';
import { nest } from './nest';
import { ejs } from './ejs';
import { pug } from './pug';
import { handlebars } from './handlebars';
import { nunjucks } from './nunjucks';
import { pino } from './pino';
import { winston } from './winston';

export const ALL_PATCHES: PatchDefinition[] = [
  httpServer,
  httpsServer,
  http2Server,
  httpClient,
  httpsClient,
  pg,
  pgPool,
  pgCursor,
  express,
  fastify,
  koa,
  hapi,
  nest,
  ejs,
  pug,
  handlebars,
  nunjucks,
  pino,
  winston,
];

/** Libraries that publish on diagnostics channels of their own: subscribed at start. */
export const SUBSCRIBERS: SubscriberDefinition[] = [undici];

/** Off with HATCH_LOG_INJECTION=off. */
export const LOG_PATCHES: PatchDefinition[] = [pino, winston];

/** What the agent enables under a configuration: HATCH_LOG_INJECTION=off leaves out the log patches. */
export function definitions(logInjection: boolean): Definition[] {
  return [...(logInjection ? ALL_PATCHES : ALL_PATCHES.filter((p) => !LOG_PATCHES.includes(p))), ...SUBSCRIBERS];
}
