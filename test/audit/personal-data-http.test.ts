import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { verifyBundle } from '../../src/audit/bundle.ts';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { sealNow } from '../../src/audit/lifecycle.ts';
import type { PersonalView } from '../../src/audit/personal-data.ts';
import { acr } from '../../src/identity/acr.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { mintAccessToken, newJti } from '../../src/tokens/access-token.ts';
import type { AccessTokenClaims } from '../../src/tokens/claims.ts';
import { codeFlowFixture, webRedirect, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError, decodeJwt } from '../endpoints/fixture.ts';

// Issue 24 item 4 over HTTP: the audit API decrypts personal fields only for readers whose role
// needs them (compliance, auditor), when they ask, for their own firm's events only ("a firm's
// auditor reads its own firm's events only"), and records that read; others see the events as
// stored. An erasure is a firm's compliance's, for its own people. After erase-subject, no one sees
// the person (docs/privacy.md).

const firmA = '5493001KJTIIGC8Y1R12';
const firmB = '254900EXAMPLEUS0AA64';
const addressA = '198.51.100.7';
const addressB = '203.0.113.44';

type Harness = CodeFlowFixture & { traderA: string; traderB: string };

async function harness(t: TestContext): Promise<Harness> {
  const f = await codeFlowFixture(t, { risk: 'off' });
  // Known to the fixture first (its sign-in makes the account), then given roles and desks by apply.
  for (const username of ['comp-a', 'comp-b', 'comp-adm', 'aud', 'aud-none', 'dpo', 'adm']) await f.signIn(username);
  await f.apply({
    regions: [{ id: 'uk' }, { id: 'us' }],
    legal_entities: [
      { lei: firmA, name: 'Firm A', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'a-compliance' }, { id: 'a-audit' }, { id: 'a-desk' }] },
      { lei: firmB, name: 'Firm B', jurisdiction: 'US', home_region: 'us', roles: ['broker'], desks: [{ id: 'b-compliance' }, { id: 'b-desk' }] },
    ],
    clients: [
      { client_id: 'audit-app', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [webRedirect], scope: 'audit:read audit:hold' },
      { client_id: 'log-shipper', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'audit:read' },
    ],
    users: [
      { username: 'comp-a', name: 'Compliance A', roles: ['compliance'], desks: ['a-compliance'] },
      { username: 'comp-b', name: 'Compliance B', roles: ['compliance'], desks: ['b-compliance'] },
      // Compliance of firm A who also administers the platform: reads the whole log, reveals firm A's only.
      { username: 'comp-adm', name: 'Compliance and Admin A', roles: ['compliance', 'admin'], desks: ['a-compliance'] },
      { username: 'aud', name: 'Auditor A', roles: ['auditor'], desks: ['a-audit'] },
      { username: 'aud-none', name: 'Auditor of no firm', roles: ['auditor'] },
      // The platform's data protection officer: compliance, reading the whole log, of no firm.
      { username: 'dpo', name: 'Platform DPO', roles: ['compliance', 'auditor'] },
      { username: 'adm', name: 'Platform Admin', roles: ['admin'] },
      { username: 'trader-a', name: 'Trader A', desks: ['a-desk'] },
      { username: 'trader-b', name: 'Trader B', desks: ['b-desk'] },
    ],
  });
  const id = async (username: string) => (await f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirstOrThrow()).id;
  const traderA = await id('trader-a');
  const traderB = await id('trader-b');
  // Their sign-ins, as the login path records them (the recorder seals the address).
  await f.ctx.audit.record({ type: 'user.login_succeeded', subject: traderA, client: 'trading-ui', details: { factor: 'password', source_address: addressA } });
  await f.ctx.audit.record({ type: 'user.login_succeeded', subject: traderB, client: 'trading-ui', details: { factor: 'password', source_address: addressB } });
  await sealNow(f.ctx, resolveMasterKey(f.ctx.config).key);
  return Object.assign(f, { traderA, traderB });
}

/** A person's own token for the admin audience, through the audit app's code flow (signed in with a passkey unless told). */
async function personToken(f: CodeFlowFixture, username: string, scope = 'audit:read', level: string = acr.phishingResistant): Promise<string> {
  const person = await f.signIn(username, level === acr.phishingResistant ? { acr: level, amr: ['hwk', 'user'] } : { acr: level, amr: ['pwd'] });
  const { code, pkce } = await f.authorizeAndApprove({ client: 'audit-app', person, query: { scope, resource: adminAudience(f.issuer) } });
  const redeemed = await f.redeem('audit-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  return redeemed.json().access_token as string;
}

const get = (f: CodeFlowFixture, url: string, token: string) => f.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
type Listed = { events: { event: StoredAuditEvent; personal?: PersonalView }[] };
const logins = (f: CodeFlowFixture, token: string, reveal = false) => get(f, `/admin/audit/events?type=user.login_succeeded${reveal ? '&reveal=personal' : ''}`, token);

describe('personal fields through the audit API', () => {
  test("an auditor of firm A reads the whole log, and who asks sees firm A's people's addresses only; the read is recorded as revealing whose", async (t) => {
    const f = await harness(t);
    const token = await personToken(f, 'aud');
    const plain = await logins(f, token);
    assert.equal(plain.statusCode, 200, plain.body);
    assert.ok(!plain.body.includes(addressA) && !plain.body.includes(addressB), 'not asked: not revealed');
    assert.deepEqual((plain.json() as Listed).events.map((e) => e.personal), [{ status: 'withheld', fields: ['source_address'] }, { status: 'withheld', fields: ['source_address'] }]);

    const revealed = await logins(f, token, true);
    assert.equal(revealed.statusCode, 200, revealed.body);
    const events = (revealed.json() as Listed).events;
    assert.deepEqual(events.map((e) => e.personal), [
      { status: 'revealed', subject: f.traderA, fields: { source_address: addressA } },
      { status: 'withheld', fields: ['source_address'], reason: 'outside_scope' },
    ]);
    assert.ok(!revealed.body.includes(addressB), "firm B's person's address is not revealed to firm A's auditor");
    assert.ok(events.every((e) => e.event.details!.source_address === undefined), 'the event itself stays as stored (its proof covers that)');
    const read = (await f.auditEvents('audit.read')).at(-1)!;
    assert.equal(read.details!.personal_data_revealed, true);
    assert.equal(read.details!.revealed_events, 1);
    assert.deepEqual(read.details!.revealed_subjects, [f.traderA]);
    assert.equal((await f.auditEvents('audit.read')).at(-2)!.details!.personal_data_revealed, undefined, 'the read that revealed nothing says nothing of it');

    // One event at a time, likewise: its proof, with firm B's person's fields withheld.
    const proof = await get(f, `/admin/audit/events/${events[1]!.event.id}/proof?reveal=personal`, token);
    assert.equal(proof.statusCode, 200, proof.body);
    assert.deepEqual(proof.json().personal, { status: 'withheld', fields: ['source_address'], reason: 'outside_scope' });
    assert.ok(!proof.body.includes(addressB));
  });

  test('an auditor whose desks name no legal entity reads the whole log as stored, and is refused when asking to reveal', async (t) => {
    const f = await harness(t);
    const token = await personToken(f, 'aud-none');
    const plain = await logins(f, token);
    assert.equal(plain.statusCode, 200, plain.body);
    assert.equal((plain.json() as Listed).events.length, 2);
    const refused = assertOAuthError(await logins(f, token, true), 403, 'access_denied');
    assert.match(String(refused.error_description), /no desk of any legal entity/);
    assert.ok(!JSON.stringify(refused).includes(addressA));
    const id = (plain.json() as Listed).events[0]!.event.id;
    assertOAuthError(await get(f, `/admin/audit/events/${id}/proof?reveal=personal`, token), 403, 'access_denied');
    assertOAuthError(await get(f, `/admin/audit/bundle?subject=${f.traderA}&reveal=personal`, token), 403, 'access_denied');
  });

  test("a compliance officer who also reads the whole log reveals firm A's people's addresses and gets firm B's withheld", async (t) => {
    const f = await harness(t);
    const token = await personToken(f, 'comp-adm');
    const revealed = await logins(f, token, true);
    assert.equal(revealed.statusCode, 200, revealed.body);
    assert.deepEqual((revealed.json() as Listed).events.map((e) => e.personal), [
      { status: 'revealed', subject: f.traderA, fields: { source_address: addressA } },
      { status: 'withheld', fields: ['source_address'], reason: 'outside_scope' },
    ]);
    assert.ok(!revealed.body.includes(addressB));
  });

  test("a compliance officer reveals the personal fields of her own firm's people only", async (t) => {
    const f = await harness(t);
    const token = await personToken(f, 'comp-a');
    const revealed = await logins(f, token, true);
    assert.equal(revealed.statusCode, 200, revealed.body);
    assert.deepEqual((revealed.json() as Listed).events.map((e) => e.personal), [{ status: 'revealed', subject: f.traderA, fields: { source_address: addressA } }]);
    assert.ok(!revealed.body.includes(addressB) && !revealed.body.includes(f.traderB), "another firm's person is not even listed");
  });

  test('an administrator and a log shipper see the events as stored, and are refused when they ask to reveal', async (t) => {
    const f = await harness(t);
    const admin = await personToken(f, 'adm');
    const shipper = await f.accessToken('log-shipper', { resource: adminAudience(f.issuer), scope: 'audit:read' });
    for (const token of [admin, shipper]) {
      const plain = await logins(f, token);
      assert.equal(plain.statusCode, 200, plain.body);
      assert.ok(!plain.body.includes(addressA) && !plain.body.includes(addressB));
      assert.ok((plain.json() as Listed).events.every((e) => typeof (e.event.details!.personal as { ct?: string }).ct === 'string'), 'the ciphertext, as hashed');
      const refused = assertOAuthError(await logins(f, token, true), 403, 'access_denied');
      assert.match(String(refused.error_description), /does not read personal data/);
      const id = (plain.json() as Listed).events[0]!.event.id;
      assertOAuthError(await get(f, `/admin/audit/events/${id}/proof?reveal=personal`, token), 403, 'access_denied');
      assertOAuthError(await get(f, `/admin/audit/bundle?subject=${f.traderA}&reveal=personal`, token), 403, 'access_denied');
    }
  });

  test('a bundle carries the ciphertext by default, and the revealed fields beside it only for an allowed reader who asks; both verify', async (t) => {
    const f = await harness(t);
    const token = await personToken(f, 'aud');
    const plain = await get(f, `/admin/audit/bundle?subject=${f.traderA}`, token);
    assert.equal(plain.statusCode, 200, plain.body);
    assert.ok(!plain.body.includes(addressA));
    assert.equal(JSON.parse(plain.body).personal, undefined);
    assert.equal(verifyBundle(plain.body).ok, true);

    const revealed = await get(f, `/admin/audit/bundle?subject=${f.traderA}&reveal=personal`, token);
    assert.equal(revealed.statusCode, 200, revealed.body);
    const bundle = JSON.parse(revealed.body) as { events: { event: StoredAuditEvent }[]; personal: Record<string, Record<string, unknown>> };
    const login = bundle.events.find((e) => e.event.type === 'user.login_succeeded')!;
    assert.deepEqual(bundle.personal, { [login.event.id]: { source_address: addressA } });
    assert.deepEqual(verifyBundle(revealed.body).problems, []);
    const exported = (await f.auditEvents('audit.exported')).at(-1)!;
    assert.equal(exported.details!.personal_data_revealed, true);

    const other = await get(f, `/admin/audit/bundle?subject=${f.traderB}&reveal=personal`, token);
    assert.equal(other.statusCode, 200, other.body);
    assert.ok(!other.body.includes(addressB), "firm B's person's address is not in firm A's auditor's bundle");
    assert.deepEqual(verifyBundle(other.body).problems, []);
    assert.equal((await f.auditEvents('audit.exported')).at(-1)!.details!.personal_data_revealed, undefined);
  });

  test("after erase-subject (through the admin API: a firm's own people only, refused under a legal hold), reading shows the fields as erased and the proof still verifies", async (t) => {
    const f = await harness(t);
    const compliance = await personToken(f, 'comp-a', 'audit:read audit:hold');
    const complianceB = await personToken(f, 'comp-b', 'audit:read audit:hold');
    const erase = (token: string, subject = f.traderA) =>
      f.inject({ method: 'POST', url: `/admin/audit/subjects/${encodeURIComponent(subject)}/erase`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify({ reason: 'Art. 17 request' }) });
    const liveKeys = async (subject: string) => (await f.ctx.storage.db.selectFrom('audit_subject_keys').select('sealed_key').where('subject', '=', subject).execute()).filter((k) => k.sealed_key !== null).length;

    // Firm A's compliance cannot erase firm B's person: refused, recorded, nothing destroyed.
    const outside = assertOAuthError(await erase(compliance, f.traderB), 403, 'access_denied');
    assert.match(String(outside.error_description), /your legal entities' people only/);
    assert.equal(await liveKeys(f.traderB), 1, 'nothing erased');
    const refusal = (await f.auditEvents('audit.erasure_refused')).at(-1)!;
    assert.equal(refusal.subject, f.traderB);
    assert.deepEqual(refusal.details, { subject_id: f.traderB, reason: 'outside_scope' });

    const hold = await f.inject({ method: 'POST', url: '/admin/audit/holds', headers: { authorization: `Bearer ${complianceB}`, 'content-type': 'application/json' }, payload: JSON.stringify({ subject: f.traderB, matter_ref: 'CASE-B' }) });
    assert.equal(hold.statusCode, 201, hold.body);
    const held = assertOAuthError(await erase(complianceB, f.traderB), 409, 'invalid_request');
    assert.match(String(held.error_description), /CASE-B/);
    assert.equal((await f.auditEvents('audit.erasure_refused')).at(-1)!.details!.reason, 'legal_hold');
    assertOAuthError(await erase(await personToken(f, 'adm', 'audit:read audit:hold')), 403, 'access_denied');
    assert.equal((await f.auditEvents('audit.erasure_refused')).at(-1)!.details!.reason, 'not_compliance');

    const erased = await erase(compliance);
    assert.equal(erased.statusCode, 200, erased.body);
    assert.equal(erased.json().events, 1);
    assert.deepEqual((await f.auditEvents('audit.subject_erased')).map((e) => e.details), [{ subject_id: f.traderA, generations: [1], events: 1 }]);
    assertOAuthError(await erase(compliance), 400, 'invalid_request');
    // An id of no firm (unknown here) is not firm A's compliance's to erase, nor even to ask about.
    assertOAuthError(await erase(compliance, 'nobody-at-all'), 403, 'access_denied');
    assertOAuthError(await erase(await personToken(f, 'dpo', 'audit:read audit:hold'), 'nobody-at-all'), 404, 'not_found');

    const auditor = await personToken(f, 'aud');
    const after = await logins(f, auditor, true);
    assert.equal(after.statusCode, 200, after.body);
    assert.ok(!after.body.includes(addressA), 'the person is no longer revealed, even to a reader allowed to');
    const [a] = (after.json() as Listed).events;
    assert.equal(a!.personal!.status, 'erased');
    const [b] = ((await logins(f, await personToken(f, 'comp-b'), true)).json() as Listed).events;
    assert.deepEqual(b!.personal, { status: 'revealed', subject: f.traderB, fields: { source_address: addressB } }, 'the held person is untouched (read by their own firm)');

    const proof = await get(f, `/admin/audit/events/${a!.event.id}/proof?reveal=personal`, auditor);
    assert.equal(proof.statusCode, 200, proof.body);
    assert.equal(proof.json().personal.status, 'erased');
    assert.ok(!proof.body.includes(addressA));
    await sealNow(f.ctx, resolveMasterKey(f.ctx.config).key);
    const bundle = await get(f, `/admin/audit/bundle?subject=${f.traderA}&reveal=personal`, auditor);
    assert.equal(bundle.statusCode, 200, bundle.body);
    assert.ok(!bundle.body.includes(addressA));
    assert.deepEqual(verifyBundle(bundle.body).problems, [], "the erased person's evidence still verifies");
  });

  test("an erasure needs the compliance person's passkey sign-in of the last 5 minutes: a password sign-in, or a token standing on an older one (as the console renews it), is answered 401 insufficient_user_authentication with acr_values and max_age (RFC 9470 §3), recorded, nothing erased", async (t) => {
    const f = await harness(t);
    const erase = (token: string) =>
      f.inject({ method: 'POST', url: `/admin/audit/subjects/${encodeURIComponent(f.traderA)}/erase`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify({ reason: 'Art. 17 request' }) });
    const liveKeys = async () => (await f.ctx.storage.db.selectFrom('audit_subject_keys').select('sealed_key').where('subject', '=', f.traderA).execute()).filter((k) => k.sealed_key !== null).length;
    const { payload } = decodeJwt(await personToken(f, 'comp-a', 'audit:read audit:hold'));
    /** comp-a's token minted now over a sign-in `seconds` old. */
    const signedInAgo = (seconds: number) => mintAccessToken(f.ctx.keys, { ...(payload as unknown as AccessTokenClaims), jti: newJti(), auth_time: Math.floor(f.clock.now() / 1000) - seconds });

    const stale = await erase(await signedInAgo(301));
    const staleBody = assertOAuthError(stale, 401, 'insufficient_user_authentication');
    assert.deepEqual([staleBody.acr_values, staleBody.max_age], [acr.phishingResistant, 300]);
    assert.match(String(staleBody.error_description), /last 5 minutes/);
    assert.match(String(stale.headers['www-authenticate']), /^Bearer realm="clearance", error="insufficient_user_authentication", .*acr_values="urn:clearance:acr:phr", max_age=300$/);
    const weak = assertOAuthError(await erase(await personToken(f, 'comp-a', 'audit:read audit:hold', acr.password)), 401, 'insufficient_user_authentication');
    assert.deepEqual([weak.acr_values, weak.max_age], [acr.phishingResistant, 300]);
    assert.equal(await liveKeys(), 1, 'nothing erased');
    assert.deepEqual((await f.auditEvents('audit.erasure_refused')).map((e) => [e.subject, e.details!.reason, e.details!.max_age, e.details!.outcome]), [
      [f.traderA, 'stale_authentication', 300, 'challenged'],
      [f.traderA, 'insufficient_authentication', 300, 'challenged'],
    ]);

    // Exactly five minutes old is still fresh.
    const erased = await erase(await signedInAgo(300));
    assert.equal(erased.statusCode, 200, erased.body);
    assert.equal(await liveKeys(), 0);
  });

  test('a pseudonymous subject (an address nobody is named for) is erased only by a compliance person who reads the whole log', async (t) => {
    const f = await harness(t);
    await f.ctx.audit.record({ type: 'user.login_failed', client: 'trading-ui', details: { reason: 'unknown_user', source_address: '192.0.2.77' } });
    const anon = (await f.ctx.storage.db.selectFrom('audit_subject_keys').select('subject').where('subject', 'like', 'anon:%').executeTakeFirstOrThrow()).subject;
    const erase = (token: string) => f.inject({ method: 'POST', url: `/admin/audit/subjects/${encodeURIComponent(anon)}/erase`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: '{}' });
    for (const username of ['comp-a', 'comp-b']) {
      const refused = assertOAuthError(await erase(await personToken(f, username, 'audit:read audit:hold')), 403, 'access_denied');
      assert.match(String(refused.error_description), /of no legal entity/);
      assert.equal((await f.auditEvents('audit.erasure_refused')).at(-1)!.details!.reason, 'no_firm');
    }
    assert.equal(await f.ctx.storage.db.selectFrom('audit_subject_keys').select('sealed_key').where('subject', '=', anon).executeTakeFirstOrThrow().then((k) => k.sealed_key !== null), true, 'nothing erased');
    const erased = await erase(await personToken(f, 'dpo', 'audit:read audit:hold'));
    assert.equal(erased.statusCode, 200, erased.body);
    assert.equal(erased.json().subject, anon);
  });
});
