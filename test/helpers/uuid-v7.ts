import assert from 'node:assert/strict';

/** An RFC 9562 version 7 UUID, in lower case as src/uuid-v7.ts makes them. */
export const uuidV7Pattern = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The Unix millisecond a UUIDv7 carries in its first 48 bits. */
export function millisecondOf(id: string): number {
  return parseInt(id.replace(/-/g, '').slice(0, 12), 16);
}

/** The millisecond `value` was made at, asserting first that it is a UUIDv7 (`what` names it in the failure). */
export function assertUuidV7At(value: unknown, what: string): number {
  assert.match(String(value), uuidV7Pattern, `${what} is a UUIDv7`);
  return millisecondOf(String(value));
}
