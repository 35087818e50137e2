/**
 * The queue-ping hatch: `GET /_hatch/queue-ping?queue=<name>` pushes a ping job through one of the
 * app's own queues (a BullMQ Queue the app created, announced as pg pools are, src/instances.ts) and
 * waits up to HATCH_HEALTH_TIMEOUT_MS for a worker to complete it. 200 with the job's ID, its time to
 * start and to finish (ms from its enqueueing) and the worker that took it; 503 when no worker took it
 * in time ("no worker took the job in N ms"). The ping itself is the queue's kind's (patches/bullmq/
 * probe.ts): this file knows no library.
 * Without `queue`, the one queue the app has is pinged; with several, the answer lists them (400).
 * Limitations: a queue is known once the app constructed it in this process (a process that only
 * runs Workers has none to ping from); a ping that outlives the timeout is removed if still waiting.
 */
import { resources, type PingAnswer, type Resource } from '../instances';
import { jsonPage } from './pages';
import type { HatchDeps, Reply } from './reply';

/** Time past the ping's own budget for its enqueueing and clean-up, before the hatch answers anyway. */
const SLACK_MS = 500;

function reply(status: number, json: Record<string, unknown>, title: string): Reply {
  return { status, json, html: jsonPage(title, json) };
}

function bounded(p: Promise<PingAnswer>, ms: number): Promise<PingAnswer> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(
      () => resolve({ ok: false, message: `no worker took the job in ${ms} ms (the queue did not answer in time)` }),
      ms + SLACK_MS,
    );
    t.unref();
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e) => (clearTimeout(t), reject(e)),
    );
  });
}

export async function queuePingHatch(deps: HatchDeps, query: URLSearchParams): Promise<Reply> {
  const queues = resources().filter(
    (r): r is Resource & { ping: NonNullable<Resource['ping']> } => r.ping !== undefined && r.kind === 'queue',
  );
  const names = queues.map((q) => q.target);
  const wanted = query.get('queue');
  let chosen: (typeof queues)[number] | undefined;
  if (wanted === null || wanted === '') {
    if (queues.length !== 1)
      return reply(
        queues.length === 0 ? 404 : 400,
        {
          error: queues.length === 0 ? 'the app has created no queue in this process' : 'name one: ?queue=<name>',
          queues: names,
        },
        'queue ping',
      );
    chosen = queues[0];
  } else {
    chosen = queues.find((q) => q.target === wanted);
    if (chosen === undefined)
      return reply(
        404,
        { error: 'no such queue among those the app created', queue: wanted, queues: names },
        'queue ping',
      );
  }
  const ms = deps.config.hatchHealthTimeoutMs;
  let answer: PingAnswer;
  try {
    answer = await bounded(chosen.ping(ms), ms);
  } catch (err) {
    return reply(
      503,
      { error: `the ping could not be sent: ${(err as Error)?.message ?? String(err)}`, queue: chosen.target },
      'queue ping: failed',
    );
  }
  const { ok, message, ...detail } = answer;
  if (!ok) return reply(503, { error: message, queue: chosen.target, ...detail, timeoutMs: ms }, 'queue ping: failed');
  return reply(200, { status: 'pass', message, ...detail }, 'queue ping: pass');
}
