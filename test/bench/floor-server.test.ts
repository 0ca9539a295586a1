import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { clientAssertionParams, type ServerProcess } from '../../bench/harness.ts';
import { clientId, resource, tokenRequest } from '../../bench/m2m.ts';
import { startFloorProcess } from '../../bench/peer.ts';
import { verifyCompactSignature } from '../../src/jose/signature.ts';

/**
 * The floor bounds what any server reaches on the bench's request only if it does the request's
 * crypto: it must verify the client assertion's signature (a wrong one is refused) and sign the
 * token it answers with, with either way of running the crypto.
 */
describe('the floor of the peer benchmark', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

  const post = (server: ServerProcess, body: string) =>
    fetch(`${server.issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });

  for (const crypto of ['sync', 'async'] as const) {
    describe(`with its crypto ${crypto === 'sync' ? 'on the event loop' : 'on the threadpool'}`, () => {
      it('answers a request whose assertion verifies with a signed ES256 token for the resource', async () => {
        const server = await startFloorProcess(publicKey, crypto);
        try {
          const response = await post(server, tokenRequest(clientAssertionParams(clientId, privateKey, server.issuer)));
          assert.equal(response.status, 200);
          assert.equal(response.headers.get('cache-control'), 'no-store');
          const { access_token: token } = (await response.json()) as { access_token: string };
          const { keys } = (await (await fetch(`${server.issuer}/jwks`)).json()) as { keys: Record<string, unknown>[] };
          assert.ok(verifyCompactSignature('ES256', createPublicKey({ key: keys[0]! as never, format: 'jwk' }), token), 'the token verifies under the floor key');
          const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
          assert.equal(claims.sub, clientId);
          assert.equal(claims.aud, resource);
        } finally {
          await server.stop();
        }
      });

      it('refuses an assertion signed by another key, and a request of another grant', async () => {
        const server = await startFloorProcess(publicKey, crypto);
        try {
          const forged = await post(server, tokenRequest(clientAssertionParams(clientId, stranger, server.issuer)));
          assert.equal(forged.status, 400);
          assert.equal(((await forged.json()) as { error: string }).error, 'invalid_client');
          const otherGrant = tokenRequest(clientAssertionParams(clientId, privateKey, server.issuer)).replace('client_credentials', 'password');
          assert.equal((await post(server, otherGrant)).status, 400);
        } finally {
          await server.stop();
        }
      });
    });
  }
});
