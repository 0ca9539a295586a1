import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { permitted, type SanEntry } from '../../src/pki/names.ts';

// Permitted subtrees for the names a profile renders (src/pki/names.ts, RFC 5280 §4.2.1.10). For
// a URI the constraint applies to its host: a sibling host that merely starts with the permitted
// one is outside it, as is a path that merely starts with a permitted path segment.

const uri = (value: string): SanEntry => ({ type: 'uri', value });
const allows = (constraint: string, value: string) => permitted({ uri: [constraint] }, uri(value));

describe('URI name constraints', () => {
  test('refuses a sibling host that starts with the permitted host, and permits the host itself', () => {
    assert.equal(allows('spiffe://broker.example', 'spiffe://broker.example.evil/x'), false);
    assert.equal(allows('spiffe://broker.example', 'spiffe://broker.examplex/x'), false);
    assert.equal(allows('spiffe://broker.example', 'spiffe://broker.example/x'), true);
    assert.equal(allows('spiffe://broker.example', 'spiffe://broker.example'), true);
    assert.equal(allows('spiffe://broker.example/', 'spiffe://broker.example/agent/algo-7'), true);
    assert.equal(allows('spiffe://broker.example/', 'spiffe://broker.example.evil/agent/algo-7'), false);
  });

  test('compares the host, not the text: userinfo, a port or another scheme do not pass for the permitted host', () => {
    assert.equal(allows('spiffe://broker.example', 'spiffe://broker.example@evil.example/x'), false);
    assert.equal(allows('spiffe://broker.example', 'spiffe://broker.example:443/x'), false);
    assert.equal(allows('spiffe://broker.example', 'https://broker.example/x'), false);
    assert.equal(allows('spiffe://broker.example', 'SPIFFE://Broker.Example/x'), true, 'scheme and host are case-insensitive');
  });

  test('a constraint with a path permits whole path segments under it only', () => {
    assert.equal(allows('spiffe://broker.example/agent', 'spiffe://broker.example/agent/algo-7'), true);
    assert.equal(allows('spiffe://broker.example/agent', 'spiffe://broker.example/agent'), true);
    assert.equal(allows('spiffe://broker.example/agent/', 'spiffe://broker.example/agent/algo-7'), true);
    assert.equal(allows('spiffe://broker.example/agent', 'spiffe://broker.example/agents/algo-7'), false);
    assert.equal(allows('spiffe://broker.example/agent/', 'spiffe://broker.example/agent-admin'), false);
    assert.equal(allows('spiffe://broker.example/agent/', 'spiffe://broker.example/agent/../admin'), false, 'no dot segments walk out of the subtree');
    assert.equal(allows('spiffe://broker.example/agent/', 'spiffe://broker.example/agent/x?y=1'), false, 'no query');
  });

  test('a host constraint (RFC 5280 §4.2.1.10) permits that host; one with a leading period, only hosts below it', () => {
    assert.equal(allows('broker.example', 'spiffe://broker.example/x'), true);
    assert.equal(allows('broker.example', 'https://broker.example:8443/x'), true);
    assert.equal(allows('broker.example', 'spiffe://a.broker.example/x'), false);
    assert.equal(allows('broker.example', 'spiffe://broker.example.evil/x'), false);
    assert.equal(allows('.broker.example', 'spiffe://a.broker.example/x'), true);
    assert.equal(allows('.broker.example', 'spiffe://broker.example/x'), false);
    assert.equal(allows('.broker.example', 'spiffe://evilbroker.example/x'), false);
    assert.equal(allows('broker.example', 'urn:example:broker.example'), false, 'a URI without a host is outside every host');
  });

  test('a URN prefix permits whole colon-separated parts under it only', () => {
    assert.equal(allows('urn:example:signer', 'urn:example:signer:ca-bot'), true);
    assert.equal(allows('urn:example:signer:', 'urn:example:signer:ca-bot'), true);
    assert.equal(allows('urn:example:signer', 'urn:example:signers:ca-bot'), false);
    assert.equal(allows('urn:example:signer:', 'urn:example:signer-admin'), false);
  });
});
