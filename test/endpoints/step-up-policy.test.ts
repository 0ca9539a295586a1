import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decideConsent, nextStep, recordAuthentication } from '../../src/authorization/interactions.ts';
import { acr } from '../../src/identity/acr.ts';
import { clearingApi, ordersApi, resourceServers, assertOAuthError, decodeJwt } from './fixture.ts';
import { codeFlowFixture, orderDetail, pkce, type CodeFlowFixture, type Person } from '../authorization/fixture.ts';
import { exampleEntities } from '../policy/fixture.ts';
import { localClock } from '../../src/policy/desk-time.ts';
import { recordUses } from '../../src/policy/first-use.ts';

/**
 * Step-up policies over HTTP (docs/policy.md "Step-up policies"): a Cedar forbid annotated
 * @step_up asks the person to authenticate again — at /authorize before the code, at the token
 * endpoint as insufficient_user_authentication, at the AuthZEN API as a decision carrying step_up.
 */

const mfa = { acr: acr.multiFactor, amr: ['pwd', 'otp', 'mfa'] };
const phr = { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] };
const exchange = 'urn:ietf:params:oauth:grant-type:token-exchange';

const policies = `
@id("all") permit (principal, action, resource);

@id("large-orders-need-a-passkey")
@step_up("${acr.phishingResistant}")
forbid (principal is User, action == Action::"order:create", resource is Instrument)
when { context has notional && context.notional > 1000000 }
unless { context has acr_levels && context.acr_levels.contains("${acr.phishingResistant}") };

@id("settlement-needs-a-recent-second-factor")
@step_up("${acr.multiFactor}")
@step_up_max_age("60")
forbid (principal is User, action == Action::"settlement:submit", resource)
unless { context has acr_levels && context.acr_levels.contains("${acr.multiFactor}") && context has auth_age && context.auth_age <= 60 };

@id("first-order-in-a-class-needs-a-passkey")
@step_up("${acr.phishingResistant}")
forbid (principal is User, action in [Action::"order:cancel"], resource is Instrument)
when { context has new_instrument_class && context.new_instrument_class }
unless { context has acr_levels && context.acr_levels.contains("${acr.phishingResistant}") };

@id("amending-at-night-needs-a-passkey")
@step_up("${acr.phishingResistant}")
forbid (principal is User, action == Action::"order:amend", resource)
when { context has local_time && (context.local_time < 420 || context.local_time >= 1080) }
unless { context has acr_levels && context.acr_levels.contains("${acr.phishingResistant}") };

@id("no-orders-on-xbad")
forbid (principal, action, resource is Instrument)
when { resource has venue && resource.venue == "XBAD" };
`;

async function stepUpFixture(t: Parameters<typeof codeFlowFixture>[0]): Promise<CodeFlowFixture> {
  const f = await codeFlowFixture(t);
  await f.apply({
    resource_servers: [
      { ...resourceServers[0], exchange_clients: ['desk-backend'] },
      { ...resourceServers[1], exchange_clients: ['desk-backend'] },
    ],
    clients: [
      { client_id: 'pep', kind: 'service', grant_types: ['client_credentials'], scope: 'access:evaluate' },
      { client_id: 'desk-backend', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: [exchange], scope: 'order:create settlement:submit' },
    ],
    policies: [{ version: 'v1', text: policies, change_ref: 'CHG-14', author: 'alice.author', approver: 'bob.approver', active: true }],
  });
  return f;
}

function interactionId(location: URL | undefined): string {
  assert.ok(location?.pathname.startsWith('/interaction/'), `to the people side: ${location?.href}`);
  return location!.pathname.split('/').pop()!;
}

/** /authorize for an order of `notional` with the person's session; the first answer. */
async function authorizeOrder(f: CodeFlowFixture, person: Person, detail: Record<string, unknown>, challenge = pkce()) {
  return f.authorize(f.request('web-app', { scope: 'openid order:create order:cancel', resource: ordersApi, authorization_details: JSON.stringify([detail]), code_challenge: challenge.challenge }), { cookie: person.cookie });
}

/** The rest of the browser journey: a login at `level` during the interaction, consent, resume. */
async function signInAndApprove(f: CodeFlowFixture, id: string, cookie: string, level: { acr: string; amr: string[] }) {
  const again = await f.signIn('alice', level);
  await recordAuthentication(f.ctx, id, again.authentication);
  await decideConsent(f.ctx, id, again.authentication, true);
  return f.resume(id, `${cookie}; ${again.cookie}`);
}

describe('a step-up policy at the authorization endpoint', () => {
  test('sends the person to sign in at the level before the code, and the tokens follow the step-up', async (t) => {
    const f = await stepUpFixture(t);
    const person = await f.signIn('alice', mfa);
    const challenge = pkce();
    const first = await authorizeOrder(f, person, orderDetail, challenge);
    const id = interactionId(first.location);
    assert.deepEqual(await nextStep(f.ctx, id, person.authentication), { step: 'login', reason: 'acr', acr: acr.phishingResistant });
    const [requested] = await f.auditEvents('step_up.requested');
    assert.deepEqual(requested!.details!.trigger, ['policy']);
    assert.deepEqual(requested!.details!.policies, ['large-orders-need-a-passkey']);
    assert.equal(requested!.details!.policy_version, 'v1');
    assert.equal(requested!.details!.factor_offered, 'passkey');
    assert.deepEqual(requested!.decision, { allow: false, reasons: ['large-orders-need-a-passkey'], policyVersion: 'v1' });

    // A sign-in at mfa again does not lift it; a passkey does.
    const weak = await f.signIn('alice', mfa);
    await recordAuthentication(f.ctx, id, weak.authentication);
    assert.equal(interactionId((await f.resume(id, `${first.cookie}; ${weak.cookie}`)).location), id);
    const done = await signInAndApprove(f, id, first.cookie, phr);
    const code = done.location?.searchParams.get('code');
    assert.ok(code, done.location?.href);
    const redeemed = await f.redeem('web-app', code, challenge.verifier);
    assert.equal(redeemed.statusCode, 200, redeemed.body);
    assert.equal(decodeJwt((redeemed.json() as { access_token: string }).access_token).payload.acr, acr.phishingResistant);
    const [completed] = await f.auditEvents('step_up.completed');
    assert.equal(completed!.details!.outcome, 'met');
    assert.deepEqual(completed!.details!.factor_used, phr.amr);
    const issued = (await f.auditEvents('token.issued')).at(-1)!;
    assert.equal(issued.details!.step_up_id, requested!.details!.step_up_id);
  });

  test('a forbid without @step_up stays a plain deny: no step-up, and the token endpoint refuses', async (t) => {
    const f = await stepUpFixture(t);
    // The large order would ask a passkey, but the venue is forbidden outright: a passkey would not help.
    const person = await f.signIn('alice', mfa);
    const first = await authorizeOrder(f, person, { ...orderDetail, venue: 'XBAD' });
    assert.equal((await nextStep(f.ctx, interactionId(first.location), person.authentication)).step, 'consent', 'not sent to sign in again');
    const { code, pkce: challenge } = await f.authorizeAndApprove({ person, query: { scope: 'openid order:create order:cancel', resource: ordersApi, authorization_details: JSON.stringify([{ ...orderDetail, venue: 'XBAD' }]) } });
    assert.equal((await f.auditEvents('step_up.requested')).length, 0);
    const refused = assertOAuthError(await f.redeem('web-app', code, challenge.verifier), 400, 'invalid_authorization_details');
    assert.match(String(refused.error_description), /no-orders-on-xbad/);
  });

  test('records the classes a token lets the person trade: the next order in one is not new', async (t) => {
    const f = await stepUpFixture(t);
    const cancel = { ...orderDetail, actions: ['cancel'] };
    const person = await f.signIn('alice', mfa);
    const first = await authorizeOrder(f, person, cancel);
    assert.deepEqual(await nextStep(f.ctx, interactionId(first.location), person.authentication), { step: 'login', reason: 'acr', acr: acr.phishingResistant }, 'a new class');
    const challenge = pkce();
    const strong = await f.signIn('alice', phr);
    const { code } = await f.authorizeAndApprove({ person: strong, pkce: challenge, query: { scope: 'openid order:create order:cancel', resource: ordersApi, authorization_details: JSON.stringify([cancel]) } });
    assert.equal((await f.redeem('web-app', code, challenge.verifier)).statusCode, 200);
    const rows = await f.ctx.storage.db.selectFrom('first_uses').selectAll().execute();
    assert.deepEqual(rows.map((r) => [r.user_id, r.kind, r.value]), [[person.userId, 'instrument_class', 'bond']]);
    // Back at mfa, the same class is not new any more: no step-up, only the consent every order needs.
    const again = await authorizeOrder(f, person, cancel);
    assert.equal((await nextStep(f.ctx, interactionId(again.location), person.authentication)).step, 'consent');
  });
});

describe('a step-up policy at the token endpoint (RFC 9470)', () => {
  test('a refresh past the max age is insufficient_user_authentication with acr_values and max_age', async (t) => {
    const f = await stepUpFixture(t);
    const { code, pkce: challenge, person } = await f.authorizeAndApprove({ person: await f.signIn('alice', mfa), query: { scope: 'openid settlement:submit', resource: clearingApi } });
    const tokens = (await f.redeem('web-app', code, challenge.verifier)).json() as { refresh_token: string };
    f.clock.advance(30_000);
    const fresh = await f.refresh('web-app', tokens.refresh_token);
    assert.equal(fresh.statusCode, 200, 'within 60 s of the sign-in');
    f.clock.advance(40_000);
    const refused = await f.refresh('web-app', (fresh.json() as { refresh_token: string }).refresh_token);
    const body = assertOAuthError(refused, 400, 'insufficient_user_authentication');
    assert.equal(body.acr_values, acr.multiFactor);
    assert.equal(body.max_age, 60);
    const [requested] = await f.auditEvents('step_up.requested');
    assert.equal(requested!.subject, person.userId);
    assert.deepEqual(requested!.details!.trigger, ['policy']);
    assert.deepEqual(requested!.details!.policies, ['settlement-needs-a-recent-second-factor']);
    assert.equal(requested!.details!.max_age, 60);
    assert.equal(requested!.details!.grant_type, 'refresh_token');
    const denied = (await f.auditEvents('policy.denied')).at(-1)!;
    assert.deepEqual(denied.details!.step_up, { acr_values: acr.multiFactor, max_age: 60, policies: ['settlement-needs-a-recent-second-factor'] });
  });

  test('an exchanged token carries the person’s authentication, and an exchange is stepped up the same way', async (t) => {
    const f = await stepUpFixture(t);
    const person = await f.signIn('alice', mfa);
    const { code, pkce: challenge } = await f.authorizeAndApprove({ person, query: { scope: 'settlement:submit', resource: clearingApi } });
    const subjectToken = ((await f.redeem('web-app', code, challenge.verifier)).json() as { access_token: string }).access_token;
    const exchangeIt = () =>
      f.post('/token', {
        auth: f.basic('desk-backend'),
        form: { grant_type: exchange, subject_token: subjectToken, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', resource: clearingApi },
      });
    const exchanged = await exchangeIt();
    assert.equal(exchanged.statusCode, 200, exchanged.body);
    const claims = decodeJwt((exchanged.json() as { access_token: string }).access_token).payload;
    assert.equal(claims.acr, acr.multiFactor);
    assert.deepEqual(claims.amr, mfa.amr);
    assert.equal(claims.auth_time, person.authentication.authTime);
    f.clock.advance(120_000);
    const body = assertOAuthError(await exchangeIt(), 400, 'insufficient_user_authentication');
    assert.equal(body.acr_values, acr.multiFactor);
    assert.equal(body.max_age, 60);
    assert.equal((await f.auditEvents('step_up.requested')).at(-1)!.details!.grant_type, 'urn:ietf:params:oauth:grant-type:token-exchange');
  });
});

describe('a step-up policy at the AuthZEN API', () => {
  test('answers a decision false carrying step_up, and true at the level', async (t) => {
    const f = await stepUpFixture(t);
    const person = await f.signIn('alice');
    const ask = (context: Record<string, unknown>, resource: Record<string, unknown> = { type: 'instrument', id: 'UST10Y', properties: { instrument_class: 'bond' } }) =>
      f.inject({
        method: 'POST',
        url: '/access/v1/evaluation',
        headers: { authorization: f.basic('pep'), 'content-type': 'application/json' },
        payload: JSON.stringify({ subject: { type: 'user', id: person.userId }, action: { name: 'order:create' }, resource, context }),
      });
    const below = await ask({ notional: 5_000_000, acr: acr.multiFactor });
    assert.equal(below.statusCode, 200, below.body);
    const answer = below.json() as { decision: boolean; context: Record<string, unknown> };
    assert.equal(answer.decision, false);
    assert.deepEqual(answer.context.step_up, { acr_values: acr.phishingResistant, policies: ['large-orders-need-a-passkey'] });
    assert.deepEqual(answer.context.reasons, ['large-orders-need-a-passkey']);
    const event = (await f.auditEvents('policy.denied')).at(-1)!;
    assert.deepEqual(event.details!.step_up, { acr_values: acr.phishingResistant, policies: ['large-orders-need-a-passkey'] });

    assert.equal(((await ask({ notional: 5_000_000, acr: acr.phishingResistant })).json() as { decision: boolean }).decision, true);
    // A plain deny carries no step_up.
    const plain = (await ask({ notional: 5_000_000, acr: acr.multiFactor }, { type: 'instrument', id: 'UST10Y', properties: { instrument_class: 'bond', venue: 'XBAD' } })).json() as { decision: boolean; context: Record<string, unknown> };
    assert.equal(plain.decision, false);
    assert.equal(plain.context.step_up, undefined);
    // What Clearance computes cannot be sent; auth_time can.
    assertOAuthError(await ask({ acr: acr.password, acr_levels: [acr.phishingResistant] }), 400, 'invalid_request');
    assertOAuthError(await ask({ new_instrument_class: false }), 400, 'invalid_request');
    assert.equal((await ask({ notional: 10, acr: acr.password, auth_time: 1 })).statusCode, 200);
  });

  test('asks a max age from the token’s auth_time', async (t) => {
    const f = await stepUpFixture(t);
    const person = await f.signIn('alice');
    const now = Math.floor(f.clock.now() / 1000);
    const ask = (auth_time: number) =>
      f.inject({
        method: 'POST',
        url: '/access/v1/evaluation',
        headers: { authorization: f.basic('pep'), 'content-type': 'application/json' },
        payload: JSON.stringify({ subject: { type: 'user', id: person.userId }, action: { name: 'settlement:submit' }, resource: { type: 'resource_server', id: clearingApi }, context: { acr: acr.multiFactor, auth_time } }),
      });
    assert.equal(((await ask(now - 30)).json() as { decision: boolean }).decision, true);
    const old = (await ask(now - 3600)).json() as { decision: boolean; context: Record<string, unknown> };
    assert.equal(old.decision, false);
    assert.deepEqual(old.context.step_up, { acr_values: acr.multiFactor, max_age: 60, policies: ['settlement-needs-a-recent-second-factor'] });
  });
});

describe('what Clearance computes for step-up policies', () => {
  test('the desk’s local time, in its time zone, and whether a class is new for the person', async (t) => {
    const f = await stepUpFixture(t);
    const entities = exampleEntities() as { legal_entities: { desks: { id: string; time_zone?: string }[] }[] };
    for (const entity of entities.legal_entities) for (const desk of entity.desks ?? []) if (desk.id === 'fx-spot') desk.time_zone = 'Asia/Tokyo';
    await f.apply(entities);
    const person = await f.signIn('alice');
    await f.ctx.storage.db.updateTable('users').set({ desks: JSON.stringify(['fx-spot']) }).where('id', '=', person.userId).execute();
    const ask = (action: string) =>
      f.inject({
        method: 'POST',
        url: '/access/v1/evaluation',
        headers: { authorization: f.basic('pep'), 'content-type': 'application/json' },
        payload: JSON.stringify({ subject: { type: 'user', id: person.userId }, action: { name: action }, resource: { type: 'instrument', id: 'EURUSD', properties: { instrument_class: 'fx' } }, context: { acr: acr.multiFactor } }),
      });

    // 14:00 UTC is 23:00 in Tokyo (no summer time there): night at the desk.
    const now = new Date(f.clock.now());
    const next = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1, 14, 0);
    f.clock.advance(next - f.clock.now());
    const amend = (await ask('order:amend')).json() as { decision: boolean; context: Record<string, unknown> };
    const request = (await f.auditEvents()).filter((e) => e.type.startsWith('policy.')).at(-1)!.details!.request as { context: Record<string, unknown> };
    assert.equal(request.context.local_time, 23 * 60, 'minutes after midnight in Tokyo');
    assert.equal(request.context.local_weekday, localClock('Asia/Tokyo', f.clock.now())!.weekday);
    assert.equal(amend.decision, false);
    assert.deepEqual(amend.context.step_up, { acr_values: acr.phishingResistant, policies: ['amending-at-night-needs-a-passkey'] });
    // Twelve hours later it is 11:00 at the desk.
    f.clock.advance(12 * 3600_000);
    assert.equal(((await ask('order:amend')).json() as { decision: boolean }).decision, true);

    // The first cancel in fx asks for a passkey; once a token let the person trade fx, it does not.
    const first = (await ask('order:cancel')).json() as { decision: boolean; context: Record<string, unknown> };
    assert.equal(first.decision, false);
    assert.deepEqual(first.context.step_up, { acr_values: acr.phishingResistant, policies: ['first-order-in-a-class-needs-a-passkey'] });
    await f.ctx.storage.db.transaction().execute((trx) => recordUses(trx, f.ctx, person.userId, [{ kind: 'instrument_class', value: 'fx' }]));
    assert.equal(((await ask('order:cancel')).json() as { decision: boolean }).decision, true);
  });
});
