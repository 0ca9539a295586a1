import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { LightMyRequestResponse } from 'fastify';
import { nextStep, recordAuthentication } from '../../src/authorization/interactions.ts';
import { codeFlowFixture, webRedirect } from '../authorization/fixture.ts';
import { cibaFixture, cibaGrant } from '../ciba/fixture.ts';
import { brokerLei, custodyApi, events, iban, seedDestination, transfer, transferDocument, transferEntities } from './enforcement-fixture.ts';

// An IBAN transfer that names no beneficiary is screened by its address book's name
// (src/transfers/beneficiary-name.ts, docs/transfers.md "A beneficiary's name") wherever the token
// endpoint's own check runs: before a person is shown consent at /authorize and before a
// backchannel authentication request is opened at /bc-authorize, as at the token endpoint — nobody
// is asked to approve a transfer to a listed beneficiary the token endpoint would refuse.

type Json = Record<string, unknown>;
const screeningList = fileURLToPath(new URL('../../examples/screening/list.csv', import.meta.url));
const refusedDescription = 'authorization_details[0] names a counterparty that cannot be accepted at present';
/** A nameless IBAN destination: the request names no beneficiary. */
const nameless = { kind: 'iban' as const, iban, bic: 'COBADEFFXXX' };
/** The book's name for it, listed (SAN-E001) after the destination was approved. */
const listedName = 'Fictitious Shipping Holdings Ltd';

/** The broker's book: TRE-001's IBAN named by a listed firm, TRE-002's by a clean one; CRY-001's by the listed firm, still cooling down. */
async function seedBook(ctx: Parameters<typeof seedDestination>[0]): Promise<void> {
  await seedDestination(ctx, { destination: { ...nameless, name: listedName }, state: 'usable' });
  await seedDestination(ctx, { account: 'TRE-002', destination: { ...nameless, name: 'Example Supplier GmbH' }, state: 'usable' });
  await seedDestination(ctx, { account: 'CRY-001', destination: { ...nameless, name: listedName }, state: 'cooling_down' });
}

async function screenedAudit(ctx: Parameters<typeof events>[0]) {
  const denied = (await events(ctx, 'policy.denied')).filter((e) => e.decision!.reasons.includes('counterparty-screening'));
  return denied.map((e) => [e.details!.authorization_details, e.details!.counterparty, e.details!.entry_id, e.details!.via]);
}

async function codeFlow(t: TestContext) {
  const f = await codeFlowFixture(t, { env: { CLEARANCE_SCREENING_LIST: screeningList } });
  await f.apply({
    ...transferEntities,
    resource_servers: transferDocument.resource_servers,
    clients: [{ client_id: 'treasury-web', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [webRedirect], scope: 'openid transfer:withdrawal' }],
  });
  await seedBook(f.ctx);
  const query = (source: string) => f.request('treasury-web', { scope: 'transfer:withdrawal', resource: custodyApi, authorization_details: JSON.stringify([transfer({ source_account: source, destination: nameless })]) });
  return { f, query };
}

function errorRedirect(response: LightMyRequestResponse, error: string): URL {
  assert.equal(response.statusCode, 303, response.body);
  const location = new URL(String(response.headers.location));
  assert.equal(`${location.origin}${location.pathname}`, webRedirect, `an error redirect, not ${location.href}`);
  assert.equal(location.searchParams.get('error'), error, location.href);
  return location;
}

describe("a nameless IBAN transfer whose address book names a listed beneficiary, before anyone is asked", () => {
  test('/authorize refuses it with invalid_authorization_details, audited and alerted, instead of showing consent — signed in already, or signing in during the request', async (t) => {
    const { f, query } = await codeFlow(t);
    const person = await f.signIn('alice');

    const atOnce = errorRedirect((await f.authorize(query('TRE-001'), { cookie: person.cookie })).response, 'invalid_authorization_details');
    assert.equal(atOnce.searchParams.get('error_description'), refusedDescription, 'as at the token endpoint: nothing tells the client why');
    assert.equal((await f.ctx.storage.db.selectFrom('interactions').select('id').execute()).length, 0, 'nobody is asked');

    // Signing in during the request: the people side is told there is nothing to ask; resume refuses.
    const first = await f.authorize(query('TRE-001'));
    assert.equal(first.response.statusCode, 303, first.response.body);
    const id = first.location!.pathname.split('/').pop()!;
    await recordAuthentication(f.ctx, id, person.authentication);
    assert.equal((await nextStep(f.ctx, id, undefined)).step, 'done', 'no consent page');
    errorRedirect((await f.resume(id, first.cookie)).response, 'invalid_authorization_details');

    assert.deepEqual(await screenedAudit(f.ctx), [
      [0, 'destination', 'SAN-E001', 'authorization_code'],
      [0, 'destination', 'SAN-E001', 'authorization_code'],
    ]);
    const alerts = await f.ctx.storage.db.selectFrom('alerts').select('data').where('type', '=', 'screening.matched').execute();
    assert.deepEqual(alerts.map((a) => (JSON.parse(a.data) as Json).entry_id), ['SAN-E001', 'SAN-E001']);
    const raw = (await f.ctx.storage.db.selectFrom('audit_events').select('event').execute()).map((r) => r.event).join('\n');
    assert.doesNotMatch(raw, /Fictitious Shipping/, 'the refusal names no one');

    // The clean book name is asked as before.
    const asked = await f.authorize(query('TRE-002'), { cookie: person.cookie });
    assert.match(String(asked.location?.pathname), /^\/interaction\//, asked.location?.href);
    assert.equal((await nextStep(f.ctx, asked.location!.pathname.split('/').pop()!, person.authentication)).step, 'consent');
  });

  test('/bc-authorize refuses it with invalid_authorization_details, audited and alerted, and opens no approval request — a destination still cooling down too, by its listed name', async (t) => {
    const f = await cibaFixture(t, { env: { CLEARANCE_SCREENING_LIST: screeningList } });
    await f.apply({
      ...transferDocument,
      users: [{ username: 'trader', name: 'Tina Trader', desks: ['treasury'], roles: ['trader'] }],
      clients: [
        ...transferDocument.clients,
        { client_id: 'treasury-ciba', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: [cibaGrant], backchannel_token_delivery_mode: 'poll', scope: 'openid transfer:withdrawal' },
      ],
      transfer_controls: { defaults: { first_use_hold: 0 }, entities: { [brokerLei]: { assets: { USD: { approval_threshold: '1000000', daily_limit: '2500000' } } } } },
      policies: [{ version: 'v1', text: '@id("all") permit (principal, action, resource);', change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }],
    });
    await seedBook(f.ctx);
    const ask = (source: string) =>
      f.bcAuthorize({ scope: 'openid transfer:withdrawal', login_hint: 'trader', binding_message: 'Withdrawal W-1', resource: custodyApi, authorization_details: JSON.stringify([transfer({ source_account: source, destination: nameless })]) }, 'treasury-ciba');

    const refused = await ask('TRE-001');
    assert.equal(refused.statusCode, 400, `refused, not opened: ${refused.body}`);
    assert.equal((refused.json() as Json).error, 'invalid_authorization_details');
    assert.equal((refused.json() as Json).error_description, refusedDescription);
    assert.match(String(refused.headers['cache-control']), /no-store/);
    assert.equal((await f.ctx.storage.db.selectFrom('approval_requests').select('id').execute()).length, 0, 'nobody is asked to approve it');
    // Screened by the book's name before anything else is asked of the transfer: a destination
    // still cooling down is refused for its listed beneficiary, alerted, not only for its cool-down.
    const cooling = await ask('CRY-001');
    assert.equal(cooling.statusCode, 400, cooling.body);
    assert.equal((cooling.json() as Json).error_description, refusedDescription);
    assert.equal((await f.ctx.storage.db.selectFrom('approval_requests').select('id').execute()).length, 0, 'nobody is asked to approve it');
    assert.deepEqual(await screenedAudit(f.ctx), [
      [0, 'destination', 'SAN-E001', cibaGrant],
      [0, 'destination', 'SAN-E001', cibaGrant],
    ]);
    const alerts = await f.ctx.storage.db.selectFrom('alerts').select('data').where('type', '=', 'screening.matched').execute();
    assert.deepEqual(alerts.map((a) => (JSON.parse(a.data) as Json).entry_id), ['SAN-E001', 'SAN-E001']);

    // The clean book name is asked as before.
    const opened = await ask('TRE-002');
    assert.equal(opened.statusCode, 200, opened.body);
    assert.equal((await f.pending()).kind, 'ciba');
  });
});
