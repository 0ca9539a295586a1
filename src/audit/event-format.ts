/**
 * The stored form of an audit event: validation of what components record, and its RFC 8785
 * canonical JSON, which is the Merkle leaf (leaf hash = SHA-256(0x00 || bytes), RFC 9162 §2.1.1).
 */
import { hash } from 'node:crypto';
import { sha256 } from './merkle.ts';
import { canonicalize, canonicalizeMembers } from '../jose/canonical-json.ts';
import { auditEventTypes, type AuditEvent, type StoredAuditEvent } from './events.ts';
import { AuditGuardError, assertNoSecrets, maxEventBytes } from './guard.ts';

const knownTypes: ReadonlySet<string> = new Set(auditEventTypes);
const stringFields = ['requestId', 'txn', 'actor', 'subject', 'client', 'issuer', 'audience'] as const;
/** Every member a recorded event may have. */
export const eventFields: readonly string[] = ['type', ...stringFields, 'scopes', 'mandate', 'decision', 'details'];
const storedFields: readonly string[] = [...eventFields, 'v', 'id', 'time', 'node'];
// RFC 8785 §3.2.3: members sorted by UTF-16 code units; the set is fixed, so sort it once.
const canonicalOrder = [...storedFields].sort();

/**
 * Checks what a component records: a catalogued type, only known members of the right types,
 * nothing JSON cannot carry exactly, and no secret or raw token (guard.ts). Throws TypeError or
 * AuditGuardError.
 */
export function validateEvent(event: AuditEvent): void {
  if (typeof event !== 'object' || event === null) throw new TypeError('an audit event must be an object');
  if (!knownTypes.has(event.type)) throw new TypeError(`"${String(event.type)}" is not in the audit event catalogue`);
  for (const key of Object.keys(event)) {
    if (!eventFields.includes(key)) throw new TypeError(`audit events have no member "${key}"`);
  }
  for (const field of stringFields) {
    const value = event[field];
    if (value !== undefined && typeof value !== 'string') throw new TypeError(`audit event ${field} must be a string`);
  }
  if (event.scopes !== undefined && !(Array.isArray(event.scopes) && event.scopes.every((s) => typeof s === 'string'))) {
    throw new TypeError('audit event scopes must be an array of strings');
  }
  const { mandate, decision, details } = event;
  if (mandate !== undefined && !(isPlain(mandate) && typeof mandate.id === 'string' && Number.isSafeInteger(mandate.v))) {
    throw new TypeError('audit event mandate must be { id: string, v: integer }');
  }
  if (
    decision !== undefined &&
    !(
      isPlain(decision) &&
      typeof decision.allow === 'boolean' &&
      Array.isArray(decision.reasons) &&
      decision.reasons.every((r) => typeof r === 'string') &&
      (decision.policyVersion === undefined || typeof decision.policyVersion === 'string')
    )
  ) {
    throw new TypeError('audit event decision must be { allow: boolean, reasons: string[], policyVersion?: string }');
  }
  if (details !== undefined && !isPlain(details)) throw new TypeError('audit event details must be a plain object');
  assertNoSecrets(event);
}

/**
 * RFC 8785 canonical JSON of a stored event (validated by validateEvent). Equal to
 * `canonicalize(stored)`, which the tests check, but without sorting the fixed top-level members
 * on every call: this runs once per recorded event.
 */
export function serializeStoredEvent(stored: StoredAuditEvent): string {
  const text = canonicalizeMembers(stored as unknown as Record<string, unknown>, canonicalOrder);
  const bytes = Buffer.byteLength(text);
  if (bytes > maxEventBytes) throw new AuditGuardError(`audit event of ${bytes} bytes exceeds ${maxEventBytes}`);
  return text;
}

/**
 * RFC 9162 §2.1.1 leaf hash of a stored event: SHA-256(0x00 || UTF-8 of its canonical JSON).
 * Equal to `leafHash(Buffer.from(text))`, in one call (verification hashes every leaf).
 */
export function eventLeafHash(text: string): Buffer {
  return sha256('\u0000' + text);
}

/** `eventLeafHash` as lowercase hex (verification compares it with the stored hash read as hex). */
export function eventLeafHashHex(text: string): string {
  return hash('sha256', '\u0000' + text, 'hex');
}

// Reused input for eventBytesLeafHash: hash() reads it synchronously, so sharing it is safe.
let leafInput = Buffer.alloc(1 + maxEventBytes);

/**
 * The same leaf hash from the event's stored UTF-8 bytes (as SQLite returns `cast(event as blob)`):
 * no decoding to a string and encoding back, and the hash covers exactly the bytes stored.
 */
export function eventBytesLeafHash(bytes: Uint8Array): Buffer {
  // A stored event over the size limit was never recorded as it is, but it is still hashed.
  if (bytes.length >= leafInput.length) leafInput = Buffer.alloc(bytes.length + 1);
  leafInput[0] = 0;
  leafInput.set(bytes, 1);
  return sha256(leafInput.subarray(0, bytes.length + 1));
}

/**
 * Parses stored event text back to the event, checking it is canonical (RFC 8785) and well formed.
 * Throws TypeError with the reason otherwise.
 */
export function parseStoredEvent(text: string): StoredAuditEvent {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new TypeError('the event is not JSON');
  }
  if (!isPlain(value)) throw new TypeError('the event is not a JSON object');
  const { v, id, time, node, ...recorded } = value as Record<string, unknown>;
  if (v !== 1 || typeof id !== 'string' || typeof node !== 'string' || !Number.isSafeInteger(time)) {
    throw new TypeError('the event lacks v, id, time or node');
  }
  validateEvent(recorded as unknown as AuditEvent);
  if (canonicalize(value) !== text) throw new TypeError('the event is not in RFC 8785 canonical form');
  return value as unknown as StoredAuditEvent;
}

function isPlain(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
