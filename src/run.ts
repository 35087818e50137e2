/**
 * The process's run: what code outside any request (and outside withRequestId) runs in. A script
 * started by cron is one run from start to exit; in a server, the run is the work outside requests
 * (start-up, timers, migrations), while each request keeps its own ID.
 *
 * - The ID is HATCH_RUN_ID when it passes the request-ID allowlist (src/config.ts), else a new
 *   UUID, made at its first use (node:crypto is not loaded at start-up for a run nobody asks about).
 * - The job name is HATCH_JOB_NAME, else the main script's file name without its extension
 *   (`/srv/jobs/nightly.js` is `nightly`), made metric-safe; `node` when there is no script
 *   (`node -e`, the REPL). The script's arguments are never read: they can hold secrets.
 * - It is not an AsyncLocalStorage store: readers fall back to the run when the store is empty, so
 *   a request (which has a store) pays nothing for it, and no store is entered at start-up.
 * One run per process, in a global slot shared by every copy of the agent, like the storage.
 * Limitations: a child process started with the agent preloaded and HATCH_RUN_ID inherited has
 * the parent's run ID; worker threads share the process's run.
 */
import { basename, extname } from 'node:path';
import { activeConfig, safeJobName, type Config } from './config';
import { newRequestId } from './request-id';

export interface Run {
  /** The job name: 1 to 64 of [A-Za-z0-9_-] (a metric segment, safe in a SQL comment). */
  readonly job: string;
  /** The run's ID (allowlisted); made at the first read. */
  readonly id: string;
  /** `/* job:<name> run:<id> *\/ `, the prefix SQL outside requests gets; made at the first read. */
  readonly sqlComment: string;
  /** A server: its start pings a check-in, its end does not (src/checkin.ts). */
  server: boolean;
}

/** The job name of a main script: its file name without the extension, metric-safe. */
export function jobOfScript(script: string | undefined): string {
  if (script === undefined || script === '') return 'node';
  const base = basename(script);
  const ext = extname(base);
  return safeJobName(ext !== '' && ext !== base ? base.slice(0, -ext.length) : base);
}

class ProcessRun implements Run {
  server = false;
  private ownId: string | undefined;
  private comment: string | undefined;
  constructor(
    readonly job: string,
    id: string | undefined,
  ) {
    this.ownId = id;
  }
  get id(): string {
    return (this.ownId ??= newRequestId());
  }
  get sqlComment(): string {
    return (this.comment ??= `/* job:${this.job} run:${this.id} */ `);
  }
}

const KEY = Symbol.for('hatch-agent.run');
type Holder = { [KEY]?: ProcessRun };
const holder = globalThis as Holder;

/** Starts the process's run from the configuration (once: a second call returns the first run). */
export function startRun(config: Pick<Config, 'runId' | 'jobName'>): Run {
  // argv[1] is the main script, already resolved by Node when preloads run; argv[2..] are never read.
  return (holder[KEY] ??= new ProcessRun(config.jobName ?? jobOfScript(process.argv[1]), config.runId));
}

/** The process's run (started from the active configuration if the agent has not started it). */
export function currentRun(): Run {
  return holder[KEY] ?? startRun(activeConfig());
}

/** The ID of the process's run: what SQL, log records and check-ins outside requests carry. */
export function getRunId(): string {
  return currentRun().id;
}

/**
 * The SQL comment for a statement sent outside any request, or undefined when comments are off
 * (HATCH_SQL_COMMENT=off or HATCH_RUN_COMMENT=off).
 */
export function runSqlComment(): string | undefined {
  const c = activeConfig();
  return c.sqlComment && c.runComment ? currentRun().sqlComment : undefined;
}

/** Called when the process starts listening for requests: it is a server, not a job. */
export function markServer(): void {
  const run = holder[KEY];
  if (run !== undefined) run.server = true;
}
