import assert from 'node:assert/strict';
import { test } from 'node:test';
import { upstreamSessionId } from '../../../src/federation/upstream/session-id.ts';

// One rule for an upstream's session id, at sign-in and at logout, OIDC and SAML alike.

test('an upstream session id is kept as given up to 255 characters, cut there beyond, and an empty or non-string one is none', () => {
  assert.equal(upstreamSessionId('fund-session-7'), 'fund-session-7');
  const long = 's'.repeat(300);
  assert.equal(upstreamSessionId(long), long.slice(0, 255));
  assert.equal(upstreamSessionId(long.slice(0, 255)), upstreamSessionId(long), 'a long id matches what its session kept');
  for (const none of ['', undefined, null, 42, ['a'], { sid: 'a' }]) assert.equal(upstreamSessionId(none), undefined, JSON.stringify(none));
});
