import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { acr } from '../../src/identity/acr.ts';
import { destinationStatus } from '../../src/transfers/address-book.ts';
import { codeFlowFixture, webRedirect, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError } from '../endpoints/fixture.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';

// POST /admin/apply with transfer_destinations (docs/transfers.md "In apply"): a client's own token
// declares destinations (pending, two approvers, none of them the requester); a person's token —
// the console's — changes none (403): a person asks at POST /admin/transfer-destinations, stepped
// up, and can never approve their own destination.

const firmLei = '5493001KJTIIGC8Y1R12';
const password = 'correct horse battery staple 7';
const wallet = 'eip155:1:0xab5801a7d398351b8be11c439e05c5b3259aec9b';
const scope = 'admin:read admin:write approvals:decide';
const person = (username: string, roles: string[]) => ({ username, password, name: username, roles, desks: ['ops-eu'] });
const document = JSON.stringify({
  transfer_destinations: { destinations: [{ lei: firmLei, account: 'ACC-1', label: 'Cold wallet', destination: { kind: 'blockchain', account: wallet } }] },
});

async function harness(t: TestContext, dialect: TestDialect): Promise<CodeFlowFixture> {
  const f = await codeFlowFixture(t, { risk: 'off', dialect });
  for (const username of ['appr-1', 'appr-2']) await f.user(username);
  await f.apply({
    regions: [{ id: 'eu', name: 'Europe' }],
    legal_entities: [{ lei: firmLei, name: 'Example Broker', jurisdiction: 'GB', home_region: 'eu', roles: ['broker'], desks: [{ id: 'ops-eu', product_classes: [] }], accounts: [{ id: 'ACC-1', region: 'eu', desk: 'ops-eu' }] }],
    users: [person('appr-1', ['approver']), person('appr-2', ['approver'])],
    clients: [
      { client_id: 'ops-app', client_name: 'Operations', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [webRedirect], scope },
      { client_id: 'ops-bot', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'admin:read admin:write' },
    ],
  });
  f.clock.advance(2000);
  return f;
}

/** A person's admin token from the operations app, signed in with a passkey just now. */
async function personToken(f: CodeFlowFixture, username: string): Promise<string> {
  const signedIn = await f.signIn(username, { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] });
  const { code, pkce } = await f.authorizeAndApprove({ client: 'ops-app', person: signedIn, query: { scope, resource: adminAudience(f.issuer) } });
  const redeemed = await f.redeem('ops-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  return redeemed.json().access_token as string;
}

const apply = (f: CodeFlowFixture, token: string, query = '') =>
  f.inject({ method: 'POST', url: `/admin/apply${query}`, payload: document, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
const lookup = (f: CodeFlowFixture) => destinationStatus(f.ctx, { lei: firmLei, account: 'ACC-1', key: `caip10:${wallet}` });

for (const dialect of testDialects()) {
  describe(`transfer destinations through POST /admin/apply on ${dialect.name}`, () => {
    test("a person's token changes no destination: 403 access_denied pointing to POST /admin/transfer-destinations, nothing written, the dry run too", async (t) => {
      const f = await harness(t, dialect);
      const token = await personToken(f, 'appr-1');
      const refused = assertOAuthError(await apply(f, token), 403, 'access_denied');
      assert.match(String(refused.error_description), /transfer_destinations\.destinations\[0\].*POST \/admin\/transfer-destinations/);
      assertOAuthError(await apply(f, token, '?dry_run=true'), 403, 'access_denied');
      assert.equal((await lookup(f)).state, 'unknown');
      assert.deepEqual(await f.ctx.storage.db.selectFrom('transfer_destination_versions').select('destination_id').execute(), []);
      assert.deepEqual(await f.ctx.storage.db.selectFrom('approval_requests').select('id').where('kind', '=', 'transfer_destination').execute(), []);
    });

    test("a client's own token declares it, pending for two approvers; the same document by a person is then unchanged", async (t) => {
      const f = await harness(t, dialect);
      const bot = await f.accessToken('ops-bot', { resource: adminAudience(f.issuer), scope: 'admin:read admin:write' });
      const applied = await apply(f, bot);
      assert.equal(applied.statusCode, 200, applied.body);
      assert.deepEqual((applied.json() as { changes: { kind: string; outcome: string }[] }).changes.map((c) => [c.kind, c.outcome]), [['transfer_destination', 'created']]);
      assert.equal((await lookup(f)).state, 'pending');
      const [request] = await f.ctx.storage.db.selectFrom('approval_requests').select(['requester', 'requester_type', 'required_approvals']).where('kind', '=', 'transfer_destination').execute();
      assert.deepEqual([request!.requester, request!.requester_type, Number(request!.required_approvals)], ['ops-bot', 'client', 2]);
      // Declared as it is in the book: nothing changes, so a person's apply of it goes through.
      const again = await apply(f, await personToken(f, 'appr-1'));
      assert.equal(again.statusCode, 200, again.body);
      assert.equal((again.json() as { unchanged: number }).unchanged, 1);
    });
  });
}
