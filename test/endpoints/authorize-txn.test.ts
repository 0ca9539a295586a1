import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { codeFlowFixture, orderDetail, pkce } from '../authorization/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { assertOAuthError, decodeJwt } from './fixture.ts';

// Issue 17 item 1 (docs/audit.md "One txn from the first action"): a person's order starts its
// trade at the authorization request — /authorize or PAR with `txn=<id>` or `txn=new` — and the
// code's tokens, and those refreshed from them, carry that txn.

const order = JSON.stringify([orderDetail]);

describe('a txn started at the authorization request', () => {
  for (const dialect of testDialects()) {
    test(`is in the code's token and the refreshed ones; another authorization with the same txn is refused (${dialect.name})`, async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      const person = await f.signIn('alice');
      const challenge = pkce();
      const { code } = await f.authorizeAndApprove({ person, pkce: challenge, query: { scope: 'order:create', authorization_details: order, txn: 'desk-trade-1' } });
      const response = await f.redeem('web-app', code, challenge.verifier);
      assert.equal(response.statusCode, 200, response.body);
      const body = response.json() as { access_token: string; refresh_token?: string };
      assert.equal(decodeJwt(body.access_token).payload.txn, 'desk-trade-1');
      assert.ok(body.refresh_token, 'web-app is registered for refresh_token');
      const refreshed = await f.refresh('web-app', body.refresh_token);
      assert.equal(refreshed.statusCode, 200, refreshed.body);
      assert.equal(decodeJwt((refreshed.json() as { access_token: string }).access_token).payload.txn, 'desk-trade-1', 'a refresh continues the trade');
      const issued = await f.ctx.storage.db.selectFrom('audit_events').select('type').where('txn', '=', 'desk-trade-1').where('type', '=', 'token.issued').execute();
      assert.ok(issued.length >= 1);

      // The same txn again, at /authorize: back to the client as invalid_request.
      const again = await f.authorize(f.request('web-app', { scope: 'order:create', authorization_details: order, txn: 'desk-trade-1' }), { cookie: person.cookie });
      assert.equal(again.response.statusCode, 303);
      assert.equal(again.location!.searchParams.get('error'), 'invalid_request');
      assert.match(String(again.location!.searchParams.get('error_description')), /already started a transaction of this client/);
    });
  }

  test('through PAR: txn=new mints one; a txn without authorization_details or a mandate, a malformed one or another client’s is invalid_request', async (t) => {
    const f = await codeFlowFixture(t);
    const pushed = (extra: Record<string, string>) => f.par('par-app', { ...(f.request('par-app') as Record<string, string>), scope: 'order:create', ...extra });
    assert.equal((await pushed({ authorization_details: order, txn: 'new' })).statusCode, 201);
    const minted = await f.ctx.storage.db.selectFrom('transactions').selectAll().where('client_id', '=', 'par-app').execute();
    assert.equal(minted.length, 1);
    assert.match(minted[0]!.txn, /^[0-9a-f-]{36}$/);

    assert.match(String(assertOAuthError(await pushed({ txn: 'plain-order' }), 400, 'invalid_request').error_description), /authorization_details or a mandate/);
    assert.match(String(assertOAuthError(await pushed({ authorization_details: order, txn: 'has space' }), 400, 'invalid_request').error_description), /txn must be/);
    const person = await f.signIn('alice');
    await f.authorizeAndApprove({ person, query: { scope: 'order:create', authorization_details: order, txn: 'web-apps-trade' } });
    const foreign = assertOAuthError(await pushed({ authorization_details: order, txn: 'web-apps-trade' }), 400, 'invalid_request');
    assert.match(String(foreign.error_description), /not available to this client/);
  });
});
