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
 * Each declaration requires its file with a literal path inside a function: the build's start-up
 * bundle (build/bundle.mjs) leaves a `require()` call out of the bundle, and points its path at the
 * file in dist/, so the file stays out of start-up and is loaded from there at its first use.
 */
import type { Config } from '../src/config';
import type { Definition, PatchDefinition, SubscriberDefinition, VersionRange } from '../src/registry';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';

/** A patch declared by module, feature and range, whose code is `require`d at its first use. */
export interface LazyPatch extends PatchDefinition {
  /** The export name of the full definition in its file. */
  readonly source: string;
  /** The full definition (loads its file). */
  load(): PatchDefinition;
}

/** `() => require('./file')`: a literal path, so the build sees which file it is (see the header). */
type Loader = () => unknown;

/**
 * `replaces`: the definition answers `require` with a replacement of the module's export
 * (src/registry.ts `replace`: finalhandler, koa-compose), so the declaration has one too.
 */
function lazy(
  module: string,
  feature: string,
  versions: VersionRange,
  name: string,
  file: Loader,
  replaces = false,
): LazyPatch {
  let real: PatchDefinition | undefined;
  const load = () => (real ??= (file() as Record<string, PatchDefinition | undefined>)[name] ?? missing(module, name));
  const declared: LazyPatch = {
    module,
    feature,
    versions,
    source: name,
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

function missing(declared: string, name: string): never {
  throw new Error(`the file declared for ${declared} exports no ${name}`);
}

// Node's own modules: their range is Node's version. Lazy too: a script that never requires http
// pays nothing for the server and client patches.
const httpServer = lazy('http', 'http', ['20.0.0', '100.0.0'], 'httpServer', () => require('./http-server/index'));
const httpsServer = lazy('https', 'http', ['20.0.0', '100.0.0'], 'httpsServer', () => require('./http-server/index'));
const http2Server = lazy('http2', 'http2', ['20.0.0', '100.0.0'], 'http2Server', () => require('./http2-server'));
const httpClient = lazy('http', 'http-client', ['20.0.0', '100.0.0'], 'httpClient', () => require('./http-client'));
const httpsClient = lazy('https', 'http-client', ['20.0.0', '100.0.0'], 'httpsClient', () => require('./http-client'));
const pg = lazy('pg', 'pg', ['8.0.3', '9.0.0'], 'pg', () => require('./pg/index'));
const pgPool = lazy('pg-pool', 'pg', ['3.1.1', '4.0.0'], 'pgPool', () => require('./pg/index'));
const pgCursor = lazy('pg-cursor', 'pg', ['2.0.0', '3.0.0'], 'pgCursor', () => require('./pg/index'));
const mysql2 = lazy('mysql2/lib/connection', 'mysql2', ['3.0.0', '4.0.0'], 'mysql2', () => require('./mysql2/index'));
const postgres = lazy('postgres', 'postgres', ['3.0.0', '4.0.0'], 'postgres', () => require('./postgres'));
const express = lazy('express', 'express', ['4.16.0', '6.0.0'], 'express', () => require('./express'));
const finalhandler = lazy(
  'finalhandler',
  'express',
  ['1.0.0', '3.0.0'],
  'finalhandler',
  () => require('./finalhandler'),
  true,
);
const fastify = lazy('fastify', 'fastify', ['4.0.0', '6.0.0'], 'fastify', () => require('./fastify'));
const koa = lazy('koa', 'koa', ['2.0.0', '4.0.0'], 'koa', () => require('./koa'));
const koaCompose = lazy('koa-compose', 'koa', ['3.0.0', '5.0.0'], 'koaCompose', () => require('./koa-compose'), true);
const hapi = lazy('@hapi/hapi', 'hapi', ['20.1.2', '22.0.0'], 'hapi', () => require('./hapi'));
const nest = lazy('@nestjs/core', 'nest', ['10.0.0', '13.0.0'], 'nest', () => require('./nest'));
const ejs = lazy('ejs', 'ejs', ['3.0.0', '8.0.0'], 'ejs', () => require('./ejs'));
const pug = lazy('pug', 'pug', ['3.0.0', '4.0.0'], 'pug', () => require('./pug'));
const handlebars = lazy('handlebars', 'handlebars', ['4.0.0', '5.0.0'], 'handlebars', () => require('./handlebars'));
const nunjucks = lazy('nunjucks', 'nunjucks', ['3.0.0', '4.0.0'], 'nunjucks', () => require('./nunjucks'));
const pino = lazy('pino', 'pino', ['8.0.0', '11.0.0'], 'pino', () => require('./pino'));
const winston = lazy('winston', 'winston', ['3.0.0', '4.0.0'], 'winston', () => require('./winston'));
const nodemailer = lazy('nodemailer', 'mail', ['6.0.0', '11.0.0'], 'nodemailer', () => require('./nodemailer'));
const bullmq = lazy('bullmq', 'bullmq', ['5.0.0', '6.0.0'], 'bullmq', () => require('./bullmq/index'));
const nodeCron = lazy('node-cron', 'cron', ['3.0.0', '5.0.0'], 'nodeCron', () => require('./node-cron'));
const cron = lazy('cron', 'cron', ['4.3.4', '5.0.0'], 'cron', () => require('./cron'));
const redis = [
  lazy('ioredis', 'redis', ['5.0.0', '7.0.0'], 'ioredis', () => require('./ioredis/index')),
  lazy('@redis/client/dist/lib/client', 'redis', ['1.1.0', '7.0.0'], 'redisClient', () => require('./redis/index')),
  lazy('@redis/client/dist/lib/client/commands-queue', 'redis', ['1.1.0', '7.0.0'], 'redisQueue', () =>
    require('./redis/index'),
  ),
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
  readonly source: string;
  load(): SubscriberDefinition & { handlers: Record<string, (m: unknown) => void> };
}

function lazySubscriber(
  feature: string,
  aliases: readonly string[],
  channels: readonly string[],
  name: string,
  file: Loader,
): LazySubscriber {
  type Real = ReturnType<LazySubscriber['load']>;
  let real: Real | undefined;
  const load = () => (real ??= (file() as Record<string, Real | undefined>)[name] ?? missing(feature, name));
  const forwarders = channels.map((channel) => {
    let handler: ((m: unknown) => void) | undefined;
    return [channel, (m: unknown) => (handler ??= load().handlers[channel]!)(m)] as const;
  });
  return {
    kind: 'channels',
    feature,
    aliases,
    channels,
    source: name,
    load,
    subscribe() {
      for (const [channel, fn] of forwarders) subscribe(channel, fn);
    },
    unsubscribe() {
      for (const [channel, fn] of forwarders) unsubscribe(channel, fn);
    },
  };
}

// Node's fetch (undici bundled in Node) and the undici package publish on these channels.
const undici = lazySubscriber(
  'undici',
  ['fetch'],
  ['undici:request:create', 'undici:request:headers', 'undici:request:trailers', 'undici:request:error'],
  'undici',
  () => require('./undici'),
);

/** Libraries that publish on diagnostics channels of their own: subscribed at start. */
export const SUBSCRIBERS: SubscriberDefinition[] = [undici];

/** Off with HATCH_LOG_INJECTION=off. */
export const LOG_PATCHES: PatchDefinition[] = [pino, winston];

/** What the agent enables under a configuration: HATCH_LOG_INJECTION=off leaves out the log patches. */
export function definitions(logInjection: boolean): Definition[] {
  return [...(logInjection ? ALL_PATCHES : ALL_PATCHES.filter((p) => !LOG_PATCHES.includes(p))), ...SUBSCRIBERS];
}
