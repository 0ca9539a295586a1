import assert from 'node:assert/strict';
import { test } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import type { LightMyRequestResponse } from 'fastify';
import { adminAudience } from '../../../src/admin/authorize.ts';
import { assertOAuthError, ordersApi, protocolFixture, type ProtocolFixture } from '../../endpoints/fixture.ts';
import { makePartnerPki } from '../../helpers/partner-pki.ts';

// tls_client_auth_trust_anchor through the admin API and dynamic registration (RFC 7591): an
// anchor that names nothing is refused with a clear description; one that names a partner's
// anchor is stored and returned.

async function withBravo(f: ProtocolFixture, t: Parameters<typeof makePartnerPki>[0]): Promise<void> {
  const bravo = await makePartnerPki(t, { name: 'Bravo' });
  const { publicKey } = await generateKeyPair('ES256', { extractable: true });
  await f.apply({
    partners: [{
      id: 'bravo',
      issuer: 'https://bravo.example.com',
      jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'bravo-1', alg: 'ES256' }] },
      algorithms: ['ES256'],
      allowed_audiences: [ordersApi],
      allowed_scopes: ['order:create'],
      trust_anchors: [{ name: 'mtls', certificate: bravo.rootPem }],
      revocation: { mode: 'soft', ocsp: true, crl: false, timeout_ms: 1500, cache_seconds: 60 },
    }],
  });
}

const mtlsClient = {
  kind: 'service',
  token_endpoint_auth_method: 'tls_client_auth',
  tls_client_auth_subject_dn: 'CN=bravo-connector,O=Bravo,C=GB',
  grant_types: ['client_credentials'],
  scope: 'order:create',
};

function json(f: ProtocolFixture, method: 'POST' | 'PUT', url: string, token: string, body: unknown): Promise<LightMyRequestResponse> {
  return f.inject({ method, url, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
}

test('dynamic registration stores a partner’s named anchor and refuses one the partner does not declare', async (t) => {
  const f = await protocolFixture(t, { risk: 'off' });
  await withBravo(f, t);
  const refused = await json(f, 'POST', '/register', await f.initialAccessToken(), { ...mtlsClient, tls_client_auth_trust_anchor: 'partner:bravo/other' });
  const body = assertOAuthError(refused, 400, 'invalid_client_metadata');
  assert.equal(body.error_description, "tls_client_auth_trust_anchor names trust anchor 'other', which partner bravo does not declare (its trust_anchors: mtls)");
  const registered = await json(f, 'POST', '/register', await f.initialAccessToken(), { ...mtlsClient, tls_client_auth_trust_anchor: 'partner:bravo/mtls' });
  assert.equal(registered.statusCode, 201, registered.body);
  assert.equal(registered.json().tls_client_auth_trust_anchor, 'partner:bravo/mtls');
});

test('the admin API refuses an anchor that names nothing, with the problem at its path', async (t) => {
  const f = await protocolFixture(t, { risk: 'off' });
  await withBravo(f, t);
  const token = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
  const refused = await json(f, 'PUT', '/admin/clients/bravo-connector', token, { ...mtlsClient, tls_client_auth_trust_anchor: 'partner:nobody/mtls' });
  assert.match(String(assertOAuthError(refused, 400, 'invalid_request').error_description), /clients\[0\]\.tls_client_auth_trust_anchor: names partner 'nobody', which is not a partner in service/);
  const stored = await json(f, 'PUT', '/admin/clients/bravo-connector', token, { ...mtlsClient, tls_client_auth_trust_anchor: 'partner:bravo/mtls' });
  assert.equal(stored.statusCode, 200, stored.body);
  assert.equal((await f.ctx.clients.get('bravo-connector'))?.metadata.tls_client_auth_trust_anchor, 'partner:bravo/mtls');
});
