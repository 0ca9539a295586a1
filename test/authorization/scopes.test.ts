import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeOidcScope } from '../../src/authorization/scopes.ts';

// The consent lines of the OpenID Connect scopes say what the person grants, and no more.

test('offline_access promises access after sign-out only until it is revoked or the person’s access is ended everywhere', () => {
  // An upstream's logout and an administrator's "sign out everywhere" end it too
  // (docs/identity-brokering.md): "until you revoke it" alone would promise more than Clearance keeps.
  assert.equal(describeOidcScope('offline_access', 'Trading Desk'), 'Let Trading Desk keep this access after you sign out, until you revoke it or your access is ended everywhere (offline_access)');
  assert.equal(describeOidcScope('openid', 'Trading Desk'), 'Tell Trading Desk who you are (your user identifier) and when you signed in');
});
