import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import { decodeJwt, generateKeyPair, SignJWT } from 'jose';
import { RevocationList } from '../../src/tokens/revocation.ts';
import { assertOAuthError } from '../endpoints/fixture.ts';
import { makePki, type Pem } from '../helpers/pki.ts';
import { accessTokenType, exchangeFixture, exchangeGrantType } from './exchange-fixture.ts';

// RFC 8693 §2.2.2: a subject or actor token that is invalid, or unacceptable, is answered
// invalid_request. These are the cases test/grants/token-exchange.test.ts leaves out: a subject
// token bound to a client certificate (RFC 8705 §3), and a client's own actor_token that is not
// valid. The certificate comes from a trusted TLS-terminating proxy's header (inject's address,
// 127.0.0.1, is the proxy), as in test/endpoints/certificate-binding.test.ts.

const arrangerApi = 'https://arranger.example.com/orders';
const brokerApi = 'https://broker.example.com/execution';
const exchange = exchangeGrantType;
const tradeScopes = 'order:create settlement:submit';
const proxied = { CLEARANCE_CLIENT_CERT_HEADER: 'client-cert', CLEARANCE_TRUSTED_PROXIES: '127.0.0.1' };

const document = {
  resource_servers: [
    { identifier: arrangerApi, scopes: ['order:create', 'settlement:submit'], exchange_clients: ['arranger-backend'] },
    { identifier: brokerApi, scopes: ['order:create', 'settlement:submit'], exchange_clients: ['broker-backend'] },
  ],
  clients: [
    { client_id: 'trader-app', kind: 'agent', grant_types: ['client_credentials', exchange], scope: tradeScopes },
    // Gets tokens of its own, to present as actor_token.
    { client_id: 'arranger-backend', kind: 'service', grant_types: ['client_credentials', exchange], scope: tradeScopes },
  ],
};

/** RFC 9440 §2.2: the certificate's DER in base64 between colons. */
function certHeader(pem: Pem): Record<string, string> {
  return { 'client-cert': `:${new X509Certificate(pem.cert).raw.toString('base64')}:` };
}

async function fixture(t: TestContext) {
  const f = await exchangeFixture(t, document, { env: proxied });
  /** A client_credentials token of `clientId` for the arranger's API (bound to the certificate sent with it, if any). */
  const ownToken = async (clientId: string, headers: Record<string, string> = {}) => (await f.ok(await f.post(clientId, { grant_type: 'client_credentials', resource: arrangerApi }, headers))).access_token;
  /** An exchange by `clientId` for the broker's API. */
  const exchangeFor = (clientId: string, subjectToken: string, form: Record<string, string> = {}, headers: Record<string, string> = {}) => f.exchangeFor(clientId, subjectToken, { resource: brokerApi, ...form }, headers);
  return { ...f, ownToken, exchangeFor };
}

describe('a certificate-bound token at the token exchange (RFC 8693 §2.2.2, RFC 8705 §3)', () => {
  test('a certificate-bound subject token is exchanged only with its own certificate', async (t) => {
    const f = await fixture(t);
    const pki = makePki(t);
    const mine = pki.selfSigned('mine', '/CN=trader-app');
    const other = pki.selfSigned('other', '/CN=trader-app');
    const bound = await f.ownToken('trader-app', certHeader(mine));
    assert.deepEqual(decodeJwt(bound).cnf, { 'x5t#S256': mine.thumbprint }, 'the subject token is bound to the certificate');

    // RFC 8705 §3: the token is usable only by the holder of the certificate's key, so presenting
    // it without that certificate is presenting an unacceptable subject token (RFC 8693 §2.2.2).
    const bare = assertOAuthError(await f.exchangeFor('trader-app', bound), 400, 'invalid_request', 'no certificate');
    assert.equal(bare.error_description, 'subject_token is certificate-bound; present its certificate');
    const foreign = assertOAuthError(await f.exchangeFor('trader-app', bound, {}, certHeader(other)), 400, 'invalid_request', 'another certificate');
    assert.equal(foreign.error_description, 'subject_token is certificate-bound; present its certificate');

    const exchanged = await f.ok(await f.exchangeFor('trader-app', bound, {}, certHeader(mine)));
    assert.equal(decodeJwt(exchanged.access_token).aud, brokerApi);
  });

  test('a certificate-bound actor token is accepted only with its own certificate too', async (t) => {
    const f = await fixture(t);
    const pki = makePki(t);
    const arranger = pki.selfSigned('arranger', '/CN=arranger-backend');
    const subject = await f.ownToken('trader-app');
    const actor = await f.ownToken('arranger-backend', certHeader(arranger));
    assert.deepEqual(decodeJwt(actor).cnf, { 'x5t#S256': arranger.thumbprint });
    const actorForm = { actor_token: actor, actor_token_type: accessTokenType };

    const bare = assertOAuthError(await f.exchangeFor('arranger-backend', subject, actorForm), 400, 'invalid_request', 'no certificate');
    assert.equal(bare.error_description, 'actor_token is certificate-bound; present its certificate');
    const foreign = assertOAuthError(await f.exchangeFor('arranger-backend', subject, actorForm, certHeader(pki.selfSigned('thief', '/CN=arranger-backend'))), 400, 'invalid_request', 'another certificate');
    assert.equal(foreign.error_description, 'actor_token is certificate-bound; present its certificate');

    const exchanged = await f.ok(await f.exchangeFor('arranger-backend', subject, actorForm, certHeader(arranger)));
    assert.deepEqual(decodeJwt(exchanged.access_token).act, { sub: 'arranger-backend' });
  });
});

describe('the presenting client\'s own actor_token (RFC 8693 §2.1, §2.2.2)', () => {
  test('is accepted when valid, and is invalid_request when it is garbage, revoked, from a foreign issuer or expired', async (t) => {
    const f = await fixture(t);
    // The good case: the client's own live token names it as the actor of the hop.
    const accepted = await f.ok(await f.exchangeFor('arranger-backend', await f.ownToken('trader-app'), { actor_token: await f.ownToken('arranger-backend'), actor_token_type: accessTokenType }));
    assert.equal(decodeJwt(accepted.access_token).sub, 'trader-app');
    assert.deepEqual(decodeJwt(accepted.access_token).act, { sub: 'arranger-backend' });

    const withActor = async (actor: string, what: string) => {
      // A fresh subject token each time: only the actor token is wrong.
      const subject = await f.ownToken('trader-app');
      // RFC 8693 §2.2.2: an invalid actor token MUST be answered invalid_request.
      return assertOAuthError(await f.exchangeFor('arranger-backend', subject, { actor_token: actor, actor_token_type: accessTokenType }), 400, 'invalid_request', what);
    };

    const garbage = await withActor('not-a-token', 'garbage');
    assert.match(String(garbage.error_description), /^actor_token is not acceptable/);

    // Revoked after issuance: its own client presenting it changes nothing.
    const revoked = await f.ownToken('arranger-backend');
    await new RevocationList(f.ctx.storage.db).revoke(decodeJwt(revoked).jti!, decodeJwt(revoked).exp! * 1000, f.clock.now(), 'test');
    assert.match(String((await withActor(revoked, 'revoked')).error_description), /^actor_token is not acceptable: revoked/);

    // Claims to be the client's, but signed by an issuer that is neither us nor a registered partner.
    const { privateKey } = await generateKeyPair('ES256');
    const foreign = await new SignJWT({ sub: 'arranger-backend', client_id: 'arranger-backend', aud: arrangerApi, scope: tradeScopes })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt' })
      .setIssuer('https://rogue.example.com')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(privateKey);
    assert.match(String((await withActor(foreign, 'foreign issuer')).error_description), /^actor_token is not acceptable: .*not a registered partner/);

    // One second past its exp; the subject token is minted after the clock moved, so it is the
    // actor token alone that has expired.
    const expiring = await f.ownToken('arranger-backend');
    f.clock.advance((decodeJwt(expiring).exp! - decodeJwt(expiring).iat! + 1) * 1000);
    assert.match(String((await withActor(expiring, 'expired')).error_description), /^actor_token is not acceptable: invalid or expired/);
  });
});
