import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StoredAuditEvent } from '../../../src/audit/events.ts';
import { securityEventsOf, ssfEventTypes, subjectKeys } from '../../../src/signals/ssf/event-types.ts';

// Which audit events become which security events (docs/signals.md "Event types"), about whom.

const issuer = 'https://clearance.example.com';
const at = 1_800_000_000_000;
const stored = (event: Partial<StoredAuditEvent> & Pick<StoredAuditEvent, 'type'>): StoredAuditEvent => ({ v: 1, id: 'e1', time: at, node: 'n', ...event });
const alice = { format: 'iss_sub', iss: issuer, sub: 'alice' };
const typesOf = (event: StoredAuditEvent) => securityEventsOf(event, issuer).map((e) => e.type);

test('each mapped audit event gives its CAEP, RISC or Clearance event about the right subject, with the event time', () => {
  const cases: [StoredAuditEvent, string[]][] = [
    [stored({ type: 'consent.revoked', actor: 'admin-1', subject: 'alice', client: 'desk', details: { grant_id: 'g1', reason: 'left the firm' } }), [ssfEventTypes.sessionRevoked]],
    [stored({ type: 'user.logged_out', actor: 'alice', subject: 'alice', details: { session: 's1' } }), [ssfEventTypes.sessionRevoked]],
    [stored({ type: 'user.signed_out_everywhere', actor: 'admin-1', subject: 'alice' }), [ssfEventTypes.sessionRevoked]],
    [stored({ type: 'user.password_reset', actor: 'admin-1', subject: 'alice' }), [ssfEventTypes.credentialChange, ssfEventTypes.sessionRevoked]],
    [stored({ type: 'user.factor_enrolled', actor: 'alice', subject: 'alice' }), [ssfEventTypes.credentialChange]],
    [stored({ type: 'passkey.removed', actor: 'alice', subject: 'alice' }), [ssfEventTypes.credentialChange]],
    [stored({ type: 'step_up.completed', actor: 'alice', subject: 'alice', details: { outcome: 'met', acr: 'urn:clearance:acr:phr' } }), [ssfEventTypes.assuranceLevelChange]],
    [stored({ type: 'step_up.completed', actor: 'alice', subject: 'alice', details: { outcome: 'declined' } }), []],
    [stored({ type: 'mandate.amended', actor: 'ops', subject: 'algo-7', client: 'algo-7', mandate: { id: 'm1', v: 2 } }), [ssfEventTypes.tokenClaimsChange]],
    [stored({ type: 'user.disabled', actor: 'admin-1', subject: 'alice' }), [ssfEventTypes.accountDisabled]],
    [stored({ type: 'user.locked', actor: 'admin-1', subject: 'alice', decision: { allow: false, reasons: ['admin'] } }), [ssfEventTypes.accountDisabled]],
    [stored({ type: 'user.locked', actor: 'alice', subject: 'alice', decision: { allow: false, reasons: ['failed_logins'] } }), []],
    [stored({ type: 'user.deleted', actor: 'admin-1', subject: 'alice' }), [ssfEventTypes.accountPurged]],
    [stored({ type: 'passkey.counter_regressed', subject: 'alice' }), [ssfEventTypes.credentialCompromise]],
    [stored({ type: 'mandate.revoked', actor: 'ops', subject: 'algo-7', mandate: { id: 'm1', v: 2 }, details: { reason: 'client instruction' } }), [ssfEventTypes.mandateRevoked]],
    [stored({ type: 'break_glass.activated', txn: 'act-1', actor: 'eng', subject: 'bg-admin' }), [ssfEventTypes.breakGlassActivated]],
    [stored({ type: 'break_glass.expired', txn: 'act-1', subject: 'bg-admin' }), [ssfEventTypes.breakGlassEnded]],
    [stored({ type: 'token.issued', subject: 'alice', client: 'desk' }), []],
    [stored({ type: 'policy.denied', subject: 'alice' }), []],
  ];
  for (const [event, types] of cases) assert.deepEqual(typesOf(event), types, event.type);

  const [revoked] = securityEventsOf(cases[0]![0], issuer);
  assert.deepEqual(revoked!.subject, { format: 'complex', user: alice, session: { format: 'opaque', id: 'g1' } });
  assert.deepEqual(revoked!.payload, { event_timestamp: at / 1000, initiating_entity: 'admin', reason_admin: { en: 'left the firm' } });
  const [claims] = securityEventsOf(cases[8]![0], issuer);
  assert.deepEqual([claims!.subject, claims!.payload.claims], [{ format: 'opaque', id: 'algo-7' }, { mandate: { id: 'm1', v: 2 } }]);
  const [credential] = securityEventsOf(cases[4]![0], issuer);
  assert.deepEqual([credential!.payload.credential_type, credential!.payload.change_type, credential!.payload.initiating_entity], ['app', 'create', 'user']);
  const [activation] = securityEventsOf(cases[15]![0], issuer);
  assert.equal(activation!.txn, 'act-1', 'the txn goes with the SET');
});

test('a subject is matched by itself and, when complex, by each member', () => {
  assert.deepEqual(subjectKeys({ format: 'complex', user: { format: 'iss_sub', iss: issuer, sub: 'alice' }, session: { format: 'opaque', id: 'g1' } }), [`iss_sub ${issuer} alice`, 'opaque g1']);
  assert.deepEqual(subjectKeys({ format: 'email', email: 'Alice@Example.com' }), ['email alice@example.com']);
});

test('a compromised signing key gives Clearance’s signing-key-compromised event about the key: its kid, the key that signs now, where the JWKS is', () => {
  const event = stored({ type: 'key.compromised', actor: 'cli:oncall', subject: 'kid-old', details: { kid: 'kid-old', promoted_kid: 'kid-new', reason: 'leaked', requested_by: 'cli:oncall', refresh_families_revoked: 3 } });
  const [set, ...more] = securityEventsOf(event, issuer);
  assert.deepEqual(more, []);
  assert.equal(set!.type, ssfEventTypes.signingKeyCompromised);
  assert.equal(set!.type, 'https://clearance.dev/secevent/signing-key-compromised');
  assert.deepEqual(set!.subject, { format: 'opaque', id: 'kid-old' });
  // Nothing about who asked or why: a receiver needs the key, not the people.
  assert.deepEqual(set!.payload, { event_timestamp: at / 1000, kid: 'kid-old', promoted_kid: 'kid-new', jwks_uri: `${issuer}/jwks`, initiating_entity: 'admin' });
});

test('a revoked refresh token’s session-revoked names its refresh family, not the grant: the grant’s other families stand', () => {
  // src/endpoints/revoke: revoking a refresh token ends its family only (RFC 7009 §2.1), and says which.
  const event = stored({ type: 'token.revoked', actor: 'desk', subject: 'alice', client: 'desk', details: { refresh_id: 'r1', family_id: 'fam-1', grant_id: 'g1', reason: 'revoked by client' } });
  const [set, ...more] = securityEventsOf(event, issuer);
  assert.deepEqual(more, []);
  assert.equal(set!.type, ssfEventTypes.sessionRevoked);
  assert.deepEqual(set!.subject, { format: 'complex', user: alice, session: { format: 'opaque', id: 'fam-1' } });
  assert.deepEqual(set!.payload, { event_timestamp: at / 1000, initiating_entity: 'user', reason_admin: { en: 'revoked by client' } });

  // A grant's revocation (consent withdrawn) still names the grant; one access token's, its jti.
  const [grant] = securityEventsOf(stored({ type: 'consent.revoked', actor: 'alice', subject: 'alice', details: { grant_id: 'g1' } }), issuer);
  assert.deepEqual(grant!.subject, { format: 'complex', user: alice, session: { format: 'opaque', id: 'g1' } });
  const [token] = securityEventsOf(stored({ type: 'token.revoked', actor: 'desk', subject: 'alice', client: 'desk', details: { jti: 'j1', reason: 'revoked by client' } }), issuer);
  assert.deepEqual(token!.subject, { format: 'complex', user: alice, session: { format: 'opaque', id: 'j1' } });
});
