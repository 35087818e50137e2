/**
 * The resources the app created and the hatches may check: pg Pools and Clients, nodemailer
 * transports (which the mail hatch also sends a test message through), and later Redis clients and queues. It works without knowing any library:
 * - a patch announces an instance on the bus (`hatch:instance`, published only when someone
 *   listens), together with the ResourceKind that its own folder implements (how to name the
 *   instance's target, whether it is worth listing, how to probe it through the app's own object);
 * - this registry listens only while the hatches are on (rememberInstances), keeps each instance
 *   as a WeakRef (it keeps nothing alive) and prunes the ones gone;
 * - the health hatch asks `resources()` for what to check and calls each kind's probe.
 * Limitations: at most `max` instances of a kind are remembered (an app making a Client per request
 * must not grow this without end); once full, a kind's new instances are not listed until old ones
 * are collected.
 */
import { channels, type InstanceEvent } from './bus';

/**
 * What a patch knows about one kind of object its library makes. One object per kind, shared by all
 * its instances, holding none of them: the registry holds the instances, weakly. Every method gets
 * the instance, may read the library's private fields (it lives in the library's patch folder), and
 * must never throw into the app (the registry still guards every call). The registry holds kinds of
 * every T as `ResourceKind` (of `object`): its methods take the instance it was announced with.
 */
export interface ResourceKind<T extends object = object> {
  /** The library's family, the first word of a check's name: `pg`, later `redis`, `smtp`, `bullmq`. */
  readonly system: string;
  /** `pool`, `client`, later `transport`, `queue`: instances are numbered per system and kind. */
  readonly kind: string;
  /** How many instances of this kind are remembered at most. */
  readonly max: number;
  /** Where it points, without credentials (`db.internal:5432/app`); '' when it cannot tell. */
  target(instance: T): string;
  /** False while it is not worth checking: ended or closed, or owned by something checked in its place. */
  listed(instance: T): boolean;
  /** The instances this one is checked for (a pool's own clients, a queue's connection): left out of the list. */
  parts?(instance: T): Iterable<object>;
  /**
   * Checks it through the app's own object: no new connection, and never queued behind the app's
   * own work (a busy instance resolves with a detail saying so, unprobed). Resolves with what it
   * saw, rejects with why it failed. The caller times it out after `timeoutMs`.
   */
  probe(instance: T, timeoutMs: number): Promise<string>;
  /** For a kind that sends mail: sends the mail hatch's test message through the app's own object. */
  sendTest?(instance: T, mail: TestMail): Promise<MailAnswer>;
  /**
   * Pushes a test message through the instance's real machinery (a BullMQ queue: a ping job that a
   * worker must complete) for the queue-ping hatch, waiting at most `timeoutMs`. Resolves with what it
   * saw: `ok` false when nothing answered in time. Only kinds that have such a round trip have one.
   */
  ping?(instance: T, timeoutMs: number): Promise<PingAnswer>;
}

/** The mail hatch's test message (src/hatches/mail.ts). */
export interface TestMail {
  to: string;
  subject: string;
  text: string;
  headers: Record<string, string>;
}

/** What a transport answered to a test message; `error` when it refused or failed. */
export interface MailAnswer {
  sent: boolean;
  from?: string;
  accepted: string[];
  rejected: string[];
  response?: string;
  messageId?: string;
  error?: string;
  code?: string;
}

/** What a kind's ping saw: `message` says it in one line; the other fields are its details. */
export interface PingAnswer {
  ok: boolean;
  message: string;
  [detail: string]: unknown;
}

/** One resource the health hatch checks now. */
export interface Resource {
  /** `pg pool 1 (127.0.0.1:5432/app)`: system, kind, its number in order of announcement, target. */
  name: string;
  /** Its number among its kind's instances (the `1` of `pg pool 1`). */
  n: number;
  /** The kind's probe, bound to the instance. */
  probe(timeoutMs: number): Promise<string>;
  /** The kind's sendTest, bound to the instance, for kinds that send mail. */
  sendTest?(mail: TestMail): Promise<MailAnswer>;
  system: string;
  kind: string;
  /** The kind's target() of the instance (a BullMQ queue's name). */
  target: string;
  /** The kind's ping, bound to the instance, when the kind has one. */
  ping?: (timeoutMs: number) => Promise<PingAnswer>;
}

interface Entry {
  n: number;
  ref: WeakRef<object>;
}

interface Group {
  of: ResourceKind;
  entries: Set<Entry>;
  count: number;
}

const seen = new WeakSet<object>();
/** Keyed by system and kind, in order of first announcement. */
const groups = new Map<string, Group>();
let listening = false;

function onAnnounce(m: unknown): void {
  const { of, instance } = m as InstanceEvent;
  if (instance === null || typeof instance !== 'object' || seen.has(instance)) return;
  seen.add(instance);
  const key = `${of.system} ${of.kind}`;
  let g = groups.get(key);
  if (g === undefined) groups.set(key, (g = { of, entries: new Set(), count: 0 }));
  if (g.entries.size >= of.max) prune(g);
  if (g.entries.size >= of.max) return;
  g.entries.add({ n: ++g.count, ref: new WeakRef(instance) });
}

/** Turned on with the hatches: without them nothing is remembered, and announcing costs one `hasSubscribers` check. */
export function rememberInstances(on: boolean): void {
  if (on === listening) return;
  listening = on;
  if (on) channels.instance.subscribe(onAnnounce);
  else channels.instance.unsubscribe(onAnnounce);
}

function prune(g: Group): void {
  for (const e of g.entries) if (e.ref.deref() === undefined) g.entries.delete(e);
}

/** Asks a kind's method, and never lets it throw: a failing kind is reported by its check. */
function ask<R>(fn: () => R, fallback: R): { value: R; error?: unknown } {
  try {
    return { value: fn() };
  } catch (error) {
    return { value: fallback, error };
  }
}

/**
 * What to check now: every live, listed instance that is not a part of another (a pool's client is
 * checked through its pool). Containers (kinds with parts) come first, then in order of first
 * announcement; within a kind, in order of announcement.
 */
export function resources(): Resource[] {
  const live: Array<{ of: ResourceKind; n: number; instance: object }> = [];
  const ordered = [...groups.values()].sort(
    (a, b) => Number(b.of.parts !== undefined) - Number(a.of.parts !== undefined),
  );
  for (const g of ordered) {
    prune(g);
    for (const e of g.entries) {
      const instance = e.ref.deref();
      if (instance !== undefined) live.push({ of: g.of, n: e.n, instance });
    }
  }
  const parts = new Set<object>();
  for (const { of, instance } of live) {
    if (of.parts === undefined) continue;
    for (const p of ask(() => [...of.parts!(instance)], [] as object[]).value) parts.add(p);
  }
  const out: Resource[] = [];
  for (const { of, n, instance } of live) {
    if (parts.has(instance)) continue;
    const listed = ask(() => of.listed(instance), true);
    if (!listed.value) continue;
    const target = ask(() => of.target(instance), '').value;
    const name = `${of.system} ${of.kind} ${n}${target ? ` (${target})` : ''}`;
    const failed = listed.error;
    const sendTest = of.sendTest;
    const ping = of.ping;
    out.push({
      name,
      n,
      ...(sendTest && { sendTest: (mail: TestMail) => Promise.resolve().then(() => sendTest(instance, mail)) }),
      system: of.system,
      kind: of.kind,
      target,
      probe:
        failed !== undefined
          ? () => Promise.reject(failed)
          : (ms) => Promise.resolve().then(() => of.probe(instance, ms)),
      ping: ping === undefined ? undefined : (ms) => Promise.resolve().then(() => ping.call(of, instance, ms)),
    });
  }
  return out;
}
