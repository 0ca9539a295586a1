import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { describe, test, type TestContext } from 'node:test';
import { decodeJwt } from 'jose';
import { listPendingApprovalRequests } from '../../src/approvals/requests.ts';
import { acr } from '../../src/identity/acr.ts';
import { pairwiseKey, pairwiseSubject } from '../../src/identity/pairwise.ts';
import { assertOAuthError } from '../endpoints/fixture.ts';
import { cibaFixture, cibaGrant, subjectDecides, type CibaFixture } from './fixture.ts';

// CIBA Core §7.1: who a backchannel authentication request is for (src/ciba/hints.ts). An
// id_token_hint is an ID token this server issued to the client; for a client with pairwise
// subject identifiers (OIDC Core §8.1) its `sub` is the person's pseudonym in the client's sector.

/** A sector identifier document (OIDC Registration §5) served on a loopback port: one sector per server. */
async function sectorServer(t: TestContext): Promise<string> {
  const server: Server = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' }).end('[]');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}/sector.json`;
}

/** Two pairwise CIBA clients, each in its own sector; their sector hosts. */
async function withPairwiseClients(t: TestContext, f: CibaFixture): Promise<Record<'pairwise-ciba' | 'pairwise-other', string>> {
  const sectors = { 'pairwise-ciba': await sectorServer(t), 'pairwise-other': await sectorServer(t) };
  await f.apply({
    clients: Object.entries(sectors).map(([client_id, sector_identifier_uri]) => ({
      client_id,
      kind: 'app',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [cibaGrant],
      backchannel_token_delivery_mode: 'poll',
      scope: 'openid order:create',
      subject_type: 'pairwise',
      sector_identifier_uri,
    })),
  });
  return { 'pairwise-ciba': new URL(sectors['pairwise-ciba']).host, 'pairwise-other': new URL(sectors['pairwise-other']).host };
}

/** The ID token `clientId` gets for the trader through CIBA (login_hint), approved on their device. */
async function idTokenOf(f: CibaFixture, clientId: string): Promise<string> {
  const started = await f.bcAuthorize({ scope: 'openid', login_hint: 'trader', binding_message: 'Sign in' }, clientId);
  assert.equal(started.statusCode, 200, started.body);
  await subjectDecides(f.ctx, await f.pending());
  const tokens = await f.poll(String(started.json().auth_req_id), clientId);
  assert.equal(tokens.statusCode, 200, tokens.body);
  return String(tokens.json().id_token);
}

/** An ID token this server signs for `clientId` about `sub` (what no code path of ours issues, for the refusals). */
function idTokenAbout(f: CibaFixture, clientId: string, sub: string): Promise<string> {
  const now = Math.floor(f.clock.now() / 1000);
  return f.ctx.keys.signJwt({ typ: 'JWT' }, { iss: f.issuer, sub, aud: clientId, iat: now, exp: now + 300, jti: randomUUID(), auth_time: now, acr: acr.password, amr: ['pwd'] });
}

describe('id_token_hint of a client with pairwise subject identifiers', () => {
  test("opens a request for the person the pairwise client's own ID token names", async (t) => {
    const f = await cibaFixture(t);
    await withPairwiseClients(t, f);
    const hint = await idTokenOf(f, 'pairwise-ciba');
    assert.notEqual(decodeJwt(hint).sub, f.traderId, 'the client is told a pseudonym');
    const response = await f.bcAuthorize({ scope: 'openid', id_token_hint: hint, binding_message: 'Order 4711' }, 'pairwise-ciba');
    assert.equal(response.statusCode, 200, response.body);
    const pending = await listPendingApprovalRequests(f.ctx, { subject: f.traderId });
    assert.equal(pending.length, 1, 'one request, for the trader');
  });

  test("refuses another pairwise client's ID token, and a pseudonym of another sector or a local id in one issued to this client", async (t) => {
    const f = await cibaFixture(t);
    const sectors = await withPairwiseClients(t, f);
    // CIBA Core §7.1: an id_token_hint is one "previously issued to the Client".
    assertOAuthError(await f.bcAuthorize({ scope: 'openid', id_token_hint: await idTokenOf(f, 'pairwise-other') }, 'pairwise-ciba'), 400, 'invalid_request');
    // Issued to this client, but naming the trader as another sector knows them: nobody here.
    const key = pairwiseKey(f.ctx.identity.factorKeys.master);
    const otherSector = await idTokenAbout(f, 'pairwise-ciba', pairwiseSubject(key, sectors['pairwise-other'], f.traderId));
    assertOAuthError(await f.bcAuthorize({ scope: 'openid', id_token_hint: otherSector }, 'pairwise-ciba'), 400, 'unknown_user_id');
    // A pairwise client is never told the local id; taking it would tie it to the pseudonym.
    const local = await idTokenAbout(f, 'pairwise-ciba', f.traderId);
    assertOAuthError(await f.bcAuthorize({ scope: 'openid', id_token_hint: local }, 'pairwise-ciba'), 400, 'unknown_user_id');
    assert.equal((await listPendingApprovalRequests(f.ctx, { subject: f.traderId })).length, 0, 'no request opened');
  });

  test('resolves only an active person: a pseudonym of a disabled one is unknown_user_id', async (t) => {
    const f = await cibaFixture(t);
    await withPairwiseClients(t, f);
    const hint = await idTokenOf(f, 'pairwise-ciba');
    await f.ctx.storage.db.updateTable('users').set({ status: 'disabled' }).where('id', '=', f.traderId).execute();
    assertOAuthError(await f.bcAuthorize({ scope: 'openid', id_token_hint: hint }, 'pairwise-ciba'), 400, 'unknown_user_id');
  });
});
