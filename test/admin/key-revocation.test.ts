import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { standDown } from '../../src/approvals/break-glass/activations.ts';
import { keyCompromiseKind } from '../../src/approvals/kinds/key-compromise.ts';
import { decideApprovalRequest, findApprovalRequest } from '../../src/approvals/requests.ts';
import { acr } from '../../src/identity/acr.ts';
import { mintAccessToken, newJti } from '../../src/tokens/access-token.ts';
import { breakGlassFixture, type BreakGlassFixture } from '../approvals/break-glass-fixture.ts';
import { assertOAuthError, decodeJwt, ordersApi } from '../endpoints/fixture.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';

// POST /admin/keys/{kid}/revoke (src/endpoints/admin/key-revocation.ts, docs/keys.md "Token-signing
// keys: compromise"): a compromised key is revoked at once with a break-glass activation's token,
// else after a second person holding `admin` approves (two for a client's own token).

const password = 'a-long-enough-password-1';

async function harness(t: TestContext, dialect: TestDialect): Promise<BreakGlassFixture & { admin: string; kid: string }> {
  const f = await breakGlassFixture(t, { dialect });
  const admin = adminAudience(f.issuer);
  await f.apply({
    users: [
      { username: 'sec-1', password, name: 'sec-1', roles: ['admin'] },
      { username: 'sec-2', password, name: 'sec-2', roles: ['admin'] },
    ],
    clients: [{ client_id: 'bg-keys', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'admin:write' }],
    break_glass: [{ name: 'bg-keys', scopes: ['admin:write'], audience: admin, activation_seconds: 600 }],
  });
  // Tokens issued in the second the people were changed would count as issued before it.
  f.clock.advance(2000);
  const [key] = await f.ctx.keys.list();
  return Object.assign(f, { admin, kid: key!.kid });
}

const revoke = (f: BreakGlassFixture, token: string, kid: string, body: unknown = { compromised: true, reason: 'the key was in a leaked backup' }) =>
  f.inject({ method: 'POST', url: `/admin/keys/${kid}/revoke`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });

const decide = (f: BreakGlassFixture, token: string, id: string, decision: 'approve' | 'deny' = 'approve') =>
  f.inject({
    method: 'POST',
    url: `/admin/approvals/${id}/decision`,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    payload: JSON.stringify(decision === 'deny' ? { decision, reason: 'no sign of a leak' } : { decision }),
  });

const published = async (f: BreakGlassFixture) => ((await f.inject({ method: 'GET', url: '/jwks' })).json() as { keys: { kid: string }[] }).keys.map((k) => k.kid);

async function introspect(f: BreakGlassFixture, token: string): Promise<boolean> {
  const response = await f.post('/introspect', { auth: f.basic('orders-gateway'), form: { token } });
  assert.equal(response.statusCode, 200, response.body);
  return (response.json() as { active: boolean }).active;
}

const ordersToken = (f: BreakGlassFixture) => f.accessToken('broker-1', { resource: ordersApi, scope: 'order:create' });

const keyRequests = (f: BreakGlassFixture) => f.ctx.storage.db.selectFrom('approval_requests').selectAll().where('kind', '=', 'key_compromise').execute();

/** The reasons of the approval.refused events of request `id`, oldest first. */
const refusals = async (f: BreakGlassFixture, id: string) => (await f.auditEvents('approval.refused')).filter((e) => e.txn === id).map((e) => e.decision?.reasons[0]);

/** The consent grant personToken made for `username` (making it when needed). */
async function grantOf(f: BreakGlassFixture, username: string): Promise<string> {
  await f.personToken(username, 'approvals:decide');
  return (await f.ctx.storage.db.selectFrom('grants').select('id').where('user_id', '=', await f.userId(username)).executeTakeFirstOrThrow()).id;
}

/**
 * What a holder of our signing key can make: a token just like a person's admin token (fresh,
 * phishing-resistant), for `username`, under someone else's live consent grant.
 */
async function forged(f: BreakGlassFixture, username: string, grantId: string, scope: string): Promise<string> {
  const iat = Math.floor(f.clock.now() / 1000);
  return mintAccessToken(f.ctx.keys, {
    iss: f.issuer,
    aud: adminAudience(f.issuer),
    iat,
    exp: iat + 300,
    jti: newJti(),
    client_id: 'trading-ui',
    scope,
    sub: await f.userId(username),
    grant_id: grantId,
    acr: acr.phishingResistant,
    auth_time: iat,
    amr: ['hwk', 'user'],
  });
}

for (const dialect of testDialects()) {
  describe(`revoking a compromised key through the admin API on ${dialect.name}`, () => {
    test('refuses a body without compromised: true (naming the emergency path) or a reason, an unknown kid, and admin:read; nothing changes', async (t) => {
      const f = await harness(t, dialect);
      const token = await f.accessToken('admin-ops', { resource: f.admin, scope: 'admin:write' });
      for (const body of [{}, { compromised: false, reason: 'r' }, { reason: 'r' }]) {
        const error = assertOAuthError(await revoke(f, token, f.kid, body), 400, 'invalid_request', JSON.stringify(body));
        assert.match(String(error.error_description), /^revoke is the emergency path for a compromised signing key: it removes the key from the JWKS on every node at once/);
      }
      assert.match(String(assertOAuthError(await revoke(f, token, f.kid, { compromised: true }), 400, 'invalid_request').error_description), /reason is required/);
      assert.match(String(assertOAuthError(await revoke(f, token, f.kid, { compromised: true, reason: 'r', now: true }), 400, 'invalid_request').error_description), /unknown member now/);
      assert.match(String(assertOAuthError(await revoke(f, token, 'no-such-kid'), 404, 'not_found').error_description), /no signing key with kid .no-such-kid./);
      assertOAuthError(await revoke(f, token, '%E2%80%AE'), 404, 'not_found');
      assertOAuthError(await revoke(f, await f.accessToken('admin-viewer', { resource: f.admin }), f.kid), 403, 'insufficient_scope');
      assert.deepEqual(await published(f), [f.kid]);
      assert.deepEqual(await f.auditEvents('key.compromised'), []);
      assert.equal((await f.ctx.storage.db.selectFrom('approval_requests').selectAll().where('kind', '=', 'key_compromise').execute()).length, 0);
    });

    test('a person holding admin asks; the key stays until a second admin approves — never the requester — and then it is out', async (t) => {
      const f = await harness(t, dialect);
      const business = await ordersToken(f);
      assertOAuthError(await revoke(f, await f.personToken('eng', 'admin:write'), f.kid), 403, 'access_denied', 'a person without admin');

      const requesterToken = await f.personToken('sec-1', 'admin:write approvals:decide');
      const asked = await revoke(f, requesterToken, f.kid);
      assert.equal(asked.statusCode, 202, asked.body);
      assert.equal(asked.headers['cache-control'], 'no-store');
      const { revoke_request: requestId, required_approvals, kid } = asked.json() as { revoke_request: string; required_approvals: number; kid: string };
      assert.equal(kid, f.kid);
      assert.equal(required_approvals, 1);
      assertOAuthError(await revoke(f, requesterToken, f.kid), 409, 'invalid_request', 'one request at a time');

      // Until approved, nothing is revoked.
      assert.deepEqual(await published(f), [f.kid]);
      assert.equal(await introspect(f, business), true);
      assertOAuthError(await decide(f, requesterToken, requestId), 403, 'access_denied', 'the requester never approves');
      assertOAuthError(await decide(f, await f.personToken('eng', 'approvals:decide'), requestId), 403, 'access_denied', 'not a holder of admin');
      assert.deepEqual(await published(f), [f.kid]);

      const approverToken = await f.personToken('sec-2', 'approvals:decide');
      const offered = (await f.inject({ method: 'GET', url: '/admin/approvals', headers: { authorization: `Bearer ${approverToken}` } })).json() as { approvals: { id: string; title: string }[] };
      assert.deepEqual(offered.approvals.map((a) => [a.id, a.title]), [[requestId, `Revocation of compromised signing key ${f.kid}`]]);
      const approved = await decide(f, approverToken, requestId);
      assert.equal(approved.statusCode, 200, approved.body);
      assert.equal((approved.json() as { settled: string }).settled, 'approved');

      assert.equal((await published(f)).includes(f.kid), false);
      assert.equal(await introspect(f, business), false);
      assertOAuthError(await revoke(f, requesterToken, f.kid), 401, 'invalid_token', "the requester's own token was signed by the key");
      assert.equal((await findApprovalRequest(f.ctx.storage.db, requestId))!.status, 'consumed');
      const [event, ...more] = await f.auditEvents('key.compromised');
      assert.deepEqual(more, []);
      assert.equal(event!.txn, requestId);
      assert.equal(event!.actor, await f.userId('sec-1'));
      const details = event!.details!;
      assert.equal(details.via, 'approval');
      assert.equal(details.reason, 'the key was in a leaked backup');
      assert.deepEqual(details.approved_by, [await f.userId('sec-2')]);
      assert.equal(details.approval_request_id, requestId);
      assert.equal(details.promoted, 'generated');
      // New tokens carry the promoted key, and work.
      const fresh = await ordersToken(f);
      assert.equal(decodeJwt(fresh).header.kid, details.promoted_kid);
      assert.equal(await introspect(f, fresh), true);
    });

    test("a client's own token needs two approvals", async (t) => {
      const f = await harness(t, dialect);
      const asked = await revoke(f, await f.accessToken('admin-ops', { resource: f.admin, scope: 'admin:write' }), f.kid);
      assert.equal(asked.statusCode, 202, asked.body);
      const { revoke_request: requestId, required_approvals } = asked.json() as { revoke_request: string; required_approvals: number };
      assert.equal(required_approvals, 2);
      const first = await decide(f, await f.personToken('sec-1', 'approvals:decide'), requestId);
      assert.equal(first.statusCode, 200, first.body);
      assert.equal((first.json() as { settled?: string }).settled, undefined);
      assert.deepEqual(await published(f), [f.kid], 'one approval is not enough');
      f.clock.advance(1000);
      const second = await decide(f, await f.personToken('sec-2', 'approvals:decide'), requestId);
      assert.equal((second.json() as { settled?: string }).settled, 'approved');
      assert.equal((await published(f)).includes(f.kid), false);
      const [event] = await f.auditEvents('key.compromised');
      assert.deepEqual(event!.details!.approved_by, [await f.userId('sec-1'), await f.userId('sec-2')]);
      assert.equal(event!.details!.requester_type, 'client');
    });

    test('with a break-glass activation in force the key is revoked at once (200); the event names the activation', async (t) => {
      const f = await harness(t, dialect);
      const activation = await f.activate('bg-keys');
      const issued = await f.emergencyToken('bg-keys', { resource: f.admin });
      assert.equal(issued.statusCode, 200, issued.body);
      const emergency = (issued.json() as { access_token: string }).access_token;
      const response = await revoke(f, emergency, f.kid);
      assert.equal(response.statusCode, 200, response.body);
      const body = response.json() as Record<string, unknown>;
      assert.equal(body.kid, f.kid);
      assert.equal(body.state, 'compromised');
      assert.equal(body.previous_state, 'active');
      assert.equal(body.promoted, 'generated');
      assert.deepEqual(await published(f), [body.promoted_kid]);
      const [event] = await f.auditEvents('key.compromised');
      assert.equal(event!.actor, 'bg-keys');
      assert.equal(event!.txn, activation);
      assert.equal(event!.details!.break_glass, true);
      assert.equal(event!.details!.break_glass_activation, activation);
      assert.equal(event!.details!.via, 'break_glass');

      // The emergency token was signed by the revoked key; a new one works until the activation ends.
      assertOAuthError(await revoke(f, emergency, String(body.promoted_kid)), 401, 'invalid_token');
      const again = ((await f.emergencyToken('bg-keys', { resource: f.admin })).json() as { access_token: string }).access_token;
      assert.ok(await standDown(f.ctx, activation, await f.userId('cust-1')));
      assertOAuthError(await revoke(f, again, String(body.promoted_kid)), 401, 'invalid_token', 'an ended activation allows nothing');
      assert.deepEqual(await published(f), [body.promoted_kid]);
    });

    test('a reason holding a JWT, a PEM block, a reference token or control characters is refused (400) before anything is written, for a person and a break-glass token alike', async (t) => {
      const f = await harness(t, dialect);
      const person = await f.personToken('sec-1', 'admin:write');
      await f.activate('bg-keys');
      const emergency = ((await f.emergencyToken('bg-keys', { resource: f.admin })).json() as { access_token: string }).access_token;
      const leaked = await ordersToken(f);
      const b64 = (json: unknown) => Buffer.from(JSON.stringify(json)).toString('base64url');
      // A JWT short enough for the 500 characters (ours run longer), and one whose header does not begin with eyJ.
      const jwt = `${b64({ alg: 'ES256', typ: 'at+jwt' })}.${b64({ sub: 'broker-1' })}.${'s'.repeat(86)}`;
      const spaced = `${Buffer.from(' {"alg":"none"}').toString('base64url')}.${b64({ sub: 'x' })}.`;
      const reasons: [string, RegExp][] = [
        [`the token ${jwt} was posted in the incident channel`, /^the reason holds a JWT; say where the key or token was found, not what it is/],
        [`found it: ${spaced}`, /^the reason holds a JWT/],
        [leaked, /^the reason holds a JWT/],
        ['-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----', /^the reason holds a PEM block/],
        ['the public half -----BEGIN PUBLIC KEY----- was in the same file', /^the reason holds a PEM block/],
        ['the handle clr_at_3f9a1c0e was in a log line', /^the reason holds a reference token/],
        ['terminal junk \u001b[31mred', /control character/],
        ['a bell\u0007', /control character/],
        ['nul\u0000byte', /control character/],
      ];
      for (const token of [person, emergency]) {
        for (const [reason, description] of reasons) {
          const refused = assertOAuthError(await revoke(f, token, f.kid, { compromised: true, reason }), 400, 'invalid_request', JSON.stringify(reason));
          assert.match(String(refused.error_description), description, JSON.stringify(reason));
        }
      }
      // Nothing was written: no request, no event, the key published and its tokens alive.
      assert.deepEqual(await keyRequests(f), []);
      assert.deepEqual((await f.auditEvents('approval.requested')).filter((e) => e.details?.kind === 'key_compromise'), []);
      assert.deepEqual(await f.auditEvents('key.compromised'), []);
      assert.deepEqual(await published(f), [f.kid]);
      assert.equal(await introspect(f, leaked), true);
      const audit = await f.auditText();
      for (const pasted of [jwt, spaced, 'clr_at_3f9a1c0e', 'BEGIN PRIVATE KEY']) assert.equal(audit.includes(pasted), false, `${pasted} is nowhere in the audit log`);

      // Where it leaked, on several lines, is a reason.
      const asked = await revoke(f, person, f.kid, { compromised: true, reason: 'found in the incident channel\nat 02:10, posted by a contractor' });
      assert.equal(asked.statusCode, 202, asked.body);
      assert.equal((await keyRequests(f)).length, 1);
    });

    test('a token the key in question signed approves its revocation but never denies it; the refused denial is audited and changes nothing', async (t) => {
      const f = await harness(t, dialect);
      const asked = await revoke(f, await f.personToken('sec-1', 'admin:write'), f.kid);
      assert.equal(asked.statusCode, 202, asked.body);
      const { revoke_request: requestId } = asked.json() as { revoke_request: string };
      // Every admin token is signed by the key that signs now: the one being revoked.
      const approverToken = await f.personToken('sec-2', 'approvals:decide');
      assert.equal(decodeJwt(approverToken).header.kid, f.kid);

      assertOAuthError(await decide(f, approverToken, requestId, 'deny'), 403, 'access_denied', 'a forger of the key would deny its revocation');
      assert.deepEqual(await refusals(f, requestId), ['not_eligible: the token was signed by the key being revoked: whoever holds that key could have made it']);
      assert.equal((await findApprovalRequest(f.ctx.storage.db, requestId))!.status, 'pending');
      assert.deepEqual(await f.auditEvents('approval.denied'), []);
      assert.deepEqual(await published(f), [f.kid]);

      const approved = await decide(f, approverToken, requestId);
      assert.equal(approved.statusCode, 200, approved.body);
      assert.equal((approved.json() as { settled: string }).settled, 'approved');
      assert.equal((await published(f)).includes(f.kid), false);
    });

    test('a token signed by another key whose revocation waits neither asks, approves nor denies; a staged key in doubt is passed over when the signing key goes', async (t) => {
      const f = await harness(t, dialect);
      const staged = await f.ctx.keys.rotate('ES256', 600);
      const later = await f.ctx.keys.rotate('ES256', 1200);
      assert.deepEqual((await f.ctx.keys.list()).map((k) => [k.kid, k.state]), [[f.kid, 'active'], [staged.kid, 'next'], [later.kid, 'next']]);
      const requester = await f.personToken('sec-1', 'admin:write');
      const approverOld = await f.personToken('sec-2', 'approvals:decide');
      const client = await f.accessToken('admin-ops', { resource: f.admin, scope: 'admin:write' });
      for (const token of [requester, approverOld, client]) assert.equal(decodeJwt(token).header.kid, f.kid);

      // The staged key's revocation, asked while nobody doubts the signing key; then the signing key's own.
      const askedStaged = await revoke(f, requester, staged.kid);
      assert.equal(askedStaged.statusCode, 202, askedStaged.body);
      const stagedRequest = (askedStaged.json() as { revoke_request: string }).revoke_request;
      const askedActive = await revoke(f, requester, f.kid);
      assert.equal(askedActive.statusCode, 202, askedActive.body);
      const activeRequest = (askedActive.json() as { revoke_request: string }).revoke_request;

      // From now on the signing key's tokens vouch for nobody about any other key.
      const waits = `the token was signed by a key whose revocation as compromised waits for approval (request ${activeRequest})`;
      const refused = assertOAuthError(await revoke(f, client, later.kid), 403, 'access_denied', 'asking');
      assert.match(String(refused.error_description), new RegExp(`^${waits.replace(/[()]/g, '\\$&')}; revoke it with clearance keys revoke KID --compromised`));
      assertOAuthError(await decide(f, approverOld, stagedRequest), 403, 'access_denied', 'approving');
      assertOAuthError(await decide(f, approverOld, stagedRequest, 'deny'), 403, 'access_denied', 'denying');
      assert.deepEqual(await refusals(f, stagedRequest), [`not_eligible: ${waits}`, `not_eligible: ${waits}`]);
      assert.deepEqual((await keyRequests(f)).map((r) => [r.subject, r.status]).sort(), [[f.kid, 'pending'], [staged.kid, 'pending']].sort());
      assert.deepEqual((await published(f)).sort(), [f.kid, staged.kid, later.kid].sort());
      const listed = (await f.inject({ method: 'GET', url: '/admin/approvals', headers: { authorization: `Bearer ${approverOld}` } })).json() as { approvals: { id: string }[] };
      assert.deepEqual(listed.approvals.map((a) => a.id), [activeRequest], 'only the request its own key may approve is offered');

      // The signing key's revocation, approved with its own token: the staged key in doubt is passed
      // over, and the next staged key signs.
      const first = await decide(f, approverOld, activeRequest);
      assert.equal((first.json() as { settled?: string }).settled, 'approved', first.body);
      const [revokedActive] = await f.auditEvents('key.compromised');
      assert.equal(revokedActive!.details!.promoted_kid, later.kid, 'a staged key whose revocation waits is never promoted');
      assertOAuthError(await decide(f, approverOld, stagedRequest), 401, 'invalid_token', 'the revoked key verifies nothing');
      // Nor does the staged key in doubt sign later, when its own activation time comes: it verifies, never signs.
      f.clock.advance(700_000);
      const states = new Map((await f.ctx.keys.list()).map((k) => [k.kid, k.state]));
      assert.equal(states.get(staged.kid), 'superseded');
      assert.equal(states.get(later.kid), 'active');
      assert.equal(decodeJwt(await ordersToken(f)).header.kid, later.kid);

      // The later key now signs every admin token, and is in no doubt: its tokens decide the staged key's request.
      const approverNew = await f.personToken('sec-2', 'approvals:decide');
      assert.equal(decodeJwt(approverNew).header.kid, later.kid);
      const second = await decide(f, approverNew, stagedRequest);
      assert.equal((second.json() as { settled?: string }).settled, 'approved', second.body);
      const events = await f.auditEvents('key.compromised');
      assert.deepEqual(events.map((e) => e.subject), [f.kid, staged.kid]);
      assert.deepEqual((await f.ctx.keys.list()).map((k) => [k.kid, k.state]).sort(), [[f.kid, 'compromised'], [staged.kid, 'compromised'], [later.kid, 'active']].sort());
      assert.deepEqual(await published(f), [later.kid]);
      const fresh = await ordersToken(f);
      assert.equal(decodeJwt(fresh).header.kid, later.kid);
      assert.equal(await introspect(f, fresh), true);
    });

    test("two approvals settling at once — the signing key's revocation and the staged key's — both revoke, and one new key signs", async (t) => {
      const f = await harness(t, dialect);
      const staged = await f.ctx.keys.rotate('ES256', 600);
      const requester = await f.personToken('sec-1', 'admin:write');
      const ids: string[] = [];
      // The staged key's first: once the signing key's revocation waits, its tokens ask for no other key's.
      for (const kid of [staged.kid, f.kid]) {
        const asked = await revoke(f, requester, kid);
        assert.equal(asked.statusCode, 202, asked.body);
        ids.push((asked.json() as { revoke_request: string }).revoke_request);
      }
      // Approved with a passkey (the approvals page): no signing key vouches, so neither waits for the other's doubt.
      const approver = await f.approver('sec-2');
      const passkey = { method: 'passkey' as const, acr: acr.phishingResistant, amr: ['hwk', 'user'], evidence: {} };
      const outcomes = await Promise.all(ids.map((requestId) => decideApprovalRequest(f.ctx, keyCompromiseKind, { requestId, approver, proof: passkey, decision: 'approve' })));
      assert.deepEqual(outcomes.map((o) => (o.ok ? o.settled : o.refusal)), ['approved', 'approved']);
      f.ctx.keys.invalidate();
      const keys = await f.ctx.keys.list();
      const signing = keys.filter((k) => k.state === 'active');
      assert.equal(signing.length, 1, JSON.stringify(keys));
      assert.deepEqual(keys.filter((k) => k.kid === f.kid || k.kid === staged.kid).map((k) => k.state), ['compromised', 'compromised']);
      assert.deepEqual(await published(f), [signing[0]!.kid]);
      assert.deepEqual((await f.auditEvents('key.compromised')).map((e) => e.subject).sort(), [f.kid, staged.kid].sort());
      const fresh = await ordersToken(f);
      assert.equal(decodeJwt(fresh).header.kid, signing[0]!.kid);
      assert.equal(await introspect(f, fresh), true);
    });

    test("a token made with our key for one admin under another admin's grant neither asks nor decides", async (t) => {
      const f = await harness(t, dialect);
      const grant1 = await grantOf(f, 'sec-1');
      const grant2 = await grantOf(f, 'sec-2');

      const asking = assertOAuthError(await revoke(f, await forged(f, 'sec-1', grant2, 'admin:write'), f.kid), 403, 'access_denied', 'asking under sec-2’s grant');
      assert.equal(asking.error_description, "the token's consent grant is not its person's");
      assert.deepEqual(await keyRequests(f), []);

      const asked = await revoke(f, await f.personToken('sec-1', 'admin:write'), f.kid);
      assert.equal(asked.statusCode, 202, asked.body);
      const { revoke_request: requestId } = asked.json() as { revoke_request: string };
      assertOAuthError(await decide(f, await forged(f, 'sec-2', grant1, 'approvals:decide'), requestId), 403, 'access_denied', 'approving under sec-1’s grant');
      assert.deepEqual(await refusals(f, requestId), ["not_eligible: the token's consent grant is not its person's"]);
      assert.equal((await findApprovalRequest(f.ctx.storage.db, requestId))!.status, 'pending');
      assert.deepEqual(await published(f), [f.kid]);

      // The same claims under sec-2's own grant: it is the grant that was refused.
      const approved = await decide(f, await forged(f, 'sec-2', grant2, 'approvals:decide'), requestId);
      assert.equal((approved.json() as { settled?: string }).settled, 'approved', approved.body);
    });
  });
}
