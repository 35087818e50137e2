/**
 * Every instrumentation the agent declares (src/registry.ts applies them): the module patches, in
 * the order they are declared to require-in-the-middle, and the channel subscribers.
 *
 * The patches of libraries (pg, the frameworks, the template engines, the loggers) are declared here
 * by module, feature and version range, and their code is loaded when the first module they apply
 * to is handed over: loading those files at every start-up was about a fifth of the agent's
 * start-up (in instructions, on Node 20), in processes that load few of the libraries. The
 * declaration here and the definition in each file must agree: test/unit/core.test.mjs compares
 * them. Node's own http, https and http2 patches too: a script that never requires http loads
 * none of them. undici's handlers load at the first message on its channels (lazySubscriber).
 */
import type { Config } from '../src/config';
import type { Definition, PatchDefinition, SubscriberDefinition, VersionRange } from '../src/registry';
import * as dc from 'node:diagnostics_channel';

/** A patch declared by module, feature and range, whose code is `require`d at its first use. */
export interface LazyPatch extends PatchDefinition {
  /** The file (relative to this one) and export name of the full definition. */
  readonly source: readonly [file: string, name: string];
  /** The full definition (loads its file). */
  load(): PatchDefinition;
}

/**
 * `replaces`: the definition answers `require` with a replacement of the module's export
 * (src/registry.ts `replace`: finalhandler, koa-compose), so the declaration has one too.
 */
function lazy(
  module: string,
  feature: string,
  versions: VersionRange,
  file: string,
  name: string,
  replaces = false,
): LazyPatch {
  let real: PatchDefinition | undefined;
  const load = () =>
    (real ??= (require(file) as Record<string, PatchDefinition | undefined>)[name] ?? missing(file, name));
  const declared: LazyPatch = {
    module,
    feature,
    versions,
    source: [file, name],
    load,
    patch(exports: unknown, config: Config) {
      load().patch(exports, config);
    },
    unpatch(exports: unknown) {
      // Nothing was patched if the file never loaded.
      if (real !== undefined) real.unpatch(exports);
    },
  };
  if (replaces) declared.replace = (exports: unknown) => load().replace?.(exports) ?? exports;
  return declared;
}

function missing(file: string, name: string): never {
  throw new Error(`${file} exports no ${name}`);
}

// Node's own modules: their range is Node's version. Lazy too: a script that never requires http
// pays nothing for the server and client patches.
const httpServer = lazy('http', 'http', ['20.0.0', '100.0.0'], './http-server/index', 'httpServer');
const httpsServer = lazy('https', 'http', ['20.0.0', '100.0.0'], './http-server/index', 'httpsServer');
const http2Server = lazy('http2', 'http2', ['20.0.0', '100.0.0'], './http2-server', 'http2Server');
const httpClient = lazy('http', 'http-client', ['20.0.0', '100.0.0'], './http-client', 'httpClient');
const httpsClient = lazy('https', 'http-client', ['20.0.0', '100.0.0'], './http-client', 'httpsClient');
const pg = lazy('pg', 'pg', ['8.0.3', '9.0.0'], './pg/index', 'pg');
const pgPool = lazy('pg-pool', 'pg', ['3.1.1', '4.0.0'], './pg/index', 'pgPool');
const pgCursor = lazy('pg-cursor', 'pg', ['2.0.0', '3.0.0'], './pg/index', 'pgCursor');
const mysql2 = lazy('mysql2/lib/connection', 'mysql2', ['3.0.0', '4.0.0'], './mysql2/index', 'mysql2');
const postgres = lazy('postgres', 'postgres', ['3.0.0', '4.0.0'], './postgres', 'postgres');
const express = lazy('express', 'express', ['4.16.0', '6.0.0'], './express', 'express');
const finalhandler = lazy('finalhandler', 'express', ['1.0.0', '3.0.0'], './finalhandler', 'finalhandler', true);
const fastify = lazy('fastify', 'fastify', ['4.0.0', '6.0.0'], './fastify', 'fastify');
const koa = lazy('koa', 'koa', ['2.0.0', '4.0.0'], './koa', 'koa');
const koaCompose = lazy('koa-compose', 'koa', ['3.0.0', '5.0.0'], './koa-compose', 'koaCompose', true);
const hapi = lazy('@hapi/hapi', 'hapi', ['20.1.2', '22.0.0'], './hapi', 'hapi');
const nest = lazy('@nestjs/core', 'nest', ['10.0.0', '13.0.0'], './nest', 'nest');
const ejs = lazy('ejs', 'ejs', ['3.0.0', '8.0.0'], './ejs', 'ejs');
const pug = lazy('pug', 'pug', ['3.0.0', '4.0.0'], './pug', 'pug');
const handlebars = lazy('handlebars', 'handlebars', ['4.0.0', '5.0.0'], './handlebars', 'handlebars');
const nunjucks = lazy('nunjucks', 'nunjucks', ['3.0.0', '4.0.0'], './nunjucks', 'nunjucks');
const pino = lazy('pino', 'pino', ['8.0.0', '11.0.0'], './pino', 'pino');
const winston = lazy('winston', 'winston', ['3.0.0', '4.0.0'], './winston', 'winston');
const nodemailer = lazy('nodemailer', 'mail', ['6.0.0', '11.0.0'], './nodemailer', 'nodemailer');
const bullmq = lazy('bullmq', 'bullmq', ['5.0.0', '6.0.0'], './bullmq/index', 'bullmq');
const nodeCron = lazy('node-cron', 'cron', ['3.0.0', '5.0.0'], './node-cron', 'nodeCron');
const cron = lazy('cron', 'cron', ['4.3.4', '5.0.0'], './cron', 'cron');
const redis = [
  lazy('ioredis', 'redis', ['5.0.0', '7.0.0'], './ioredis/index', 'ioredis'),
  lazy('@redis/client/dist/lib/client', 'redis', ['1.1.0', '7.0.0'], './redis/index', 'redisClient'),
  lazy('@redis/client/dist/lib/client/commands-queue', 'redis', ['1.1.0', '7.0.0'], './redis/index', 'redisQueue'),
];

export const ALL_PATCHES: PatchDefinition[] = [
  httpServer,
  httpsServer,
  http2Server,
  httpClient,
  httpsClient,
  pg,
  pgPool,
  pgCursor,
  mysql2,
  postgres,
  express,
  finalhandler,
  fastify,
  koa,
  koaCompose,
  hapi,
  nest,
  ejs,
  pug,
  handlebars,
  nunjucks,
  pino,
  winston,
  nodemailer,
  bullmq,
  nodeCron,
  cron,
  ...redis,
];

/**
 * A subscriber declared by its channels, whose handlers are `require`d at the first message: each
 * channel gets a small forwarding function, subscribed at start, so the order of subscription and
 * the messages seen are the same as with the handlers themselves (no subscribing during a publish).
 */
export interface LazySubscriber extends SubscriberDefinition {
  readonly source: readonly [file: string, name: string];
  load(): SubscriberDefinition & { handlers: Record<string, (m: unknown) => void> };
}

function lazySubscriber(
  feature: string,
  aliases: readonly string[],
  channels: readonly string[],
  file: string,
  name: string,
): LazySubscriber {
  type Real = ReturnType<LazySubscriber['load']>;
  let real: Real | undefined;
  const load = () => (real ??= (require(file) as Record<string, Real | undefined>)[name] ?? missing(file, name));
  const forwarders = channels.map((channel) => {
    let handler: ((m: unknown) => void) | undefined;
    return [channel, (m: unknown) => (handler ??= load().handlers[channel]!)(m)] as const;
  });
  return {
    kind: 'channels',
    feature,
    aliases,
    channels,
    source: [file, name],
    load,
    subscribe() {
      for (const [channel, fn] of forwarders) dc.subscribe(channel, fn);
    },
    unsubscribe() {
      for (const [channel, fn] of forwarders) dc.unsubscribe(channel, fn);
    },
  };
}

// Node's fetch (undici bundled in Node) and the undici package publish on these channels.
const undici = lazySubscriber(
  'undici',
  ['fetch'],
  ['undici:request:create', 'undici:request:headers', 'undici:request:trailers', 'undici:request:error'],
  './undici',
  'undici',
);

/** Libraries that publish on diagnostics channels of their own: subscribed at start. */
export const SUBSCRIBERS: SubscriberDefinition[] = [undici];

/** Off with HATCH_LOG_INJECTION=off. */
export const LOG_PATCHES: PatchDefinition[] = [pino, winston];

/** What the agent enables under a configuration: HATCH_LOG_INJECTION=off leaves out the log patches. */
export function definitions(logInjection: boolean): Definition[] {
  return [...(logInjection ? ALL_PATCHES : ALL_PATCHES.filter((p) => !LOG_PATCHES.includes(p))), ...SUBSCRIBERS];
}
