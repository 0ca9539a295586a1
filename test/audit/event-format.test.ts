import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalize } from '../../src/jose/canonical-json.ts';
import { eventLeafHash, parseStoredEvent, serializeStoredEvent, validateEvent } from '../../src/audit/event-format.ts';
import { leafHash } from '../../src/audit/merkle.ts';
import type { AuditEvent, StoredAuditEvent } from '../../src/audit/events.ts';
import { AuditGuardError } from '../../src/audit/guard.ts';
import { sampleEvent } from './helpers.ts';

const stored = (event: AuditEvent, i = 0): StoredAuditEvent => ({ ...event, v: 1, id: `id-${i}`, time: 1_767_225_600_000 + i, node: 'host:1' });

test('serializes stored events exactly as RFC 8785 canonicalize does', () => {
  const events: AuditEvent[] = [
    { type: 'token.issued' },
    { type: 'policy.denied', decision: { allow: false, reasons: ['é', '\u2028', 'quote"'], policyVersion: '3' }, details: { z: 1, a: [1.5, -0, 1e21], 'ü': null } },
    { type: 'token.revoked', mandate: { id: 'm-1', v: 2 }, scopes: [], audience: 'https://x', details: { nested: { b: true, a: 'x' } } },
  ];
  for (let i = 0; i < 200; i++) events.push(sampleEvent(i));
  for (const [i, event] of events.entries()) {
    const value = stored(event, i);
    assert.equal(serializeStoredEvent(value), canonicalize(value));
  }
});

test('hashes the UTF-8 bytes of the event text as an RFC 9162 leaf', () => {
  for (const text of ['{}', serializeStoredEvent(stored(sampleEvent(5))), '{"s":"é \u2028 😀"}']) {
    assert.deepEqual(eventLeafHash(text), leafHash(Buffer.from(text, 'utf8')));
  }
});

test('parses its own output back and refuses non-canonical text', () => {
  const text = serializeStoredEvent(stored(sampleEvent(3)));
  assert.deepEqual(parseStoredEvent(text), JSON.parse(text));
  assert.throws(() => parseStoredEvent(text.replace('{', '{ ')), /canonical/);
  assert.throws(() => parseStoredEvent(JSON.stringify({ ...JSON.parse(text), v: 2 })), /lacks/);
});

test('rejects events of unknown types, with unknown members, or with mistyped fields', () => {
  const bad: unknown[] = [
    { type: 'token.minted' },
    { type: 'token.issued', color: 'red' },
    { type: 'token.issued', subject: 42 },
    { type: 'token.issued', scopes: 'order:create' },
    { type: 'token.issued', mandate: { id: 'm', v: '1' } },
    { type: 'policy.denied', decision: { allow: 'no', reasons: [] } },
    { type: 'token.issued', details: new Map() },
  ];
  for (const event of bad) assert.throws(() => validateEvent(event as AuditEvent), TypeError, JSON.stringify(event));
});

test('rejects an event larger than 16 KiB', () => {
  assert.throws(() => serializeStoredEvent(stored({ type: 'token.issued', details: { blob: 'x'.repeat(17_000) } })), AuditGuardError);
});

test('serializes an event whose details have index-like or __proto__ member names exactly as canonicalize does', () => {
  const value = stored({ type: 'token.issued', client: 'c', details: JSON.parse('{"10":1,"9":2,"__proto__":{"b":1,"a":2},"jti":"j"}') });
  assert.equal(serializeStoredEvent(value), canonicalize(value));
  assert.match(serializeStoredEvent(value), /"details":\{"10":1,"9":2,"__proto__":\{"a":2,"b":1\},"jti":"j"\}/);
});

test('serializes a stored event unchanged while a toJSON sits on Object.prototype', () => {
  const value = stored({ type: 'token.issued', client: 'c', scopes: ['a'], details: { jti: 'j' } });
  const expected = serializeStoredEvent(value);
  Object.defineProperty(Object.prototype, 'toJSON', { value: () => 'polluted', configurable: true, writable: true });
  try {
    assert.equal(serializeStoredEvent(value), expected);
  } finally {
    delete (Object.prototype as { toJSON?: unknown }).toJSON;
  }
});
