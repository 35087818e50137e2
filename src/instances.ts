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

const MAX = 1000; // an app creating Clients per request must not grow this without end

const seen = new WeakSet<object>();
const live = new Set<Instance>();
const counters: Record<Kind, number> = { pool: 0, client: 0 };

let enabled = false;

/** Turned on with the hatches: without them nothing is remembered. */
export function rememberInstances(on: boolean): void {
  enabled = on;
}

export function remember(kind: Kind, instance: object): void {
  if (!enabled || instance === null || typeof instance !== 'object' || seen.has(instance)) return;
  seen.add(instance);
  if (live.size >= MAX) prune();
  if (live.size >= MAX) return;
  live.add({ kind, n: ++counters[kind], ref: new WeakRef(instance) });
}

function prune(): void {
  for (const i of live) if (i.ref.deref() === undefined) live.delete(i);
}

/** The instances still alive, in order of registration. */
export function instances(): Array<{ kind: Kind; n: number; instance: any }> {
  prune();
  const out: Array<{ kind: Kind; n: number; instance: any }> = [];
  for (const i of live) {
    const instance = i.ref.deref();
    if (instance !== undefined) out.push({ kind: i.kind, n: i.n, instance });
  }
  return out;
}
