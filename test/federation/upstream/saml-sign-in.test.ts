import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inflateRawSync } from 'node:zlib';
import * as client from 'openid-client';
import { decodeJwt } from 'jose';
import { HttpBrowser, csrfOf } from '../../helpers/http-browser.ts';
import { approve, authorizationRequest, form } from './fixture.ts';
import { bankEntityId, makeSigningKey, samlClass } from './saml-idp.ts';
import { acr, olga, startSaml, type SamlHarness } from './saml-fixture.ts';
import { defaultRiskSettings } from '../../../src/risk/settings.ts';

// A person at a partner bank signs in through the bank's SAML 2.0 IdP (samlify), over HTTP:
// Clearance as the service provider (node-saml) — its metadata, a signed AuthnRequest by redirect,
// the response posted to the ACS, verified (signatures, issuer, audience, recipient, times,
// InResponseTo, one use per assertion), the person provisioned and the bank named as the source of
// assurance; and each way a response can be wrong, refused with a page and an audit event.

/** From the desk application's authorization URL to the IdP: Clearance's sign-in page, the organisation form, the redirect to the SSO URL. */
async function toTheIdp(h: SamlHarness, browser: HttpBrowser, request: ReturnType<typeof authorizationRequest>, realm = 'olga@bank-b.example'): Promise<URL> {
  const page = await browser.follow(await request.url(), h.server.issuer);
  const html = await page.response.text();
  const answer = await browser.fetch(`${page.url.href}/upstream`, form({ csrf_token: csrfOf(html), realm }));
  assert.equal(answer.status, 303);
  const sso = new URL(answer.headers.get('location')!);
  assert.equal(`${sso.origin}${sso.pathname}`, 'https://idp.bank-b.example/sso');
  return sso;
}

/** Posts a response to the ACS as the IdP's auto-submitting form would (no cookies: a cross-site POST), then brings the browser back. */
async function postToAcs(h: SamlHarness, browser: HttpBrowser, sso: URL, samlResponse: string): Promise<{ response: Response; url: URL }> {
  const posted = await fetch(`${h.server.issuer}/broker/saml/acs`, { ...form({ SAMLResponse: samlResponse, RelayState: sso.searchParams.get('RelayState')! }), redirect: 'manual' });
  if (posted.status !== 303) return { response: posted, url: new URL(`${h.server.issuer}/broker/saml/acs`) };
  return browser.follow(new URL(posted.headers.get('location')!), h.server.issuer);
}

/** The AuthnRequest Clearance's redirect to the SSO URL carries (HTTP-Redirect binding: deflated, base64). */
function authnRequestOf(sso: URL): string {
  return inflateRawSync(Buffer.from(sso.searchParams.get('SAMLRequest')!, 'base64')).toString('utf8');
}

async function eventsOf(h: SamlHarness, type: string) {
  const rows = await h.server.running.ctx.storage.db.selectFrom('audit_events').select(['event']).where('type', '=', type).orderBy('seq').execute();
  return rows.map((row) => JSON.parse(row.event) as { subject?: string; details: Record<string, unknown> });
}


test('a bank’s treasurer signs in through the bank’s SAML IdP and gets tokens naming the bank as the source of assurance', async (t) => {
  const h = await startSaml(t);
  assert.match(h.spMetadata, new RegExp(`entityID="${h.server.issuer}/broker/saml"`));
  assert.match(h.spMetadata, /AssertionConsumerService[^>]*HTTP-POST[^>]*\/broker\/saml\/acs/);
  assert.match(h.spMetadata, /use="encryption"/);
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const sso = await toTheIdp(h, browser, request);
  assert.ok(sso.searchParams.get('Signature'), 'the AuthnRequest is signed');
  const back = await postToAcs(h, browser, sso, await h.idp.respond(sso, olga));
  const callback = await approve(browser, back);
  const tokens = await client.authorizationCodeGrant(h.config, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
  const idToken = tokens.claims()!;
  assert.equal(idToken.acr, acr.mfa, 'X509 maps to two factors, as declared');
  assert.equal(idToken.assurance_source, bankEntityId);
  assert.equal(decodeJwt(tokens.access_token).assurance_source, bankEntityId);
  const db = h.server.running.ctx.storage.db;
  const person = await db.selectFrom('users').selectAll().where('id', '=', idToken.sub).executeTakeFirstOrThrow();
  assert.deepEqual([person.username, person.email, person.name, person.desks], ['bank-b.olga', 'olga@bank-b.example', 'Olga Treasurer', '["bank-b-treasury"]']);
  const link = await db.selectFrom('user_links').selectAll().where('user_id', '=', person.id).executeTakeFirstOrThrow();
  assert.deepEqual([link.issuer, link.subject], [bankEntityId, 'olga-7731']);
  const [login] = (await eventsOf(h, 'user.login_succeeded')).filter((e) => e.details.method === 'upstream');
  assert.equal(login?.details.assurance_source, bankEntityId);
  assert.deepEqual(login?.details.asserted, { acr: samlClass.x509, amr: [] });
});

test('an encrypted assertion is decrypted with the SP key and signs the person in', async (t) => {
  const h = await startSaml(t);
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const sso = await toTheIdp(h, browser, request);
  const response = await h.idp.respond(sso, olga, { encrypt: true });
  assert.match(Buffer.from(response, 'base64').toString('utf8'), /EncryptedAssertion/);
  assert.doesNotMatch(Buffer.from(response, 'base64').toString('utf8'), /olga@bank-b\.example/, 'nothing of the person in clear');
  const back = await postToAcs(h, browser, sso, response);
  const callback = await approve(browser, back);
  const tokens = await client.authorizationCodeGrant(h.config, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
  assert.equal(tokens.claims()!.assurance_source, bankEntityId);
});

test('a smart-card sign-in at a bank trusted only for two factors is capped there', async (t) => {
  const h = await startSaml(t);
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const sso = await toTheIdp(h, browser, request);
  const callback = await approve(browser, await postToAcs(h, browser, sso, await h.idp.respond(sso, { ...olga, authnContextClassRef: samlClass.smartcard })));
  const tokens = await client.authorizationCodeGrant(h.config, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
  assert.equal(tokens.claims()!.acr, acr.mfa);
});

/** Each wrong response: refused at the ACS with a page, audited with why, nobody provisioned. */
async function assertRefused(h: SamlHarness, answer: { response: Response }, reason: string, detail?: RegExp): Promise<void> {
  assert.equal(answer.response.status, reason === 'unknown_state' ? 400 : 401);
  assert.equal(answer.response.headers.get('cache-control'), 'no-store');
  assert.match(answer.response.headers.get('content-type')!, /text\/html/);
  const refused = await eventsOf(h, 'upstream.sign_in_refused');
  assert.equal(refused.at(-1)?.details.reason, reason);
  if (detail) assert.match(String(refused.at(-1)?.details.detail), detail);
  assert.equal((await h.server.running.ctx.storage.db.selectFrom('user_links').selectAll().execute()).length, 0);
}

const wrongCases: { name: string; make: (h: SamlHarness, sso: URL) => Promise<string>; detail: RegExp; requireSigned?: 'assertion' | 'response' }[] = [
  { name: 'an unsigned response', make: (h, sso) => h.idp.respond(sso, olga, { unsigned: true }), detail: /signature/i },
  { name: 'a response signed by a key the bank did not declare', make: (h, sso) => h.idp.respond(sso, olga, { key: makeSigningKey('/CN=Impostor') }), detail: /signature/i },
  { name: 'a response for another service provider (audience)', make: (h, sso) => h.idp.respond(sso, { ...olga, tags: { Audience: 'https://other-sp.example/saml' } }), detail: /audience/i },
  { name: 'an assertion for another recipient', make: (h, sso) => h.idp.respond(sso, { ...olga, tags: { SubjectRecipient: 'https://other-sp.example/acs' } }), detail: /Recipient/ },
  { name: 'a response to another destination', make: (h, sso) => h.idp.respond(sso, { ...olga, tags: { Destination: 'https://other-sp.example/acs' } }), detail: /Destination/ },
  {
    name: 'an expired assertion',
    make: (h, sso) => h.idp.respond(sso, { ...olga, tags: { ConditionsNotBefore: new Date(Date.now() - 3_600_000).toISOString(), ConditionsNotOnOrAfter: new Date(Date.now() - 1_800_000).toISOString(), SubjectConfirmationDataNotOnOrAfter: new Date(Date.now() - 1_800_000).toISOString() } }),
    detail: /expired|No valid subject confirmation/i,
  },
  { name: 'a response to another request (InResponseTo)', make: (h, sso) => h.idp.respond(sso, { ...olga, tags: { InResponseTo: '_someone-elses-request' } }), detail: /InResponseTo/ },
  { name: 'an assertion with a transient NameID (it names nobody twice)', make: (h, sso) => h.idp.respond(sso, { ...olga, tags: { NameIDFormat: 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient' } }), detail: /transient/ },
  { name: 'an assertion with a NameID shaped like a JWT', make: (h, sso) => h.idp.respond(sso, { ...olga, nameId: 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.' }), detail: /NameID/ },
  { name: 'an assertion from another issuer', make: (h, sso) => h.idp.respond(sso, { ...olga, tags: { Issuer: 'https://idp.other-bank.example/saml' } }), detail: /issuer|Issuer/ },
];

for (const wrong of wrongCases) {
  test(`${wrong.name} is refused with a page and an audit event, and the sign-in is spoiled`, async (t) => {
    const h = await startSaml(t);
    const browser = new HttpBrowser();
    const sso = await toTheIdp(h, browser, authorizationRequest(h));
    const answer = await postToAcs(h, browser, sso, await wrong.make(h, sso));
    await assertRefused(h, answer, 'invalid_assertion', wrong.detail);
    // The sign-in it answered cannot be finished by a correct response afterwards.
    await assertRefused(h, await postToAcs(h, browser, sso, await h.idp.respond(sso, olga)), 'unknown_state');
  });
}

test('an assertion is used once: the same assertion ID answering a later sign-in is refused, on the shared replay cache', async (t) => {
  const h = await startSaml(t);
  const fixed = { ...olga, tags: { AssertionID: '_assertion-used-twice' } };
  const first = new HttpBrowser();
  const request = authorizationRequest(h);
  const sso = await toTheIdp(h, first, request);
  await approve(first, await postToAcs(h, first, sso, await h.idp.respond(sso, fixed)));
  const second = new HttpBrowser();
  const sso2 = await toTheIdp(h, second, authorizationRequest(h));
  const answer = await postToAcs(h, second, sso2, await h.idp.respond(sso2, fixed));
  assert.equal(answer.response.status, 401);
  assert.equal((await eventsOf(h, 'upstream.sign_in_refused')).at(-1)?.details.reason, 'replayed_assertion');
});

test('the answer is picked up only by the browser that left, once', async (t) => {
  const h = await startSaml(t);
  const browser = new HttpBrowser();
  const sso = await toTheIdp(h, browser, authorizationRequest(h));
  const posted = await fetch(`${h.server.issuer}/broker/saml/acs`, { ...form({ SAMLResponse: await h.idp.respond(sso, olga), RelayState: sso.searchParams.get('RelayState')! }), redirect: 'manual' });
  assert.equal(posted.status, 303);
  const continuation = new URL(posted.headers.get('location')!);
  assert.equal((await new HttpBrowser().fetch(continuation)).status, 400, 'another browser');
  assert.equal((await eventsOf(h, 'upstream.sign_in_refused')).at(-1)?.details.reason, 'other_browser');
  assert.equal((await browser.fetch(continuation)).status, 400, 'used up');
});

test('a response must be signed as declared: require_signed response refuses a response whose assertion alone is signed', async (t) => {
  const h = await startSaml(t, { requireSigned: 'response' });
  const browser = new HttpBrowser();
  const sso = await toTheIdp(h, browser, authorizationRequest(h));
  // samlify signs the assertion (the SP metadata wants signed assertions) and not the response.
  const answer = await postToAcs(h, browser, sso, await h.idp.respond(sso, olga));
  await assertRefused(h, answer, 'invalid_assertion', /signature/i);
});

test('the bank’s single logout signs the person out of Clearance: a signed LogoutRequest ends what they hold, and the browser goes back to the bank', async (t) => {
  const h = await startSaml(t);
  assert.match(h.spMetadata, /SingleLogoutService[^>]*HTTP-Redirect[^>]*\/broker\/saml\/slo/);
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const sso = await toTheIdp(h, browser, request);
  await approve(browser, await postToAcs(h, browser, sso, await h.idp.respond(sso, olga)));
  const db = h.server.running.ctx.storage.db;
  const session = await db.selectFrom('sessions').selectAll().where('assurance_provider', '=', 'bank-b').executeTakeFirstOrThrow();
  assert.ok(session.upstream_sid, 'the IdP session (SessionIndex) is kept');

  // Unsigned: refused, and nothing ends.
  const unsigned = h.idp.logoutRequest('olga-7731', session.upstream_sid!);
  unsigned.searchParams.delete('Signature');
  const refused = await browser.fetch(new URL(`${unsigned.pathname}${unsigned.search}`, h.server.issuer));
  assert.equal(refused.status, 400);
  assert.equal((await eventsOf(h, 'upstream.logout_refused')).length, 1);
  assert.equal((await db.selectFrom('sessions').select('ended_at').where('id', '=', session.id).executeTakeFirstOrThrow()).ended_at, null);

  const logout = h.idp.logoutRequest('olga-7731', session.upstream_sid!);
  assert.equal(`${logout.origin}${logout.pathname}`, `${h.server.issuer}/broker/saml/slo`);
  const answer = await browser.fetch(logout);
  assert.equal(answer.status, 303);
  const back = new URL(answer.headers.get('location')!);
  assert.equal(`${back.origin}${back.pathname}`, 'https://idp.bank-b.example/slo');
  assert.ok(back.searchParams.get('SAMLResponse'), 'a LogoutResponse goes back to the bank');
  assert.equal((await db.selectFrom('sessions').select('end_reason').where('id', '=', session.id).executeTakeFirstOrThrow()).end_reason, 'signed_out_everywhere');
  const [ended] = await eventsOf(h, 'user.signed_out_everywhere');
  assert.deepEqual([ended?.details.via, ended?.details.provider], ['upstream-logout', 'bank-b']);
});

/** Olga signs in through the bank and the relying party redeems its code: her browser and tokens. */
async function olgaSignsIn(h: SamlHarness) {
  const browser = new HttpBrowser();
  const request = authorizationRequest(h);
  const sso = await toTheIdp(h, browser, request);
  const callback = await approve(browser, await postToAcs(h, browser, sso, await h.idp.respond(sso, olga)));
  const tokens = await client.authorizationCodeGrant(h.config, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
  return { browser, tokens };
}

test('the bank’s LogoutRequest naming the person without a SessionIndex ends what they hold even when their Clearance session already ended', async (t) => {
  const h = await startSaml(t);
  const { browser, tokens } = await olgaSignsIn(h);
  const sub = tokens.claims()!.sub;
  // She signs out at Clearance; the browser is not taken on to the bank, so her session there stays.
  assert.equal((await browser.fetch(`${h.server.issuer}/logout?id_token_hint=${tokens.id_token}`)).status, 303);
  const db = h.server.running.ctx.storage.db;
  assert.equal((await db.selectFrom('sessions').select('end_reason').where('user_id', '=', sub).executeTakeFirstOrThrow()).end_reason, 'logout');
  // SAML 2.0 Core §3.7: no SessionIndex, every session of the principal — and what they hold.
  const answer = await new HttpBrowser().fetch(h.idp.logoutRequest('olga-7731'));
  assert.equal(answer.status, 303);
  const person = await db.selectFrom('users').select('tokens_valid_after').where('id', '=', sub).executeTakeFirstOrThrow();
  assert.ok(person.tokens_valid_after !== null, 'every access token issued until now is dead');
  const [ended] = await eventsOf(h, 'user.signed_out_everywhere');
  assert.equal(ended?.subject, sub);
  assert.deepEqual([ended?.details.via, ended?.details.provider], ['upstream-logout', 'bank-b']);
});

test('a SessionIndex longer than a session keeps is matched by the part the session kept', async (t) => {
  const h = await startSaml(t);
  const browser = new HttpBrowser();
  const sso = await toTheIdp(h, browser, authorizationRequest(h));
  await approve(browser, await postToAcs(h, browser, sso, await h.idp.respond(sso, olga)));
  const db = h.server.running.ctx.storage.db;
  const session = await db.selectFrom('sessions').selectAll().where('assurance_provider', '=', 'bank-b').executeTakeFirstOrThrow();
  // As a sign-in with a 300-character SessionIndex leaves it: its first 255 characters.
  const long = `${session.upstream_sid}${'i'.repeat(300)}`;
  await db.updateTable('sessions').set({ upstream_sid: long.slice(0, 255) }).where('id', '=', session.id).execute();
  assert.equal((await browser.fetch(h.idp.logoutRequest('olga-7731', long))).status, 303);
  assert.equal((await db.selectFrom('sessions').select('end_reason').where('id', '=', session.id).executeTakeFirstOrThrow()).end_reason, 'signed_out_everywhere');
});

test('a relying party’s sign-out at Clearance goes on to the bank’s single logout with a signed LogoutRequest, and its answer brings the browser back', async (t) => {
  const h = await startSaml(t);
  const { browser, tokens } = await olgaSignsIn(h);
  const out = await browser.fetch(`${h.server.issuer}/logout?id_token_hint=${tokens.id_token}`);
  assert.equal(out.status, 303);
  const toIdp = new URL(out.headers.get('location')!);
  assert.equal(`${toIdp.origin}${toIdp.pathname}`, 'https://idp.bank-b.example/slo');
  assert.ok(toIdp.searchParams.get('Signature'), 'Clearance signs its LogoutRequest');
  const { response, nameId } = await h.idp.answerLogout(toIdp);
  assert.equal(nameId, 'olga-7731', 'it names the person by the NameID of their link');
  assert.equal(`${response.origin}${response.pathname}`, `${h.server.issuer}/broker/saml/slo`);
  // Tampered (its signature stripped), the answer is not believed.
  const unsigned = new URL(response);
  unsigned.searchParams.delete('Signature');
  assert.equal((await browser.fetch(unsigned)).status, 400);
  const back = await browser.fetch(response);
  assert.equal(back.status, 200, 'the signed answer verifies');
  assert.match(await back.text(), /signed out of Clearance and of your organisation/);
  assert.equal((await h.server.running.ctx.storage.db.selectFrom('sessions').select('end_reason').executeTakeFirstOrThrow()).end_reason, 'logout');
});

test('posts to the ACS naming no sign-in cannot flood the audit log: past 20 a minute from one address they are counted, not written one by one', async (t) => {
  const h = await startSaml(t);
  for (let i = 0; i < 25; i++) {
    const answer = await fetch(`${h.server.issuer}/broker/saml/acs`, { ...form({ SAMLResponse: 'PHg+PC94Pg==', RelayState: `${'A'.repeat(42)}${i % 10}` }), redirect: 'manual' });
    assert.equal(answer.status, 400);
  }
  assert.equal((await eventsOf(h, 'upstream.sign_in_refused')).length, 20);
});

test('a relying party’s max_age asks the bank for ForceAuthn, and an AuthnInstant older than it allows is refused, before anyone is provisioned', async (t) => {
  const h = await startSaml(t);
  const browser = new HttpBrowser();
  const sso = await toTheIdp(h, browser, authorizationRequest(h, { max_age: '60' }));
  assert.match(authnRequestOf(sso), /ForceAuthn="true"/);
  const tenMinutesAgo = new Date(Date.now() - 10 * 60_000).toISOString();
  const old = `<saml:AuthnStatement AuthnInstant="${tenMinutesAgo}" SessionIndex="_session-old"><saml:AuthnContext><saml:AuthnContextClassRef>${samlClass.password}</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>`;
  const answer = await postToAcs(h, browser, sso, await h.idp.respond(sso, { ...olga, tags: { AuthnStatement: old } }));
  assert.equal(answer.response.status, 401);
  assert.match(await answer.response.text(), /sign in again/i);
  const refused = await eventsOf(h, 'upstream.sign_in_refused');
  assert.equal(refused.at(-1)?.details.reason, 'authentication_too_old');
  assert.equal(refused.at(-1)?.details.max_age, 60);
  const db = h.server.running.ctx.storage.db;
  assert.equal((await db.selectFrom('user_links').selectAll().execute()).length, 0, 'nobody linked or provisioned');
  assert.equal((await db.selectFrom('sessions').select('id').where('assurance_provider', 'is not', null).execute()).length, 0, 'no session');
});

test('a relying party’s prompt=login asks the bank for ForceAuthn, and an AuthnInstant from before the person was sent there is refused, before anyone is provisioned', async (t) => {
  const h = await startSaml(t);
  const browser = new HttpBrowser();
  const sso = await toTheIdp(h, browser, authorizationRequest(h, { prompt: 'login' }));
  assert.match(authnRequestOf(sso), /ForceAuthn="true"/, 'the bank is told to authenticate the person again');
  const tenMinutesAgo = new Date(Date.now() - 10 * 60_000).toISOString();
  const old = `<saml:AuthnStatement AuthnInstant="${tenMinutesAgo}" SessionIndex="_session-old"><saml:AuthnContext><saml:AuthnContextClassRef>${samlClass.password}</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>`;
  const answer = await postToAcs(h, browser, sso, await h.idp.respond(sso, { ...olga, tags: { AuthnStatement: old } }));
  assert.equal(answer.response.status, 401);
  assert.equal(answer.response.headers.get('cache-control'), 'no-store');
  assert.match(await answer.response.text(), /sign in again/i);
  const refused = await eventsOf(h, 'upstream.sign_in_refused');
  assert.equal(refused.length, 1);
  assert.equal(refused[0]?.details.reason, 'authentication_not_renewed');
  assert.equal(refused[0]?.details.prompt, 'login');
  assert.ok(Number(refused[0]?.details.upstream_auth_age) >= 595, 'the refusal says how old the bank’s authentication was');
  const db = h.server.running.ctx.storage.db;
  assert.equal((await db.selectFrom('user_links').selectAll().execute()).length, 0, 'nobody linked or provisioned');
  assert.equal((await db.selectFrom('sessions').select('id').where('assurance_provider', 'is not', null).execute()).length, 0, 'no session');
});

test('with prompt=login an assertion without AuthnInstant is refused (fail closed)', async (t) => {
  const h = await startSaml(t);
  const browser = new HttpBrowser();
  const sso = await toTheIdp(h, browser, authorizationRequest(h, { prompt: 'login' }));
  const noInstant = `<saml:AuthnStatement SessionIndex="_session-x"><saml:AuthnContext><saml:AuthnContextClassRef>${samlClass.password}</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>`;
  const answer = await postToAcs(h, browser, sso, await h.idp.respond(sso, { ...olga, tags: { AuthnStatement: noInstant } }));
  assert.equal(answer.response.status, 401);
  const refused = await eventsOf(h, 'upstream.sign_in_refused');
  assert.equal(refused.at(-1)?.details.reason, 'auth_time_missing');
  assert.equal((await h.server.running.ctx.storage.db.selectFrom('user_links').selectAll().execute()).length, 0, 'nobody linked or provisioned');
});

test('with prompt=login an authentication the bank made after Clearance sent the person there signs them in; without prompt=login or max_age no ForceAuthn is asked', async (t) => {
  const h = await startSaml(t);
  const browser = new HttpBrowser();
  const request = authorizationRequest(h, { prompt: 'login' });
  const sso = await toTheIdp(h, browser, request);
  const back = await postToAcs(h, browser, sso, await h.idp.respond(sso, olga));
  const callback = await approve(browser, back);
  const tokens = await client.authorizationCodeGrant(h.config, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
  assert.equal(tokens.claims()!.assurance_source, bankEntityId);
  assert.equal((await eventsOf(h, 'upstream.sign_in_refused')).length, 0);
  const plain = await toTheIdp(h, new HttpBrowser(), authorizationRequest(h));
  assert.doesNotMatch(authnRequestOf(plain), /ForceAuthn/);
});

test('a risk step-up met through the bank’s two factors from its earlier session asks the bank again with ForceAuthn, and its new authentication signs the person in', async (t) => {
  const h = await startSaml(t);
  // Every sign-in is a risk step-up (the threshold is nothing), none is denied.
  h.server.running.ctx.risk.settings = { get: async () => ({ ...defaultRiskSettings, outcomes: { step_up: 0, deny: 1_000_000 } }) };
  const browser = new HttpBrowser();
  const sso = await toTheIdp(h, browser, authorizationRequest(h));
  assert.doesNotMatch(authnRequestOf(sso), /ForceAuthn/, 'the relying party asked no fresh sign-in');
  const tenMinutesAgo = new Date(Date.now() - 10 * 60_000).toISOString();
  const old = `<saml:AuthnStatement AuthnInstant="${tenMinutesAgo}" SessionIndex="_session-old"><saml:AuthnContext><saml:AuthnContextClassRef>${samlClass.x509}</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>`;
  const first = await postToAcs(h, browser, sso, await h.idp.respond(sso, { ...olga, tags: { AuthnStatement: old } }));
  assert.equal(first.response.status, 303, 'sent back to the bank');
  const again = first.url;
  assert.equal(`${again.origin}${again.pathname}`, 'https://idp.bank-b.example/sso');
  assert.match(authnRequestOf(again), /ForceAuthn="true"/, 'the bank is told to authenticate the person again');
  assert.notEqual(again.searchParams.get('RelayState'), sso.searchParams.get('RelayState'), 'a new sign-in');
  const db = h.server.running.ctx.storage.db;
  assert.equal((await db.selectFrom('sessions').select('id').where('assurance_provider', 'is not', null).execute()).length, 0, 'no session from the earlier one');
  const back = await postToAcs(h, browser, again, await h.idp.respond(again, olga));
  await approve(browser, back);
  const sessions = await db.selectFrom('sessions').select(['acr']).where('assurance_provider', '=', 'bank-b').execute();
  assert.deepEqual(sessions.map((s) => s.acr), [acr.mfa]);
  assert.equal((await eventsOf(h, 'upstream.sign_in_refused')).length, 0);
});
