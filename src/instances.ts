/**
 * The pg Pools and Clients the app created, remembered weakly so the health hatch can send
 * `SELECT 1` through the app's own connections (never a new one). Registered by the pg and pg-pool
 * patches when an instance first connects (a Pool or Client that never connected has nothing to
 * check); held as WeakRefs, so the registry keeps no instance alive, and pruned as they go.
 */
export type Kind = 'pool' | 'client';

export interface Instance {
  kind: Kind;
  /** 1, 2, … in order of first connect, per kind: a stable name for the health check. */
  n: number;
  ref: WeakRef<object>;
}

// An app creating Clients per request (or a pool churning its own) must not grow this without end;
// pools have their own room, so a pool created late is still remembered.
const MAX: Record<Kind, number> = { pool: 100, client: 1000 };

const seen = new WeakSet<object>();
const live: Record<Kind, Set<Instance>> = { pool: new Set(), client: new Set() };
const counters: Record<Kind, number> = { pool: 0, client: 0 };

let enabled = false;

/** Turned on with the hatches: without them nothing is remembered. */
export function rememberInstances(on: boolean): void {
  enabled = on;
}

export function remember(kind: Kind, instance: object): void {
  if (!enabled || instance === null || typeof instance !== 'object' || seen.has(instance)) return;
  seen.add(instance);
  const set = live[kind];
  if (set.size >= MAX[kind]) prune(set);
  if (set.size >= MAX[kind]) return;
  set.add({ kind, n: ++counters[kind], ref: new WeakRef(instance) });
}

function prune(set: Set<Instance>): void {
  for (const i of set) if (i.ref.deref() === undefined) set.delete(i);
}

/** The instances still alive: pools, then clients, each in order of registration. */
export function instances(): Array<{ kind: Kind; n: number; instance: any }> {
  prune(live.pool);
  prune(live.client);
  const out: Array<{ kind: Kind; n: number; instance: any }> = [];
  for (const i of [...live.pool, ...live.client]) {
    const instance = i.ref.deref();
    if (instance !== undefined) out.push({ kind: i.kind, n: i.n, instance });
  }
  return out;
}
