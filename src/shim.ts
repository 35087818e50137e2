/**
 * Marker-based wrapping: idempotent (a wrapped function is never wrapped again) and reversible
 * (the original is kept on the wrapper). The wrapper keeps the original's name and length.
 */
const WRAPPED = Symbol.for('hatch-agent.wrapped');
const ORIGINAL = Symbol.for('hatch-agent.original');
const WAS_OWN = Symbol.for('hatch-agent.wasOwn');

type AnyFn = (...args: any[]) => any;
type Marked = AnyFn & { [WRAPPED]?: true; [ORIGINAL]?: AnyFn; [WAS_OWN]?: boolean };

export function isWrapped(fn: unknown): boolean {
  return typeof fn === 'function' && (fn as Marked)[WRAPPED] === true;
}

/** Replaces obj[name] with makeWrapper(original). Returns false when there is nothing to wrap. */
export function wrap(obj: object, name: PropertyKey, makeWrapper: (original: AnyFn) => AnyFn): boolean {
  const target = obj as Record<PropertyKey, unknown>;
  const original = target[name];
  if (typeof original !== 'function') return false;
  if (isWrapped(original)) return false;
  const wrapper = makeWrapper(original as AnyFn) as Marked;
  for (const prop of ['name', 'length'] as const) {
    Object.defineProperty(wrapper, prop, { value: (original as AnyFn)[prop], configurable: true });
  }
  const own = Object.getOwnPropertyDescriptor(obj, name);
  // Non-enumerable, so util.inspect of an app object that holds the wrapper prints as before.
  Object.defineProperty(wrapper, WRAPPED, { value: true, configurable: true });
  Object.defineProperty(wrapper, ORIGINAL, { value: original, configurable: true });
  Object.defineProperty(wrapper, WAS_OWN, { value: own !== undefined, configurable: true });
  Object.defineProperty(obj, name, {
    value: wrapper,
    writable: own ? own.writable ?? true : true,
    enumerable: own ? own.enumerable : false,
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
