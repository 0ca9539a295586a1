import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { sealNow } from '../../src/audit/lifecycle.ts';
import { acr } from '../../src/identity/acr.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { codeFlowFixture, webRedirect, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError } from './fixture.ts';

// AMENDMENTS (console and operations): compliance reads the events of its own legal entity's
// scope. The audit API from the outside, with people's tokens (src/audit/scope.ts).

const firmA = '5493001KJTIIGC8Y1R12';
const firmB = '254900EXAMPLEUS0AA64';

async function harness(t: TestContext): Promise<CodeFlowFixture & { ids: Record<string, string> }> {
  const f = await codeFlowFixture(t, { risk: 'off' });
  for (const username of ['comp-a', 'comp-none', 'aud']) await f.signIn(username);
  await f.apply({
    regions: [{ id: 'uk' }, { id: 'us' }],
    legal_entities: [
      { lei: firmA, name: 'Firm A', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'a-compliance' }] },
      { lei: firmB, name: 'Firm B', jurisdiction: 'US', home_region: 'us', roles: ['broker'], desks: [{ id: 'b-desk' }] },
    ],
    clients: [
      { client_id: 'a-algo', kind: 'service', owner_lei: firmA, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'order:create' },
      { client_id: 'b-algo', kind: 'service', owner_lei: firmB, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'order:create' },
      { client_id: 'audit-app', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [webRedirect], scope: 'audit:read' },
      { client_id: 'log-shipper', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'audit:read' },
    ],
    users: [
      { username: 'comp-a', name: 'Compliance A', roles: ['compliance'], desks: ['a-compliance'] },
      { username: 'comp-none', name: 'Compliance Nowhere', roles: ['compliance'] },
      { username: 'aud', name: 'Internal Audit', roles: ['auditor'] },
    ],
  });
  const record = (client: string | undefined, txn: string | undefined, n: number) => f.ctx.audit.record({ type: client ? 'token.issued' : 'key.created', ...(client ? { client } : {}), ...(txn ? { txn } : {}), details: { n } });
  await record('a-algo', 't-a', 1);
  await record('b-algo', 't-b', 2);
  await record('b-algo', 't-ab', 3); // B's hop of a trade A took part in
  await record('a-algo', 't-ab', 4);
  await record(undefined, undefined, 5);
  // A's client names B's trade in a request that is refused, and in a policy question: neither
  // makes A a party to it (the caller chose the txn; nothing was issued under it).
  await f.ctx.audit.record({ type: 'token.refused', client: 'a-algo', txn: 't-b', details: { n: 6, error: 'invalid_request', reason: 'txn_of_another_client' } });
  await f.ctx.audit.record({ type: 'policy.denied', client: 'a-algo', txn: 't-b', decision: { allow: false, reasons: ['no'] }, details: { n: 7 } });
  // A trade after the last checkpoint (not in the lookup index yet): A's token, then B's hop.
  await record('a-algo', 't-tail', 8);
  await record('b-algo', 't-tail', 9);
  await sealNow(f.ctx, resolveMasterKey(f.ctx.config).key);
  const rows = await f.ctx.storage.db.selectFrom('audit_events').select('event').execute();
  const ids: Record<string, string> = {};
  for (const row of rows) {
    const event = JSON.parse(row.event) as StoredAuditEvent;
    if (typeof event.details?.n === 'number') ids[`e${event.details.n}`] = event.id;
  }
  return Object.assign(f, { ids });
}

/** A person's own audit:read token, through the audit app's code flow. */
async function personToken(f: CodeFlowFixture, username: string): Promise<string> {
  const person = await f.signIn(username, { acr: acr.phishingResistant, amr: ['hwk', 'user'] });
  const { code, pkce } = await f.authorizeAndApprove({ client: 'audit-app', person, query: { scope: 'audit:read', resource: adminAudience(f.issuer) } });
  const redeemed = await f.redeem('audit-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  return redeemed.json().access_token as string;
}

const get = (f: CodeFlowFixture, url: string, token: string) => f.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
const ns = (body: { events: { event: StoredAuditEvent }[] }) => body.events.map((e) => e.event.details?.n).filter((n) => n !== undefined);

describe("a compliance officer reads her legal entity's events", () => {
  test("her firm's clients' events and every event of a trade her firm took part in; nothing else, not even by id", async (t) => {
    const f = await harness(t);
    const token = await personToken(f, 'comp-a');
    const all = await get(f, '/admin/audit/events?limit=1000', token);
    assert.equal(all.statusCode, 200, all.body);
    assert.deepEqual(ns(all.json()), [1, 3, 4, 6, 7, 8, 9], "A's own, and B's hops of the trades A was part of (sealed or not yet)");
    assert.deepEqual(ns((await get(f, '/admin/audit/events?txn=t-b', token)).json()), [6, 7], "naming B's txn in a refused request shows A its own refusals, not B's trade");
    assert.deepEqual(ns((await get(f, '/admin/audit/events?txn=t-ab', token)).json()), [3, 4]);

    assert.equal((await get(f, `/admin/audit/events/${f.ids.e3}/proof`, token)).statusCode, 200);
    const hidden = assertOAuthError(await get(f, `/admin/audit/events/${f.ids.e2}/proof`, token), 404, 'not_found');
    assert.equal(hidden.error_description, 'no such event', 'the same answer as for an id that does not exist');
    assert.equal(assertOAuthError(await get(f, '/admin/audit/events/00000000-0000-0000-0000-000000000000/proof', token), 404, 'not_found').error_description, 'no such event');
    assertOAuthError(await get(f, `/admin/audit/events/${f.ids.e5}/proof`, token), 404, 'not_found');

    assert.equal((await get(f, '/admin/audit/bundle?txn=t-ab', token)).statusCode, 200);
    assert.equal((await get(f, '/admin/audit/bundle?client=a-algo', token)).statusCode, 200);
    assertOAuthError(await get(f, '/admin/audit/bundle?txn=t-b', token), 403, 'access_denied');
    assertOAuthError(await get(f, '/admin/audit/bundle?client=b-algo', token), 403, 'access_denied');
    assertOAuthError(await get(f, '/admin/audit/bundle?since=0', token), 403, 'access_denied');

    const reads = await f.auditEvents('audit.read');
    assert.deepEqual(reads.at(-1)!.details?.scope, [firmA], 'the read is recorded with the scope it had');
  });

  test('a compliance officer with no desk of any legal entity reads nothing; an auditor and a client’s own token read the whole log', async (t) => {
    const f = await harness(t);
    const nowhere = assertOAuthError(await get(f, '/admin/audit/events', await personToken(f, 'comp-none')), 403, 'access_denied');
    assert.match(String(nowhere.error_description), /no desk of any legal entity/);
    assert.deepEqual(ns((await get(f, '/admin/audit/events?limit=1000', await personToken(f, 'aud'))).json()), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const shipper = await f.accessToken('log-shipper', { resource: adminAudience(f.issuer), scope: 'audit:read' });
    assert.deepEqual(ns((await get(f, '/admin/audit/events?limit=1000', shipper)).json()), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal((await get(f, '/admin/audit/bundle?since=0', shipper)).statusCode, 200);
  });
});
