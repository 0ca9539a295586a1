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
  const out: string[] = [];
  serialize(value, out, new Set<object>());
  return out.join("");
}

function serialize(value: unknown, out: string[], ancestors: Set<object>): void {
  switch (typeof value) {
    case "boolean":
      out.push(value ? "true" : "false");
      return;
    case "number":
      out.push(serializeNumber(value));
      return;
    case "string":
      out.push(serializeString(value));
      return;
    case "object":
      if (value === null) {
        out.push("null");
        return;
      }
      if (ancestors.has(value)) {
        throw new TypeError("canonicalize: cyclic structure");
      }
      ancestors.add(value);
      if (Array.isArray(value)) {
        serializeArray(value, out, ancestors);
      } else {
        serializeObject(value, out, ancestors);
      }
      ancestors.delete(value);
      return;
    default:
      // undefined, bigint, symbol, function: no I-JSON representation.
      throw new TypeError(`canonicalize: unsupported value of type ${typeof value}`);
  }
}

// RFC 8785 §3.2.2.3: numbers are serialized exactly as ECMAScript's
// Number::toString does (which also maps -0 to "0"); I-JSON has no NaN/Infinity.
function serializeNumber(n: number): string {
  if (!Number.isFinite(n)) {
    throw new TypeError(`canonicalize: non-finite number ${String(n)}`);
  }
  return JSON.stringify(n);
}

// RFC 8785 §3.2.2.2: ECMAScript JSON.stringify string escaping. §3.1 requires
// I-JSON input (RFC 7493 §2.1), so unpaired surrogates are rejected rather than
// emitted as \udXXX escapes that other implementations would not reproduce.
function serializeString(s: string): string {
  if (!s.isWellFormed()) {
    throw new TypeError("canonicalize: string contains an unpaired surrogate");
  }
  return JSON.stringify(s);
}

function serializeArray(arr: readonly unknown[], out: string[], ancestors: Set<object>): void {
  out.push("[");
  for (let i = 0; i < arr.length; i++) {
    if (i > 0) out.push(",");
    const element = arr[i];
    // JSON.stringify would silently turn holes/undefined into null; that
    // changes the data, so refuse instead.
    if (element === undefined) {
      throw new TypeError(`canonicalize: undefined array element at index ${i}`);
    }
    serialize(element, out, ancestors);
  }
  out.push("]");
}

function serializeObject(obj: object, out: string[], ancestors: Set<object>): void {
  const proto: unknown = Object.getPrototypeOf(obj);
  if (proto !== Object.prototype && proto !== null) {
    const name = (obj as { constructor?: { name?: unknown } }).constructor?.name;
    throw new TypeError(`canonicalize: non-plain object${typeof name === "string" ? ` (${name})` : ""}`);
  }
  const record = obj as Record<string, unknown>;
  // RFC 8785 §3.2.3: sort property names by their UTF-16 code units. The
  // default Array.prototype.sort comparison does exactly that.
  const keys = Object.keys(record).sort();
  out.push("{");
  let first = true;
  for (const key of keys) {
    const member = record[key];
    if (member === undefined) continue;
    if (!first) out.push(",");
    first = false;
    out.push(serializeString(key), ":");
    serialize(member, out, ancestors);
  }
  out.push("}");
}
