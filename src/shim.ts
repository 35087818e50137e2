/**
 * Every function the agent hands out in place of a library's own (a patched method or export, a
 * compiled template, a callback passed on in place of the caller's) goes through `markWrapper`,
 * so that it looks like the function it replaces: the same `name` and `length`, the same own
 * properties with the same descriptors (symbols such as util.promisify.custom included), the same
 * `prototype` object (or none, as a class method has none) and the same [[Prototype]] (an async
 * function's stays AsyncFunction.prototype). It is marked (non-enumerable global symbols) with its
 * original, so wrapping is idempotent across copies of the agent, reversible (`wrap`/`unwrap`), and
 * a test can find every wrapper.
 * What still tells a wrapper apart (the README's "Intended differences" table): the marker symbols
 * (Reflect.ownKeys, getOwnPropertySymbols), `toString()` (its source is the wrapper's), and being
 * a different object.
 * HATCH_TEST_WRAPPERS=1 (test-only, read once at load like HATCH_TEST_FAULT) also keeps a list of
 * [wrapper, original, where] on globalThis[Symbol.for('hatch-agent.testWrappers')]; unset, it
 * costs one comparison per wrapper made.
 */
const WRAPPED = Symbol.for('hatch-agent.wrapped');
const ORIGINAL = Symbol.for('hatch-agent.original');
const WAS_OWN = Symbol.for('hatch-agent.wasOwn');
const MARKERS: readonly PropertyKey[] = [WRAPPED, ORIGINAL, WAS_OWN];

/**
 * Any function. Every parameter list accepts `never`, so a wrapper of any signature is one; it is
 * called only through `apply` with the `this` and arguments it was given.
 */
export type AnyFunction = (...args: never[]) => unknown;
/** The function a wrapper wraps, as the wrapper sees it: it takes whatever it is passed on. */
export type Fn = (...args: unknown[]) => unknown;
type Marked = AnyFunction & { [WRAPPED]?: true; [ORIGINAL]?: AnyFunction; [WAS_OWN]?: boolean };

export interface WrapperRecord {
  wrapper: AnyFunction;
  original: AnyFunction;
  where: string;
}
const REGISTRY_KEY = Symbol.for('hatch-agent.testWrappers');
const registry: WrapperRecord[] | undefined =
  process.env.HATCH_TEST_WRAPPERS === '1'
    ? ((globalThis as { [REGISTRY_KEY]?: WrapperRecord[] })[REGISTRY_KEY] ??= [])
    : undefined;

const hasOwn = (o: object, k: PropertyKey) => Object.prototype.hasOwnProperty.call(o, k);

export function isWrapped(fn: unknown): boolean {
  return typeof fn === 'function' && (fn as Marked)[WRAPPED] === true;
}

/** The function a wrapper stands for (followed through wrappers of wrappers), or `fn` itself. */
export function originalOf<F extends AnyFunction>(fn: F): F {
  let f = fn as AnyFunction;
  while ((f as Marked)[WRAPPED] === true && typeof (f as Marked)[ORIGINAL] === 'function') f = (f as Marked)[ORIGINAL]!;
  return f as F;
}

/**
 * The same wrapper as a method: no `prototype` of its own, not a constructor, as the class method
 * it stands for. One more call and arguments object on the way (V8 often inlines it); only wrappers
 * of class methods need it. A wrapper written as an object-literal method (`({ name() {…} }).name`)
 * already has no `prototype` and is handed out as it is: the shape for a wrapper on a hot path
 * (patches/bullmq, pg, mysql2, ioredis). A version whose original is a plain function gets it in a
 * function shell instead (asFunction).
 */
function asMethod(inner: AnyFunction): AnyFunction {
  return {
    m(this: unknown) {
      return Reflect.apply(inner, this, arguments);
    },
  }.m;
}

/**
 * The reverse: a method-shaped wrapper (no `prototype`, not a constructor) as a plain function, for
 * an original that is one (a library version whose methods are prototype assignments, not a class).
 * So a patch whose library changed shape across its range writes its hot-path wrapper as a method:
 * the versions with class methods get it as it is, the older ones this one call more.
 */
function asFunction(inner: AnyFunction): AnyFunction {
  return function (this: unknown) {
    return Reflect.apply(inner, this, arguments);
  };
}

/**
 * Makes `wrapper` look like `original` (see the header) and marks it; returns the function to hand
 * out, which is `wrapper` itself when both have a `prototype` or neither has, and otherwise the
 * wrapper in a shell of the original's shape (asMethod, asFunction), so that `new` works on the
 * wrapper exactly when it works on the original. Never throws: a property that cannot be copied is
 * left as it is.
 */
export function markWrapper<F extends AnyFunction>(wrapper: F, original: AnyFunction, where: string): F {
  let w: AnyFunction = wrapper;
  try {
    const keepsPrototype = hasOwn(original, 'prototype');
    if (!keepsPrototype && hasOwn(w, 'prototype')) w = asMethod(w);
    else if (keepsPrototype && !hasOwn(w, 'prototype')) w = asFunction(w);
    const proto = Object.getPrototypeOf(original);
    if (Object.getPrototypeOf(w) !== proto) Object.setPrototypeOf(w, proto);
    // The wrapper's own keys the original lacks (its own name, length, an empty prototype) go first.
    for (const key of Reflect.ownKeys(w)) {
      if (!hasOwn(original, key) && !MARKERS.includes(key)) {
        try {
          delete (w as unknown as Record<PropertyKey, unknown>)[key];
        } catch {
          // non-configurable: stays
        }
      }
    }
    for (const key of Reflect.ownKeys(original)) {
      if (MARKERS.includes(key)) continue;
      const desc = Object.getOwnPropertyDescriptor(original, key)!;
      const mine = Object.getOwnPropertyDescriptor(w, key);
      try {
        if (mine === undefined || mine.configurable) Object.defineProperty(w, key, desc);
        else if (mine.writable && 'value' in desc) (w as unknown as Record<PropertyKey, unknown>)[key] = desc.value; // a function's own prototype
      } catch {
        // an exotic property: left as the wrapper has it
      }
    }
  } catch {
    // the wrapper still calls through; only its looks differ
  }
  // Non-enumerable, so util.inspect of an app object that holds the wrapper prints as before.
  Object.defineProperty(w, WRAPPED, { value: true, configurable: true });
  Object.defineProperty(w, ORIGINAL, { value: original, configurable: true });
  if (registry !== undefined) registry.push({ wrapper: w, original, where });
  return w as F;
}

/** `Server.prototype.emit`, `render`: where a wrapper sits, for the test registry only. */
function placeOf(obj: object, name: PropertyKey): string {
  const key = typeof name === 'symbol' ? `[${name.description ?? 'symbol'}]` : String(name);
  const ctor = hasOwn(obj, 'constructor') ? (obj as { constructor?: { name?: unknown } }).constructor : undefined;
  if (typeof ctor === 'function' && typeof ctor.name === 'string' && ctor.name !== '')
    return `${ctor.name}.prototype.${key}`;
  if (typeof obj === 'function' && (obj as AnyFunction).name) return `${(obj as AnyFunction).name}.${key}`;
  return key;
}

function inheritedDescriptor(obj: object, name: PropertyKey): PropertyDescriptor | undefined {
  for (let o = Object.getPrototypeOf(obj); o !== null; o = Object.getPrototypeOf(o)) {
    const d = Object.getOwnPropertyDescriptor(o, name);
    if (d !== undefined) return d;
  }
  return undefined;
}

/** Replaces obj[name] with makeWrapper(original). Returns false when there is nothing to wrap. */
export function wrap<F extends AnyFunction = Fn>(
  obj: object,
  name: PropertyKey,
  makeWrapper: (original: F) => AnyFunction,
): boolean {
  const target = obj as Record<PropertyKey, unknown>;
  const original = target[name];
  if (typeof original !== 'function') return false;
  if (isWrapped(original)) return false;
  const wrapper = markWrapper(
    makeWrapper(original as F),
    original as AnyFunction,
    registry !== undefined ? placeOf(obj, name) : '',
  ) as Marked;
  const own = Object.getOwnPropertyDescriptor(obj, name);
  Object.defineProperty(wrapper, WAS_OWN, { value: own !== undefined, configurable: true });
  // An inherited original (EventEmitter's emit seen from ClientRequest.prototype) is shadowed with
  // its own enumerability, so a for-in over an instance lists the same keys as before.
  const seen = own ?? inheritedDescriptor(obj, name);
  Object.defineProperty(obj, name, {
    value: wrapper,
    writable: seen ? (seen.writable ?? true) : true,
    enumerable: seen ? seen.enumerable : false,
    configurable: true,
  });
  return true;
}

export function unwrap(obj: object, name: PropertyKey): void {
  const target = obj as Record<PropertyKey, unknown>;
  const current = target[name] as Marked | undefined;
  if (!current || current[WRAPPED] !== true || !Object.prototype.hasOwnProperty.call(obj, name)) return;
  if (current[WAS_OWN]) {
    const own = Object.getOwnPropertyDescriptor(obj, name)!;
    Object.defineProperty(obj, name, { ...own, value: current[ORIGINAL] });
  } else {
    delete target[name];
  }
}
