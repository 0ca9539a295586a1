import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as client from 'openid-client';
import { Agent } from 'undici';
import { acr } from '../../../src/identity/acr.ts';
import { upsertUser } from '../../../src/identity/users.ts';
import { csrfOf, HttpBrowser } from '../../helpers/http-browser.ts';
import { hardwarePolicy, makePersonPki, type PersonCertificate } from '../../helpers/person-pki.ts';
import { makePki } from '../../helpers/pki.ts';
import { startTestServer } from '../../helpers/server.ts';
import { applyPersonCertificates, lastEvent } from './fixture.ts';

// Certificate sign-in over Clearance's own TLS listener (a real handshake, undici presenting the
// person's certificate): the certificate of the handshake signs the person in; a certificate header
// on such a connection — where no proxy stands between — is refused, even from an address listed
// as a trusted proxy.

test('over Clearance’s own TLS listener the handshake’s certificate signs the person in, and a certificate header on that connection is refused', async (t) => {
  const tls = makePki(t);
  const people = await makePersonPki(t);
  const server = await startTestServer({
    t,
    env: {
      CLEARANCE_TLS_CERT: tls.server.certFile,
      CLEARANCE_TLS_KEY: tls.server.keyFile,
      CLEARANCE_TLS_CLIENT_CA: `${people.dir}/ca.crt`,
      CLEARANCE_CLIENT_CERT_HEADER: 'x-client-cert',
      CLEARANCE_TRUSTED_PROXIES: '127.0.0.1',
    },
  });
  const redirectUri = 'https://app.example.com/cb';
  await server.apply({ clients: [{ client_id: 'desk-app', kind: 'app', token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], redirect_uris: [redirectUri], scope: 'openid' }] });
  const ctx = server.running.ctx;
  const { id: aliceId } = await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), { username: 'alice', email: 'alice@broker.example.com' }, { keep: true }));
  await applyPersonCertificates(ctx, {
    authorities: [{ name: 'broker-smartcards', certificates: people.caPem, hardware_policy_oids: [hardwarePolicy], revocation: { method: 'ocsp', allow_private_network: true }, mapping: [{ certificate: 'san_email', person: 'email' }] }],
  });
  const card = people.issue('alice-card', { san: 'email:alice@broker.example.com', policies: [hardwarePolicy] });

  /** A browser over TLS (presenting `certificate`, or none) on a new authorization request: "Sign in with your smart card" with `headers`; the response. */
  const signIn = async (certificate: PersonCertificate | undefined, headers: Record<string, string> = {}) => {
    const dispatcher = new Agent({ connect: { ca: tls.ca.cert, ...(certificate ? { cert: certificate.cert, key: certificate.key } : {}) } });
    const browser = new HttpBrowser();
    const go = (url: string, init: RequestInit = {}) => browser.fetch(url, { ...init, dispatcher } as RequestInit);
    const query = new URLSearchParams({ client_id: 'desk-app', response_type: 'code', redirect_uri: redirectUri, scope: 'openid', code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()), code_challenge_method: 'S256' });
    const started = await go(`${server.issuer}/authorize?${query}`);
    assert.equal(started.status, 303);
    const interaction = started.headers.get('location')!;
    const page = await (await go(interaction)).text();
    return go(`${interaction}/certificate`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams({ csrf_token: csrfOf(page) }).toString() });
  };

  const signedIn = await signIn(card);
  assert.equal(signedIn.status, 303, await signedIn.text());
  const event = await lastEvent(ctx, 'user.login_succeeded');
  assert.equal(event.subject, aliceId);
  assert.equal(event.details.via, 'tls');
  assert.equal(event.details.acr, acr.phishingResistantHardware);

  const forged = await signIn(undefined, { 'x-client-cert': card.header });
  assert.equal(forged.status, 400);
  assert.match(await forged.text(), /did not reach Clearance through its trusted proxy/);
  assert.deepEqual((await lastEvent(ctx, 'user.login_failed')).decision?.reasons, ['proxy_header_untrusted']);
});
