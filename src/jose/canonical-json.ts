/**
 * RFC 8785 JSON Canonicalization Scheme (JCS).
 *
 * The audit log hashes and signs canonical bytes, so this serializer is
 * deliberately stricter than JSON.stringify: anything that could serialize
 * ambiguously or lossily (class instances, toJSON hooks, lone surrogates,
 * non-finite numbers, cycles) is rejected instead of coerced.
 */

/**
 * Serializes `value` to its RFC 8785 canonical JSON text.
 *
 * Accepted input: `null`, booleans, finite numbers, strings of well-formed
 * UTF-16, arrays, and plain objects (prototype `Object.prototype` or `null`).
 * Object members whose value is `undefined` are omitted, as JSON.stringify
 * does; symbol-keyed members are ignored.
 *
 * @throws TypeError for NaN/±Infinity, bigint, symbols, functions,
 *   `undefined` at top level or as an array element, non-plain objects
 *   (Date, Map, class instances, boxed primitives…), strings containing
 *   unpaired surrogates, and cyclic structures.
 */
export function canonicalize(value: unknown): string {
  if (toJsonHooked()) return serialize(value, []);
  let copy: unknown;
  try {
    copy = canonicalCopy(value, []);
  } catch (error) {
    if (error !== keyOutOfOrder) throw error;
    return serialize(value, []);
  }
  return JSON.stringify(copy);
}

/**
 * True when a `toJSON` was put on the prototypes of the copies' objects and arrays (prototype
 * pollution): JSON.stringify would call it on the copy. The member-by-member path hands
 * JSON.stringify nothing but strings, numbers, booleans and null, which it serializes without
 * asking for `toJSON`.
 */
function toJsonHooked(): boolean {
  return Object.hasOwn(Object.prototype, "toJSON") || Object.hasOwn(Array.prototype, "toJSON");
}

/**
 * `canonicalize` of the members of `record` named in `sortedNames` (any others are left out): the
 * caller's fixed schema, its names given in RFC 8785 order, none an array index or "__proto__".
 * Skips listing and sorting the names on every call.
 */
export function canonicalizeMembers(record: Record<string, unknown>, sortedNames: readonly string[]): string {
  if (toJsonHooked()) return serialize(named(record, sortedNames), []);
  const ancestors: object[] = [record];
  const copy: Record<string, unknown> = {};
  try {
    for (const name of sortedNames) {
      const member = record[name];
      if (member !== undefined) copy[name] = canonicalCopy(member, ancestors);
    }
  } catch (error) {
    if (error !== keyOutOfOrder) throw error;
    return serialize(named(record, sortedNames), []);
  }
  return JSON.stringify(copy);
}

function named(record: Record<string, unknown>, names: readonly string[]): Record<string, unknown> {
  const members: Record<string, unknown> = {};
  for (const name of names) members[name] = record[name];
  return members;
}

/**
 * Thrown by `canonicalCopy` for a member name that a JavaScript object would not keep in the
 * order it was added: an array index ("0", "17"), which objects list first in numeric order, or
 * "__proto__", which sets the prototype. Such values are serialized member by member instead.
 */
const keyOutOfOrder = Symbol("key out of order");
const arrayIndexLike = /^(?:0|[1-9][0-9]*)$/;

/**
 * A copy of `value` whose objects list their members in RFC 8785 order, so that one
 * JSON.stringify call writes the canonical text: JSON.stringify escapes strings and writes
 * numbers exactly as RFC 8785 §3.2.2 says (§3.2.2.2 strings, §3.2.2.3 numbers: ECMAScript's
 * Number::toString, -0 as "0"), and lists an object's (non-index) members in the order they were
 * added. About twice as fast as serializing piece by piece: one call into the engine instead of
 * one per string.
 */
function canonicalCopy(value: unknown, ancestors: object[]): unknown {
  switch (typeof value) {
    case "boolean":
      return value;
    case "number":
      // I-JSON has no NaN or Infinity.
      if (!Number.isFinite(value)) throw new TypeError(`canonicalize: non-finite number ${String(value)}`);
      return value;
    case "string":
      return wellFormed(value);
    case "object": {
      if (value === null) return null;
      enter(value, ancestors);
      let copy: unknown[] | Record<string, unknown>;
      if (Array.isArray(value)) {
        copy = new Array<unknown>(value.length);
        for (let i = 0; i < value.length; i++) copy[i] = canonicalCopy(elementAt(value, i), ancestors);
      } else {
        copy = {};
        for (const name of memberNames(value)) {
          const member = (value as Record<string, unknown>)[name];
          if (member === undefined) continue;
          if (!orderedNames.has(name)) checkName(name);
          copy[name] = canonicalCopy(member, ancestors);
        }
      }
      ancestors.pop();
      return copy;
    }
    default:
      // undefined, bigint, symbol, function: no I-JSON representation.
      throw new TypeError(`canonicalize: unsupported value of type ${typeof value}`);
  }
}

/**
 * Member names already found well-formed and kept in the order they are added: names come from
 * code and repeat in every event, so most are checked once. Bounded in number and length, as a
 * name can come from input.
 */
const orderedNames = new Set<string>();

/** Throws for a name `canonicalCopy` cannot use (see `keyOutOfOrder`, `wellFormed`). */
function checkName(name: string): void {
  if (name === "__proto__" || arrayIndexLike.test(name)) throw keyOutOfOrder;
  wellFormed(name);
  if (orderedNames.size < 4096 && name.length <= 64) orderedNames.add(name);
}

/** The member-by-member serializer, for values with member names `canonicalCopy` cannot order. */
function serialize(value: unknown, ancestors: object[]): string {
  if (typeof value !== "object" || value === null) return JSON.stringify(canonicalCopy(value, ancestors));
  enter(value, ancestors);
  let text: string;
  if (Array.isArray(value)) {
    text = "[";
    for (let i = 0; i < value.length; i++) text += (i > 0 ? "," : "") + serialize(elementAt(value, i), ancestors);
    text += "]";
  } else {
    text = "{";
    for (const name of memberNames(value)) {
      const member = (value as Record<string, unknown>)[name];
      if (member === undefined) continue;
      text += (text.length > 1 ? "," : "") + JSON.stringify(wellFormed(name)) + ":" + serialize(member, ancestors);
    }
    text += "}";
  }
  ancestors.pop();
  return text;
}

// RFC 8785 §3.1 requires I-JSON input (RFC 7493 §2.1): unpaired surrogates are rejected rather
// than emitted as \udXXX escapes that other implementations would not reproduce.
function wellFormed(s: string): string {
  if (!s.isWellFormed()) throw new TypeError("canonicalize: string contains an unpaired surrogate");
  return s;
}

/** Marks `value` open (an array or object being serialized): meeting it again inside itself is a cycle. */
function enter(value: object, ancestors: object[]): void {
  // The open arrays and objects from the root down: short, so a scan beats building a Set.
  if (ancestors.includes(value)) throw new TypeError("canonicalize: cyclic structure");
  ancestors.push(value);
}

function elementAt(array: readonly unknown[], i: number): unknown {
  const element = array[i];
  // JSON.stringify would silently turn holes/undefined into null; that changes the data, so refuse instead.
  if (element === undefined) throw new TypeError(`canonicalize: undefined array element at index ${i}`);
  return element;
}

/**
 * The names of a plain object's members in RFC 8785 §3.2.3 order (by UTF-16 code units, which the
 * default Array.prototype.sort compares). Members whose value is undefined are left out by the
 * callers, as JSON.stringify leaves them out.
 */
function memberNames(obj: object): string[] {
  const proto: unknown = Object.getPrototypeOf(obj);
  if (proto !== Object.prototype && proto !== null) {
    const name = (obj as { constructor?: { name?: unknown } }).constructor?.name;
    throw new TypeError(`canonicalize: non-plain object${typeof name === "string" ? ` (${name})` : ""}`);
  }
  const names = Object.keys(obj);
  if (names.length > 16) return names.sort();
  // An insertion sort (`>` compares strings by UTF-16 code units too): for the few members most
  // objects have it costs a fraction of Array.prototype.sort, and one pass when they are in order.
  for (let i = 1; i < names.length; i++) {
    const name = names[i]!;
    let j = i - 1;
    for (; j >= 0 && names[j]! > name; j--) names[j + 1] = names[j]!;
    names[j + 1] = name;
  }
  return names;
}
