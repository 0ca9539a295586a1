import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { adminAudience } from '../../../src/admin/authorize.ts';
import { executeApply, planApply } from '../../../src/apply/index.ts';
import type { StoredAuditEvent } from '../../../src/audit/events.ts';
import type { AuthorizationDetail } from '../../../src/authorization/authorization-details.ts';
import { ManualClock } from '../../../src/clock.ts';
import { loadConfig } from '../../../src/config.ts';
import type { Context } from '../../../src/context.ts';
import { buildApp } from '../../../src/http/app.ts';
import { acr } from '../../../src/identity/acr.ts';
import { verifyLogin } from '../../../src/identity/login.ts';
import { createLogger } from '../../../src/log.ts';
import { OAuthError } from '../../../src/oauth-error.ts';
import { authorizeIssuance, type Issuance } from '../../../src/policy/issuance.ts';
import { rescreenOnListChange, screenPerson } from '../../../src/risk/screening/screen.ts';
import { openContext } from '../../../src/server.ts';
import { mintAccessToken, newJti } from '../../../src/tokens/access-token.ts';
import type { AccessTokenClaims } from '../../../src/tokens/claims.ts';
import { formatProblem } from '../../../src/validation.ts';
import { assertOAuthError, basicAuthorization, decodeJwt, formBody, protocolFixture } from '../../endpoints/fixture.ts';
import { codeFlowFixture, webRedirect } from '../../authorization/fixture.ts';
import { testDialects, type TestDialect } from '../../helpers/storage.ts';

const exampleList = readFileSync(fileURLToPath(new URL('../../../examples/screening/list.csv', import.meta.url)), 'utf8');
/** The example list without some of its entries (the list before they were added). */
const listWithout = (...ids: string[]) => exampleList.split('\n').filter((line) => !ids.some((id) => line.startsWith(`${id},`))).join('\n');

const ordersApi = 'https://orders.example.com/api';
const fshLei = '5299000FICTSHIP00137';
const ivanPassword = 'ivan-correct-horse-61';

/** A list file the test replaces atomically (a new file renamed over it), as operators are told to. */
function listFile(t: Pick<TestContext, 'after'>, text: string): { path: string; replace(text: string): void } {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-screening-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'list.csv');
  let n = 0;
  const replace = (content: string) => {
    const next = join(dir, `next-${n++}.csv`);
    writeFileSync(next, content);
    renameSync(next, path);
  };
  replace(text);
  return { path, replace };
}

/** Two nodes — two contexts, each with its own clock and caches — on one database. */
async function twoNodes(t: Pick<TestContext, 'after'>, dialect: TestDialect, list: string): Promise<{ a: Context; b: Context; clockA: ManualClock; clockB: ManualClock }> {
  const database = await dialect.create();
  const dataDir = mkdtempSync(join(tmpdir(), 'clearance-test-data-'));
  const config = loadConfig({ CLEARANCE_DATA_DIR: dataDir, CLEARANCE_SCREENING_LIST: list });
  const clockA = new ManualClock();
  const clockB = new ManualClock(clockA.now());
  const a = await openContext(config, { clock: clockA, log: createLogger('silent'), storage: database.storage });
  const b = await openContext(config, { clock: clockB, log: createLogger('silent'), storage: database.connect() });
  t.after(async () => {
    for (const ctx of [a, b]) await (ctx.audit as { close?: () => Promise<void> }).close?.();
    await database.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  });
  return { a, b, clockA, clockB };
}

async function apply(ctx: Context, document: Record<string, unknown>): Promise<Record<string, string>> {
  const { plan, problems } = await planApply(ctx, document);
  if (!plan) assert.fail(problems.map(formatProblem).join('\n'));
  return (await executeApply(ctx, plan, { actor: 'test', via: 'cli' })).secrets;
}

async function events(ctx: Context, type: string): Promise<StoredAuditEvent[]> {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', type).orderBy('seq').execute();
  return rows.map((r) => JSON.parse(r.event) as StoredAuditEvent);
}

async function alerts(ctx: Context, type: string): Promise<Record<string, unknown>[]> {
  const rows = await ctx.storage.db.selectFrom('alerts').select('data').where('type', '=', type).orderBy('created_at').execute();
  return rows.map((r) => JSON.parse(r.data) as Record<string, unknown>);
}

async function userId(ctx: Context, username: string): Promise<string> {
  return (await ctx.storage.db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirstOrThrow()).id;
}

const broker = { lei: '5493001KJTIIGC8Y1R12', name: 'Example Broker Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'fx-spot', product_classes: ['fx'] }] };
const shipping = { lei: fshLei, name: 'Fictitious Shipping Holdings Limited', jurisdiction: 'GB', home_region: 'uk', roles: ['custodian'] };

const issuanceFor = (subject: Issuance['subject'], extra: Partial<Issuance> = {}): Issuance => ({
  subject,
  clientId: 'desk-app',
  audience: ordersApi,
  scopes: ['position:view'],
  authorizationDetails: [],
  requestId: 'r1',
  grantType: 'authorization_code',
  ...extra,
});

for (const dialect of testDialects()) {
  describe(`sanctions screening across nodes on ${dialect.name}`, () => {
    test('a screening hit at sign-in freezes the person and alerts; they may still sign in, and no node issues them a token', async (t) => {
      const list = listFile(t, listWithout('SAN-0001'));
      const { a, b, clockB } = await twoNodes(t, dialect, list.path);
      await apply(a, {
        regions: [{ id: 'uk' }],
        legal_entities: [broker],
        resource_servers: [{ identifier: ordersApi, scopes: ['position:view', 'order:create'] }],
        users: [{ username: 'ivan', password: ivanPassword, name: 'Ivan Petrov', desks: ['fx-spot'], attributes: { date_of_birth: '1961-07-14' }, kyc: { status: 'verified' } }],
      });
      const ivan = await userId(a, 'ivan');
      // Not on the list yet: node B issues.
      assert.equal((await authorizeIssuance(b, issuanceFor({ type: 'User', id: ivan }))).allows.length, 1);

      // The list now names him; node A has read the new file (the re-screening pass has not run).
      list.replace(exampleList);
      assert.equal(a.risk.screening.reload(), true);
      const login = await verifyLogin(a, { username: 'ivan', password: ivanPassword, sourceAddress: '192.0.2.7' });
      assert.equal(login.ok, true, 'a frozen person may sign in (to their account pages)');

      const kyc = await a.risk.kyc.get({ type: 'User', id: ivan });
      assert.equal(kyc?.status, 'frozen');
      assert.equal(kyc?.previousStatus, 'verified');
      const [matched] = await events(a, 'screening.matched');
      assert.deepEqual({ ...matched!.details, match_id: undefined, list_digest: undefined }, {
        match_id: undefined,
        principal_type: 'User',
        principal_id: ivan,
        entry_id: 'SAN-0001',
        list: 'sanctions',
        programme: 'EXAMPLE-EAST (fictitious)',
        matched_on: ['name', 'alias', 'date_of_birth'],
        list_digest: undefined,
        at: 'sign_in',
      });
      const frozen = (await events(a, 'kyc.updated')).filter((e) => e.details!.via === 'screening');
      assert.equal(frozen.length, 1);
      assert.equal((frozen[0]!.details!.after as Record<string, unknown>).status, 'frozen');
      assert.equal((await alerts(a, 'screening.matched'))[0]!.entry_id, 'SAN-0001');
      assert.equal((await alerts(a, 'kyc.frozen')).length, 1);
      // The audit log names the person by id only: never their name or date of birth.
      const auditText = (await a.storage.db.selectFrom('audit_events').select('event').execute()).map((r) => r.event).join('\n');
      assert.doesNotMatch(auditText, /Ivan Petrov|1961-07-14/);

      // Node B sees the freeze once its KYC cache checks the generation (at most a second later).
      clockB.advance(1001);
      for (const scopes of [['position:view'], ['order:create']]) {
        await assert.rejects(authorizeIssuance(b, issuanceFor({ type: 'User', id: ivan }, { scopes })), (error: OAuthError) => {
          assert.equal(error.error, 'invalid_grant');
          // Nothing tells the client why (no tipping-off); the audit event does.
          assert.doesNotMatch(error.description!, /frozen|sanction|screen/i);
          return true;
        });
      }
      // Whatever the policies: with none active, and for Clearance's own userinfo too.
      await assert.rejects(authorizeIssuance(b, issuanceFor({ type: 'User', id: ivan }, { audience: `${b.config.issuer}/userinfo` })), (error: OAuthError) => error.error === 'invalid_grant');
      const denied = (await events(b, 'policy.denied')).filter((e) => e.decision!.reasons.includes('kyc-frozen'));
      assert.equal(denied.length, 3);
      assert.equal(denied[0]!.details!.frozen, `User::"${ivan}"`);
      // Signing in again on node B still works, and matches nothing new there.
      assert.equal((await verifyLogin(b, { username: 'ivan', password: ivanPassword, sourceAddress: '192.0.2.8' })).ok, true);
      assert.equal((await events(a, 'screening.matched')).length, 1);
    });

    test('a list change re-screens everyone once, on one node; a frozen firm\'s client gets no token over HTTP', async (t) => {
      const list = listFile(t, listWithout('SAN-0002', 'SAN-E001'));
      const { a, b, clockA } = await twoNodes(t, dialect, list.path);
      const secrets = await apply(a, {
        regions: [{ id: 'uk' }],
        legal_entities: [broker, shipping],
        resource_servers: [{ identifier: ordersApi, scopes: ['position:view'] }],
        clients: [{ client_id: 'fsh-service', kind: 'service', owner_lei: fshLei, grant_types: ['client_credentials'], scope: 'position:view' }],
        users: [{ username: 'maria', name: 'José María Núñez García', attributes: { date_of_birth: '1970-03-15' } }],
      });
      const token = (app: ReturnType<typeof buildApp>) =>
        app.inject({ method: 'POST', url: '/token', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('fsh-service', secrets['fsh-service']!) }, payload: formBody({ grant_type: 'client_credentials', resource: ordersApi }) });
      const appA = buildApp(a);
      t.after(() => appA.close());
      assert.equal((await token(appA)).statusCode, 200);

      // The first list a node holds is screened against once, by one node.
      assert.equal(await rescreenOnListChange(a), true);
      assert.equal(await rescreenOnListChange(b), false);
      assert.equal(await rescreenOnListChange(a), false);
      assert.equal((await events(a, 'screening.matched')).length, 0);

      list.replace(exampleList);
      assert.equal(await rescreenOnListChange(b), true, 'node B reads the new file and re-screens everyone');
      assert.equal(await rescreenOnListChange(a), false, 'node A reads it too: screened already');
      const matched = await events(a, 'screening.matched');
      assert.deepEqual(matched.map((e) => [e.details!.principal_type, e.details!.entry_id, e.details!.matched_on, e.details!.at]), [
        ['User', 'SAN-0002', ['name', 'date_of_birth'], 'list_change'],
        ['LegalEntity', 'SAN-E001', ['lei', 'name'], 'list_change'],
      ]);
      // Node A sees node B's freeze once its KYC cache checks the generation (at most a second later).
      clockA.advance(1001);
      assert.equal((await a.risk.kyc.get({ type: 'LegalEntity', id: fshLei }))?.status, 'frozen');
      // The firm is frozen: its client's token is refused on node A, over HTTP.
      const refused = assertOAuthError(await token(appA), 400, 'invalid_grant');
      assert.doesNotMatch(String(refused.error_description), /frozen|sanction/i);

      // An older file on one node does not screen everyone again against it.
      list.replace(listWithout('SAN-0002', 'SAN-E001'));
      assert.equal(await rescreenOnListChange(a), false);
    });
  });
}

/** A screening list, people and a compliance console client; tokens of its people for the admin API. */
async function decisionFixture(t: TestContext, list: string) {
  const f = await codeFlowFixture(t, { env: { CLEARANCE_SCREENING_LIST: list }, risk: 'off' });
  // The fixture's people first (f.user remembers their ids), then their roles.
  for (const username of ['cora', 'adam']) await f.user(username);
  await f.apply({
    users: [
      { username: 'cora', name: 'Cora Compliance', roles: ['compliance'] },
      { username: 'adam', name: 'Adam Admin', roles: ['admin'] },
      // Screened at apply time: a namesake without a date of birth (a false positive), and the listed person.
      { username: 'hans', name: 'Hans Müller', kyc: { status: 'verified', level: 'standard' } },
      { username: 'ivan', name: 'PETROV Ivan', attributes: { date_of_birth: '1961-07-14' }, kyc: { status: 'pending' } },
    ],
    clients: [{ client_id: 'kyc-console', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [webRedirect], scope: 'admin:read admin:write screening:decide' },
      // A service registered for the decision's scope: its own token is still no person's.
      { client_id: 'kyc-service', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'admin:read screening:decide' },
    ],
  });
  // Tokens issued in the second the people were changed would count as issued before it.
  f.clock.advance(2000);
  /** A person's token from the console, signed in at `level` (a passkey unless told). */
  const personToken = async (username: string, level: string = acr.phishingResistant): Promise<string> => {
    const signedIn = await f.signIn(username, { acr: level, amr: level === acr.password ? ['pwd'] : ['hwk', 'user', 'mfa'] });
    const { code, pkce } = await f.authorizeAndApprove({ client: 'kyc-console', person: signedIn, query: { scope: 'admin:read admin:write screening:decide', resource: adminAudience(f.issuer) } });
    const redeemed = await f.redeem('kyc-console', code, pkce.verifier);
    assert.equal(redeemed.statusCode, 200, redeemed.body);
    return redeemed.json().access_token as string;
  };
  const call = (method: 'GET' | 'POST' | 'PUT', url: string, token: string, body?: unknown) =>
    f.inject({ method, url, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { payload: JSON.stringify(body) } : {}) });
  const viewer = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
  const openMatches = async () => (await call('GET', '/admin/screening/matches?status=open', viewer)).json().matches as Record<string, unknown>[];
  return { f, personToken, call, viewer, openMatches };
}

describe('compliance decisions on screening matches', () => {
  test('clearing a false positive restores the status and keeps the entry from matching again until it changes; confirming holds the freeze', async (t) => {
    const list = listFile(t, exampleList);
    const { f, personToken, call, viewer, openMatches } = await decisionFixture(t, list.path);
    const admin = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
    const compliance = await personToken('cora');
    const kycOf = async (username: string) => (await call('GET', `/admin/kyc/users/${username}`, viewer)).json() as Record<string, unknown>;

    const open = await openMatches();
    assert.deepEqual(open.map((m) => [(m.principal as { username: string }).username, m.entry_id, m.matched_on]).sort(), [
      ['hans', 'SAN-0004', ['name']],
      ['ivan', 'SAN-0001', ['name', 'alias', 'date_of_birth']],
    ]);
    assert.equal((await kycOf('hans')).status, 'frozen');
    const hansMatch = open.find((m) => m.entry_id === 'SAN-0004')!.id as string;
    const ivanMatch = open.find((m) => m.entry_id === 'SAN-0001')!.id as string;

    assertOAuthError(await call('POST', `/admin/screening/matches/${hansMatch}/decision`, viewer, { decision: 'clear', reason: 'different person: born 1988' }), 403, 'insufficient_scope');
    // admin:write is not the decision's scope: an administrator changes records, compliance decides matches.
    assertOAuthError(await call('POST', `/admin/screening/matches/${hansMatch}/decision`, admin, { decision: 'clear', reason: 'different person: born 1988' }), 403, 'insufficient_scope');
    assertOAuthError(await call('POST', `/admin/screening/matches/${hansMatch}/decision`, compliance, { decision: 'clear' }), 400, 'invalid_request');
    assertOAuthError(await call('POST', `/admin/screening/matches/${hansMatch}/decision`, compliance, { decision: 'forget', reason: 'x' }), 400, 'invalid_request');
    assertOAuthError(await call('POST', '/admin/screening/matches/00000000-0000-0000-0000-000000000000/decision', compliance, { decision: 'clear', reason: 'x' }), 404, 'not_found');
    const cleared = await call('POST', `/admin/screening/matches/${hansMatch}/decision`, compliance, { decision: 'clear', reason: 'different person: born 1988' });
    assert.equal(cleared.statusCode, 200, cleared.body);
    assert.equal(cleared.json().status, 'cleared');
    assert.equal((await kycOf('hans')).status, 'verified', 'the status the freeze kept');
    assertOAuthError(await call('POST', `/admin/screening/matches/${hansMatch}/decision`, compliance, { decision: 'confirm', reason: 'again' }), 409, 'invalid_request');
    const [decided] = await f.auditEvents('screening.decided');
    assert.deepEqual({ ...decided!.details, principal_id: undefined }, { match_id: hansMatch, principal_type: 'User', principal_id: undefined, entry_id: 'SAN-0004', list: 'sanctions', decision: 'clear', reason: 'different person: born 1988' });
    assert.equal(decided!.actor, await f.user('cora'));

    // The same entry does not match him again: at sign-in, at the next apply.
    const hans = { id: (await kycOf('hans')).principal as { id: string } };
    assert.deepEqual(await screenPerson(f.ctx, { id: hans.id.id, name: 'Hans Müller', attributes: {} }, 'sign_in'), []);
    // Until the entry changes.
    list.replace(exampleList.replace('EXAMPLE-WEST (fictitious)', 'EXAMPLE-WEST-2 (fictitious)'));
    f.ctx.risk.screening.reload();
    assert.equal((await screenPerson(f.ctx, { id: hans.id.id, name: 'Hans Müller', attributes: {} }, 'sign_in')).length, 1);
    assert.equal((await kycOf('hans')).status, 'frozen');

    // Confirmed: frozen it stays, and an administrator cannot lift it around the decision.
    const confirmed = await call('POST', `/admin/screening/matches/${ivanMatch}/decision`, compliance, { decision: 'confirm', reason: 'true match: passport checked' });
    assert.equal(confirmed.statusCode, 200, confirmed.body);
    assert.equal((await kycOf('ivan')).status, 'frozen');
    const lift = await call('PUT', '/admin/kyc/users/ivan', admin, { status: 'verified' });
    assert.match(String(assertOAuthError(lift, 409, 'invalid_request').error_description), /confirmed screening match/);
    // Delisted later: compliance clears the confirmed match, and he returns to what he was.
    const delisted = await call('POST', `/admin/screening/matches/${ivanMatch}/decision`, compliance, { decision: 'clear', reason: 'delisted' });
    assert.equal(delisted.statusCode, 200, delisted.body);
    assert.equal((await kycOf('ivan')).status, 'pending');
    const screening = (await call('GET', '/admin/screening', viewer)).json();
    assert.equal(screening.configured, true);
    assert.equal(screening.entries, 7);
  });

  test("only a person holding compliance decides a match, with their own token signed in phishing-resistantly: a client's token, a delegate's, another role's are refused 403, a password sign-in 401, and each refusal is audited", async (t) => {
    const { f, personToken, call, openMatches } = await decisionFixture(t, listFile(t, exampleList).path);
    const hansMatch = (await openMatches()).find((m) => m.entry_id === 'SAN-0004')!.id as string;
    const cora = await personToken('cora');
    const { payload } = decodeJwt(cora);
    const delegated = await mintAccessToken(f.ctx.keys, { ...(payload as unknown as AccessTokenClaims), jti: newJti(), act: { sub: 'some-agent-client' } });
    const refused: [string, string, number, string][] = [
      ['client_token', await f.accessToken('kyc-service', { resource: adminAudience(f.issuer), scope: 'screening:decide' }), 403, 'access_denied'],
      ['delegated_token', delegated, 403, 'access_denied'],
      ['not_compliance', await personToken('adam'), 403, 'access_denied'],
      // A new sign-in cures this one: RFC 9470 step-up.
      ['insufficient_authentication', await personToken('cora', acr.password), 401, 'insufficient_user_authentication'],
    ];
    for (const [why, token, status, error] of refused) {
      for (const decision of ['clear', 'confirm']) {
        const response = await call('POST', `/admin/screening/matches/${hansMatch}/decision`, token, { decision, reason: 'namesake' });
        assertOAuthError(response, status, error, why);
      }
      assert.equal((await openMatches()).length, 2, `${why}: nothing decided`);
    }
    const events = await f.auditEvents('screening.refused');
    assert.deepEqual(events.map((e) => [e.decision!.reasons[0], e.details!.match_id, e.details!.decision]), refused.flatMap(([why]) => [[why, hansMatch, 'clear'], [why, hansMatch, 'confirm']]));
    assert.equal((await f.auditEvents('screening.decided')).length, 0);
    // A compliance person signed in with a passkey decides it.
    const cleared = await call('POST', `/admin/screening/matches/${hansMatch}/decision`, cora, { decision: 'clear', reason: 'namesake' });
    assert.equal(cleared.statusCode, 200, cleared.body);
  });

  test('a decision needs a sign-in of the last 5 minutes: a compliance token standing on an older one (as the console renews it) is answered 401 insufficient_user_authentication with acr_values and max_age (RFC 9470 §3), audited, nothing decided', async (t) => {
    const { f, personToken, call, openMatches } = await decisionFixture(t, listFile(t, exampleList).path);
    const hansMatch = (await openMatches()).find((m) => m.entry_id === 'SAN-0004')!.id as string;
    const { payload } = decodeJwt(await personToken('cora'));
    /** Cora's token minted now over a sign-in `seconds` old. */
    const signedInAgo = (seconds: number) => mintAccessToken(f.ctx.keys, { ...(payload as unknown as AccessTokenClaims), jti: newJti(), auth_time: Math.floor(f.clock.now() / 1000) - seconds });

    for (const decision of ['clear', 'confirm']) {
      const stale = await call('POST', `/admin/screening/matches/${hansMatch}/decision`, await signedInAgo(301), { decision, reason: 'namesake' });
      const body = assertOAuthError(stale, 401, 'insufficient_user_authentication', decision);
      assert.deepEqual([body.acr_values, body.max_age], [acr.phishingResistant, 300]);
      assert.match(String(body.error_description), /last 5 minutes/);
      assert.match(String(stale.headers['www-authenticate']), /^Bearer realm="clearance", error="insufficient_user_authentication", .*acr_values="urn:clearance:acr:phr", max_age=300$/);
    }
    assert.equal((await openMatches()).length, 2, 'nothing decided');
    const refused = await f.auditEvents('screening.refused');
    assert.deepEqual(refused.map((e) => [e.actor, e.decision!.reasons[0], e.details!.decision, e.details!.max_age, e.details!.outcome]), [
      [await f.user('cora'), 'stale_authentication', 'clear', 300, 'challenged'],
      [await f.user('cora'), 'stale_authentication', 'confirm', 300, 'challenged'],
    ]);
    // Exactly five minutes old is still fresh.
    const cleared = await call('POST', `/admin/screening/matches/${hansMatch}/decision`, await signedInAgo(300), { decision: 'clear', reason: 'namesake' });
    assert.equal(cleared.statusCode, 200, cleared.body);
  });
});

describe('a freeze of another source and a screening match', () => {
  test("clearing a match lifts only the freeze screening put there: an administrator's freeze, before the hit or after it, stays until the administrator lifts it", async (t) => {
    const list = listFile(t, listWithout('SAN-0004'));
    const { f, personToken, call, viewer, openMatches } = await decisionFixture(t, list.path);
    const admin = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
    const compliance = await personToken('cora');
    const kycOf = async (username: string) => (await call('GET', `/admin/kyc/users/${username}`, viewer)).json() as Record<string, unknown>;
    const decide = async (entry: string, reason: string) => {
      const id = (await openMatches()).find((m) => m.entry_id === entry)!.id as string;
      const response = await call('POST', `/admin/screening/matches/${id}/decision`, compliance, { decision: 'clear', reason });
      assert.equal(response.statusCode, 200, response.body);
    };

    // The administrator's freeze first, then the hit (hans is not on the list yet).
    assert.equal((await kycOf('hans')).status, 'verified');
    const frozen = await call('PUT', '/admin/kyc/users/hans', admin, { status: 'frozen', level: 'standard', reason: 'fraud investigation' });
    assert.equal(frozen.statusCode, 200, frozen.body);
    list.replace(exampleList);
    f.ctx.risk.screening.reload();
    const hans = (await kycOf('hans')).principal as { id: string };
    assert.equal((await screenPerson(f.ctx, { id: hans.id, name: 'Hans Müller', attributes: {} }, 'sign_in')).length, 1);
    await decide('SAN-0004', 'namesake: born 1988');
    const kept = await kycOf('hans');
    assert.equal(kept.status, 'frozen', "the administrator's freeze stays");
    assert.equal(kept.previous_status, 'verified');
    const [decided] = (await f.auditEvents('screening.decided')).filter((e) => e.details!.entry_id === 'SAN-0004');
    assert.equal(decided!.details!.freeze_kept_by, 'admin:admin-ops');
    const lifted = await call('PUT', '/admin/kyc/users/hans', admin, { status: 'verified', level: 'standard', reason: 'investigation closed' });
    assert.equal(lifted.statusCode, 200, lifted.body);
    assert.equal((await kycOf('hans')).status, 'verified');

    // The hit first (ivan, at apply), then the administrator freezes him for another reason.
    assert.equal((await kycOf('ivan')).status, 'frozen');
    const refrozen = await call('PUT', '/admin/kyc/users/ivan', admin, { status: 'frozen', reason: 'court order' });
    assert.equal(refrozen.statusCode, 200, refrozen.body);
    await decide('SAN-0001', 'namesake: another passport');
    assert.equal((await kycOf('ivan')).status, 'frozen', "the administrator's freeze stays");
    const thawed = await call('PUT', '/admin/kyc/users/ivan', admin, { status: 'pending', reason: 'court order lifted' });
    assert.equal(thawed.statusCode, 200, thawed.body);
    assert.equal((await kycOf('ivan')).status, 'pending');
  });

  test("an administrator's edit that names no status does not hold screening's freeze: clearing the match lifts it; a patch naming frozen holds it", async (t) => {
    const { f, personToken, call, viewer, openMatches } = await decisionFixture(t, listFile(t, exampleList).path);
    const admin = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
    const compliance = await personToken('cora');
    const kycOf = async (username: string) => (await call('GET', `/admin/kyc/users/${username}`, viewer)).json() as Record<string, unknown>;
    const patch = (username: string, body: unknown) =>
      f.inject({ method: 'PATCH', url: `/admin/kyc/users/${username}`, headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/merge-patch+json' }, payload: JSON.stringify(body) });
    const clear = async (entry: string) => {
      const id = (await openMatches()).find((m) => m.entry_id === entry)!.id as string;
      const response = await call('POST', `/admin/screening/matches/${id}/decision`, compliance, { decision: 'clear', reason: 'namesake' });
      assert.equal(response.statusCode, 200, response.body);
    };

    // Both frozen by their hits at apply. hans's evidence is corrected: screening alone still holds his freeze.
    const corrected = await patch('hans', { evidence_ref: 'IDV-CASE-2000' });
    assert.equal(corrected.statusCode, 200, corrected.body);
    assert.equal(corrected.json().frozen_by, undefined, 'an edit is no freeze of its own');
    await clear('SAN-0004');
    assert.equal((await kycOf('hans')).status, 'verified', "clearing the match lifts screening's freeze");

    // ivan: the administrator says frozen, explicitly: that freeze is theirs and stays.
    const claimed = await patch('ivan', { status: 'frozen', reason: 'court order' });
    assert.equal(claimed.statusCode, 200, claimed.body);
    assert.equal(claimed.json().frozen_by, 'admin:admin-ops');
    await clear('SAN-0001');
    assert.equal((await kycOf('ivan')).status, 'frozen');
  });
});

describe('counterparty screening at issuance', () => {
  test('a settlement instruction to a listed counterparty, by LEI or by name, is refused and audited whatever the policy; a clean one passes', async (t) => {
    const list = listFile(t, exampleList);
    const f = await protocolFixture(t, { env: { CLEARANCE_SCREENING_LIST: list.path } });
    await f.apply({ users: [{ username: 'alice', name: 'Alice Trader', kyc: { status: 'verified' } }] });
    const alice = await userId(f.ctx, 'alice');
    const instruction = (counterparty: { counterparty_lei: string; counterparty_name?: string }): AuthorizationDetail => ({
      type: 'settlement_instruction',
      settlement_type: 'dvp',
      account: 'GB-FX-001',
      max_amount: { amount: '1000000', currency: 'USD' },
      ...counterparty,
    });
    const issuance = (details: AuthorizationDetail[]) => issuanceFor({ type: 'User', id: alice }, { audience: 'https://clearing.example.com', scopes: ['settlement:submit'], authorizationDetails: details });
    // No policy set is active: the baseline allows what registration allows.
    assert.equal((await authorizeIssuance(f.ctx, issuance([instruction({ counterparty_lei: '5493001KJTIIGC8Y1R12', counterparty_name: 'Example Broker Ltd' })]))).allows.length, 1);
    for (const counterparty of [{ counterparty_lei: fshLei }, { counterparty_lei: '5493001KJTIIGC8Y1R12', counterparty_name: 'E.E.T.C.' }] as { counterparty_lei: string; counterparty_name?: string }[]) {
      await assert.rejects(authorizeIssuance(f.ctx, issuance([instruction({ counterparty_lei: '5493001KJTIIGC8Y1R12' }), instruction(counterparty)])), (error: OAuthError) => {
        assert.equal(error.error, 'invalid_authorization_details');
        assert.match(error.description!, /^authorization_details\[1\] names a counterparty that cannot be accepted at present$/);
        return true;
      });
    }
    const denied = (await f.auditEvents('policy.denied')).filter((e) => e.decision!.reasons.includes('counterparty-screening'));
    assert.deepEqual(denied.map((e) => [e.details!.authorization_details, e.details!.entry_id, e.details!.matched_on]), [
      [1, 'SAN-E001', ['lei']],
      [1, 'SAN-E002', ['alias']],
    ]);
    assert.deepEqual((await alerts(f.ctx, 'screening.matched')).map((a) => [a.entry_id, a.at, a.refused]), [
      ['SAN-E001', 'issuance', true],
      ['SAN-E002', 'issuance', true],
    ]);
  });

  test('a listed counterparty name disguised by invisible characters or look-alike letters is refused at issuance all the same', async (t) => {
    const f = await protocolFixture(t, { env: { CLEARANCE_SCREENING_LIST: listFile(t, exampleList).path } });
    await f.apply({ users: [{ username: 'alice', name: 'Alice Trader', kyc: { status: 'verified' } }] });
    const alice = await userId(f.ctx, 'alice');
    // Straight to issuance, as a stored grant's details come (a refresh, an exchange): the request's
    // validation, which refuses these names, is not what stops them here.
    // (A word joiner between two words, `Example\u2060Embargoed`, reads `ExampleEmbargoed` and is
    // screened as that one word: the request's validation is what refuses it.)
    const disguised = ['Example Embar\u200Bgoed Trading LLC', 'Example Embar\u00ADgoed Trading LLC', 'Example Embar\u2060goed Trading LLC\uFEFF', 'Ex\u0430mple Embargoed Trading LLC', 'EXAMPL\u0415 EMBARGOED TRADING LLC'];
    for (const counterparty_name of disguised) {
      const detail: AuthorizationDetail = { type: 'settlement_instruction', settlement_type: 'dvp', account: 'GB-FX-001', max_amount: { amount: '1000000', currency: 'USD' }, counterparty_lei: '5493001KJTIIGC8Y1R12', counterparty_name };
      await assert.rejects(authorizeIssuance(f.ctx, issuanceFor({ type: 'User', id: alice }, { audience: 'https://clearing.example.com', scopes: ['settlement:submit'], authorizationDetails: [detail] })), (error: OAuthError) => error.error === 'invalid_authorization_details', JSON.stringify(counterparty_name));
    }
    const denied = (await f.auditEvents('policy.denied')).filter((e) => e.decision!.reasons.includes('counterparty-screening'));
    assert.deepEqual(denied.map((e) => [e.details!.entry_id, e.details!.matched_on]), disguised.map(() => ['SAN-E002', ['name']]));
  });
});
