import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { decodeJwt, exportJWK, generateKeyPair } from 'jose';
import { Agent, request } from 'undici';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { forgetRevocationAnswers } from '../../src/certificates/revocation.ts';
import { makePartnerPki, type PartnerCertificate, type PartnerPki } from '../helpers/partner-pki.ts';
import { makePki, type Pki } from '../helpers/pki.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

// Per-client trust anchors for tls_client_auth (docs/client-authentication.md "Trust anchors and
// revocation"), from the outside: Clearance's own TLS listener trusts TWO partners' CAs
// (CLEARANCE_TLS_CLIENT_CA), undici presents the certificates; and the trusted proxy's header,
// which carries the leaf only.

const clearingApi = 'https://clearing.example.com/api';
const bravoDn = 'CN=bravo-connector,O=Bravo,C=GB';
const bravoSubject = '/C=GB/O=Bravo/CN=bravo-connector';

/** A partner profile whose one mTLS anchor is `pki`'s root. */
async function partner(id: string, pki: PartnerPki, extra: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  const { publicKey } = await generateKeyPair('ES256', { extractable: true });
  return {
    id,
    issuer: `https://${id}.example.com`,
    jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: `${id}-1`, alg: 'ES256' }] },
    algorithms: ['ES256'],
    allowed_audiences: [clearingApi],
    allowed_scopes: ['settlement:submit'],
    trust_anchors: [{ name: 'mtls', certificate: pki.rootPem, ...(pki.intermediatePem ? { intermediates: pki.intermediatePem } : {}) }],
    // The test CAs' responders answer on loopback.
    allow_private_network: true,
    ...extra,
  };
}

function connector(clientId: string, anchor?: string, dn = bravoDn): Record<string, unknown> {
  return {
    client_id: clientId,
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_subject_dn: dn,
    ...(anchor !== undefined ? { tls_client_auth_trust_anchor: anchor } : {}),
    grant_types: ['client_credentials'],
    scope: 'settlement:submit',
  };
}

interface Setup {
  server: TestServer;
  tls: Pki;
  alpha: PartnerPki;
  bravo: PartnerPki;
}

/** An HTTPS Clearance whose client CA bundle holds Alpha's and Bravo's roots, with both partners declared. */
async function twoPartners(t: TestContext, bravoExtra: Record<string, unknown> = {}): Promise<Setup> {
  forgetRevocationAnswers();
  const tls = makePki(t);
  const alpha = await makePartnerPki(t, { name: 'Alpha' });
  const bravo = await makePartnerPki(t, { name: 'Bravo' });
  const bundle = join(tls.dir, 'partner-cas.pem');
  writeFileSync(bundle, alpha.rootPem + bravo.rootPem);
  const server = await startTestServer({ t, env: { CLEARANCE_TLS_CERT: tls.server.certFile, CLEARANCE_TLS_KEY: tls.server.keyFile, CLEARANCE_TLS_CLIENT_CA: bundle } });
  await server.apply({
    resource_servers: [{ identifier: clearingApi, scopes: ['settlement:submit'], require_sender_constraint: true }],
    partners: [await partner('alpha', alpha), await partner('bravo', bravo, bravoExtra)],
  });
  return { server, tls, alpha, bravo };
}

/** A client_credentials request over TLS presenting `certificate` (its chain). */
async function token(s: Setup, clientId: string, certificate: PartnerCertificate) {
  const dispatcher = new Agent({ connect: { ca: s.tls.ca.cert, cert: certificate.chain, key: certificate.key } });
  try {
    const response = await request(`${s.server.issuer}/token`, {
      method: 'POST',
      dispatcher,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=client_credentials&client_id=${clientId}&scope=settlement%3Asubmit`,
    });
    return { status: response.statusCode, body: (await response.body.json()) as Record<string, string> };
  } finally {
    await dispatcher.close();
  }
}

/** The newest audit event of a type for a client. */
async function lastEvent(server: TestServer, type: string, clientId: string): Promise<StoredAuditEvent> {
  const rows = await server.running.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', type).orderBy('seq', 'desc').execute();
  const event = rows.map((r) => JSON.parse(r.event) as StoredAuditEvent).find((e) => e.client === clientId);
  assert.ok(event, `a ${type} event for ${clientId}`);
  return event;
}

test('with two partners’ CAs in the bundle, partner A’s CA cannot speak for partner B’s client: a certificate it issued with B’s DN is refused, B’s own is accepted and the token bound to it', async (t) => {
  const s = await twoPartners(t);
  await s.server.apply({ clients: [connector('bravo-connector', 'partner:bravo/mtls'), connector('bravo-unbound')] });
  const forged = s.alpha.issue('forged', { subject: bravoSubject });
  const own = s.bravo.issue('bravo-connector', { subject: bravoSubject });

  // Today's behaviour without an anchor: any CA of the bundle vouches for the DN.
  assert.equal((await token(s, 'bravo-unbound', forged)).status, 200);

  const refused = await token(s, 'bravo-connector', forged);
  assert.equal(refused.status, 401);
  assert.equal(refused.body.error, 'invalid_client');
  assert.equal(refused.body.error_description, 'the client certificate was not issued under the trust anchor registered for this client');
  const event = await lastEvent(s.server, 'client.auth_failed', 'bravo-connector');
  assert.equal(event.details?.reason, 'certificate_untrusted_anchor');
  assert.equal(event.details?.trust_anchor, 'partner:bravo/mtls');
  assert.match(event.decision!.reasons[0]!, /does not chain to its trust anchor partner:bravo\/mtls/);
  assert.equal((event.details?.certificate as { sha256: string }).sha256, forged.thumbprint);

  const accepted = await token(s, 'bravo-connector', own);
  assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
  assert.deepEqual(decodeJwt(accepted.body.access_token!).cnf, { 'x5t#S256': own.thumbprint });
});

test('the anchor may be the CA certificate’s SHA-256 thumbprint (hex or base64url), the CA certificate in PEM, or the partner’s named anchor', async (t) => {
  const s = await twoPartners(t);
  const base64url = Buffer.from(s.bravo.rootFingerprint.replaceAll(':', ''), 'hex').toString('base64url');
  const forms = { 'by-hex': s.bravo.rootFingerprint, 'by-base64url': base64url, 'by-pem': s.bravo.rootPem, 'by-name': 'partner:bravo/mtls' };
  await s.server.apply({ clients: Object.entries(forms).map(([id, anchor]) => connector(id, anchor)) });
  const forged = s.alpha.issue('forged', { subject: bravoSubject });
  const own = s.bravo.issue('bravo-connector', { subject: bravoSubject });
  for (const id of Object.keys(forms)) {
    assert.equal((await token(s, id, forged)).status, 401, `${id} refuses Alpha's certificate`);
    const accepted = await token(s, id, own);
    assert.equal(accepted.status, 200, `${id}: ${JSON.stringify(accepted.body)}`);
    assert.deepEqual(decodeJwt(accepted.body.access_token!).cnf, { 'x5t#S256': own.thumbprint });
  }
});

test('a revoked partner certificate is refused, by OCSP and by the CRL', async (t) => {
  const s = await twoPartners(t, { revocation: { mode: 'hard', ocsp: true, crl: false, cache_seconds: 0 } });
  await s.server.apply({ clients: [connector('bravo-connector', 'partner:bravo/mtls')] });
  const revoked = s.bravo.issue('stolen', { subject: bravoSubject });
  s.bravo.revoke(revoked);

  const byOcsp = await token(s, 'bravo-connector', revoked);
  assert.equal(byOcsp.status, 401);
  assert.equal(byOcsp.body.error_description, 'the client certificate has been revoked');
  const event = await lastEvent(s.server, 'client.auth_failed', 'bravo-connector');
  assert.equal(event.details?.reason, 'certificate_revoked');
  assert.equal(event.details?.partner, 'bravo');
  assert.match(event.decision!.reasons[0]!, /was revoked by its CA \(ocsp/);

  await s.server.apply({ partners: [await partner('bravo', s.bravo, { revocation: { mode: 'hard', ocsp: false, crl: true, cache_seconds: 0 } })] });
  const crlBefore = s.bravo.served.crl;
  const byCrl = await token(s, 'bravo-connector', revoked);
  assert.equal(byCrl.status, 401);
  assert.match((await lastEvent(s.server, 'client.auth_failed', 'bravo-connector')).decision!.reasons[0]!, /was revoked by its CA \(crl/);
  assert.equal(s.bravo.served.crl, crlBefore + 1);
  assert.equal((await token(s, 'bravo-connector', s.bravo.issue('fresh', { subject: bravoSubject }))).status, 200);
});

test('when the partner’s responders are unreachable, a hard-failing profile refuses and a soft-failing one lets the client in on the record', async (t) => {
  const s = await twoPartners(t, { revocation: { mode: 'soft', cache_seconds: 0, timeout_ms: 1000 } });
  await s.server.apply({ clients: [connector('bravo-connector', 'partner:bravo/mtls')] });
  const own = s.bravo.issue('bravo-connector', { subject: bravoSubject });
  s.bravo.down = true;

  const soft = await token(s, 'bravo-connector', own);
  assert.equal(soft.status, 200, JSON.stringify(soft.body));
  const noted = await lastEvent(s.server, 'client.authenticated', 'bravo-connector');
  assert.equal(noted.details?.revocation, 'unavailable');
  assert.equal(noted.details?.trust_anchor, 'partner:bravo/mtls');
  assert.match(String(noted.details?.revocation_detail), /OCSP: the OCSP responder answered 503; CRL: the CRL distribution point answered 503/);

  await s.server.apply({ partners: [await partner('bravo', s.bravo, { revocation: { mode: 'hard', cache_seconds: 0, timeout_ms: 1000 } })] });
  const hard = await token(s, 'bravo-connector', own);
  assert.equal(hard.status, 401);
  assert.equal(hard.body.error, 'invalid_client');
  assert.equal(hard.body.error_description, 'the revocation status of the client certificate could not be checked');
  assert.equal((await lastEvent(s.server, 'client.auth_failed', 'bravo-connector')).details?.reason, 'certificate_revocation_unavailable');

  s.bravo.down = false;
  assert.equal((await token(s, 'bravo-connector', own)).status, 200);
});

test('a partner CA’s responders on a private address are never asked unless the partner allows the private network, and the client is refused even by a soft-failing profile', async (t) => {
  const s = await twoPartners(t, { allow_private_network: false, revocation: { mode: 'soft', cache_seconds: 0, timeout_ms: 1000 } });
  await s.server.apply({ clients: [connector('bravo-connector', 'partner:bravo/mtls')] });
  const own = s.bravo.issue('bravo-connector', { subject: bravoSubject });
  // Soft fail rides out a responder that is down, not one Clearance's own rules refuse to ask:
  // that is a configuration to fix, and letting clients in unchecked meanwhile would fail open.
  const soft = await token(s, 'bravo-connector', own);
  assert.equal(soft.status, 401, JSON.stringify(soft.body));
  assert.equal(soft.body.error, 'invalid_client');
  const noted = await lastEvent(s.server, 'client.auth_failed', 'bravo-connector');
  assert.equal(noted.details?.reason, 'certificate_revocation_unavailable');

  await s.server.apply({ partners: [await partner('bravo', s.bravo, { allow_private_network: false, revocation: { mode: 'hard', cache_seconds: 0, timeout_ms: 1000 } })] });
  const hard = await token(s, 'bravo-connector', own);
  assert.equal(hard.status, 401);
  assert.equal(hard.body.error, 'invalid_client');
  assert.deepEqual(s.bravo.served, { ocsp: 0, crl: 0, rootOcsp: 0, rootCrl: 0 }, 'the responders were never sent a request');
});

/**
 * Whether this Node exposes a client's certificate chain on the server side: nodejs/node#65579
 * (Node 26.8, and the 24.x line that took the same change) drops it from getPeerCertificate(true).
 */
async function serverSeesPeerChain(tls: Pki, certificate: PartnerCertificate, rootPem: string): Promise<boolean> {
  const server = createHttpsServer({ cert: tls.server.cert, key: tls.server.key, ca: rootPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    res.end(String(Boolean((req.socket as TLSSocket).getPeerCertificate(true).issuerCertificate)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const dispatcher = new Agent({ connect: { ca: tls.ca.cert, cert: certificate.chain, key: certificate.key } });
  try {
    const response = await request(`https://127.0.0.1:${(server.address() as { port: number }).port}/`, { dispatcher });
    return (await response.body.text()) === 'true';
  } finally {
    await dispatcher.close();
    server.close();
  }
}

test('over TLS a certificate under the partner’s issuing CA ends at its root: through the handshake’s chain, or the intermediates the profile lists', async (t) => {
  forgetRevocationAnswers();
  const tls = makePki(t);
  const charlie = await makePartnerPki(t, { name: 'Charlie', intermediate: true });
  const bundle = join(tls.dir, 'charlie.pem');
  writeFileSync(bundle, charlie.rootPem);
  const server = await startTestServer({ t, env: { CLEARANCE_TLS_CERT: tls.server.certFile, CLEARANCE_TLS_KEY: tls.server.keyFile, CLEARANCE_TLS_CLIENT_CA: bundle } });
  const own = charlie.issue('charlie-connector', { subject: '/CN=charlie-connector' });
  const s = { server, tls } as Setup;
  await server.apply({
    resource_servers: [{ identifier: clearingApi, scopes: ['settlement:submit'] }],
    partners: [await partner('charlie', charlie)],
    clients: [connector('charlie-connector', 'partner:charlie/mtls', 'CN=charlie-connector')],
  });
  const listed = await token(s, 'charlie-connector', own);
  assert.equal(listed.status, 200, JSON.stringify(listed.body));

  // Without the profile's intermediates, only the chain the client sent can reach the root.
  const withoutIntermediates = await partner('charlie', charlie);
  (withoutIntermediates.trust_anchors as Record<string, unknown>[])[0] = { name: 'mtls', certificate: charlie.rootPem };
  await server.apply({ partners: [withoutIntermediates] });
  const chained = await token(s, 'charlie-connector', own);
  if (await serverSeesPeerChain(tls, own, charlie.rootPem)) assert.equal(chained.status, 200, JSON.stringify(chained.body));
  else {
    assert.equal(chained.status, 401, 'this Node hides the handshake’s chain (nodejs/node#65579): the profile must list the intermediates');
    t.diagnostic('this Node does not expose the client’s chain on the server side (nodejs/node#65579)');
  }
});

test('through the trusted proxy’s header (the leaf only) the path is built with the intermediates the partner’s profile lists', async (t) => {
  forgetRevocationAnswers();
  const alpha = await makePartnerPki(t, { name: 'Alpha' });
  const charlie = await makePartnerPki(t, { name: 'Charlie', intermediate: true });
  const server = await startTestServer({ t, env: { CLEARANCE_CLIENT_CERT_HEADER: 'Client-Cert', CLEARANCE_TRUSTED_PROXIES: '127.0.0.1' } });
  const withoutIntermediates = await partner('charlie', charlie);
  (withoutIntermediates.trust_anchors as Record<string, unknown>[])[0] = { name: 'mtls', certificate: charlie.rootPem };
  await server.apply({
    resource_servers: [{ identifier: clearingApi, scopes: ['settlement:submit'] }],
    partners: [await partner('alpha', alpha), withoutIntermediates],
    clients: [connector('charlie-connector', 'partner:charlie/mtls', 'CN=charlie-connector')],
  });
  const viaProxy = async (certificate: PartnerCertificate) => {
    const response = await fetch(`${server.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'client-cert': certificate.header },
      body: 'grant_type=client_credentials&client_id=charlie-connector&scope=settlement%3Asubmit',
    });
    return { status: response.status, body: (await response.json()) as Record<string, string> };
  };
  const own = charlie.issue('charlie-connector', { subject: '/CN=charlie-connector' });
  const forged = alpha.issue('forged', { subject: '/CN=charlie-connector' });

  const missing = await viaProxy(own);
  assert.equal(missing.status, 401, 'the leaf alone does not reach the root');
  assert.equal(missing.body.error, 'invalid_client');

  await server.apply({ partners: [await partner('charlie', charlie)] });
  const accepted = await viaProxy(own);
  assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
  assert.deepEqual(decodeJwt(accepted.body.access_token!).cnf, { 'x5t#S256': own.thumbprint });
  assert.equal((await viaProxy(forged)).status, 401);
  assert.equal((await lastEvent(server, 'client.auth_failed', 'charlie-connector')).details?.reason, 'certificate_untrusted_anchor');

  charlie.revoke(own);
  await server.apply({ partners: [await partner('charlie', charlie, { revocation: { cache_seconds: 0 } })] });
  assert.equal((await viaProxy(own)).status, 401);
  assert.equal((await lastEvent(server, 'client.auth_failed', 'charlie-connector')).details?.reason, 'certificate_revoked');
});

test('bad anchors are refused at apply with a clear problem at their path', async (t) => {
  const s = await twoPartners(t);
  const leaf = s.bravo.issue('leaf', { subject: '/CN=leaf' });
  const refusal = async (document: Record<string, unknown>) => {
    await assert.rejects(s.server.apply(document), (error: Error) => {
      (refusal as { last?: string }).last = error.message;
      return true;
    });
    return (refusal as { last?: string }).last!;
  };
  assert.match(await refusal({ clients: [connector('c1', 'partner:delta/mtls')] }), /clients\[0\]\.tls_client_auth_trust_anchor: names partner "delta", which is not a partner in service/);
  assert.match(await refusal({ clients: [connector('c1', 'partner:bravo/other')] }), /clients\[0\]\.tls_client_auth_trust_anchor: names trust anchor "other", which partner bravo does not declare \(its trust_anchors: mtls\)/);
  assert.match(await refusal({ clients: [connector('c1', 'ab'.repeat(32))] }), /clients\[0\]\.tls_client_auth_trust_anchor: is the thumbprint of no CA certificate in CLEARANCE_TLS_CLIENT_CA or among the partners' trust_anchors/);
  assert.match(await refusal({ clients: [connector('c1', leaf.cert)] }), /clients\[0\]\.tls_client_auth_trust_anchor: the certificate is not a CA certificate/);
  assert.match(await refusal({ partners: [await partner('delta', s.bravo)] }), /partners\[0\]\.trust_anchors\[0\]\.certificate: is also a trust anchor of partner bravo/);
  assert.match(await refusal({ partners: [{ ...(await partner('delta', s.alpha)), id: 'delta', issuer: 'https://delta.example.com', trust_anchors: [{ name: 'mtls', certificate: leaf.cert }] }] }), /partners\[0\]\.trust_anchors\[0\]\.certificate: the certificate is not a CA certificate/);
  assert.match(await refusal({ partners: [await partner('bravo', s.bravo, { revocation: { mode: 'hard', ocsp: false, crl: false } })] }), /partners\[0\]\.revocation: mode hard needs ocsp or crl/);
  assert.match(await refusal({ partners: [await partner('bravo', s.bravo, { revocation: { mode: 'sometimes' } })] }), /partners\[0\]\.revocation\.mode: must be one of hard, soft, off/);
  assert.match(await refusal({ partners: [await partner('bravo', s.bravo, { trust_anchors: [{ name: 'mtls', certificate: s.bravo.rootPem, intermediates: s.alpha.rootPem }] })] }), /partners\[0\]\.trust_anchors\[0\]\.intermediates: certificate 1: does not chain to the anchor/);

  // A partner's new profile cannot drop an anchor a stored client is bound to.
  await s.server.apply({ clients: [connector('bravo-connector', 'partner:bravo/mtls')] });
  assert.match(await refusal({ partners: [await partner('bravo', s.bravo, { trust_anchors: [{ name: 'renamed', certificate: s.bravo.rootPem }] })] }), /partners\[0\]\.trust_anchors: no longer declares "mtls", which client bravo-connector is bound to/);
});

test('every certificate of the path is checked for revocation, not only the client’s: a revoked issuing CA refuses what it issued, by OCSP and by the CRL', async (t) => {
  forgetRevocationAnswers();
  const charlie = await makePartnerPki(t, { name: 'Charlie', intermediate: true });
  const server = await startTestServer({ t, env: { CLEARANCE_CLIENT_CERT_HEADER: 'Client-Cert', CLEARANCE_TRUSTED_PROXIES: '127.0.0.1' } });
  const hardBy = (source: 'ocsp' | 'crl') => ({ revocation: { mode: 'hard', ocsp: source === 'ocsp', crl: source === 'crl', cache_seconds: 0 } });
  await server.apply({
    resource_servers: [{ identifier: clearingApi, scopes: ['settlement:submit'] }],
    partners: [await partner('charlie', charlie, hardBy('ocsp'))],
    clients: [connector('charlie-connector', 'partner:charlie/mtls', 'CN=charlie-connector')],
  });
  const own = charlie.issue('charlie-connector', { subject: '/CN=charlie-connector' });
  const viaProxy = async () =>
    (
      await fetch(`${server.issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'client-cert': own.header },
        body: 'grant_type=client_credentials&client_id=charlie-connector&scope=settlement%3Asubmit',
      })
    ).status;
  assert.equal(await viaProxy(), 200);
  assert.deepEqual([charlie.served.ocsp, charlie.served.rootOcsp], [1, 1], 'the client’s certificate at the issuing CA’s responder, the issuing CA’s at the root’s');

  charlie.revokeIssuingCa();
  assert.equal(await viaProxy(), 401);
  const byOcsp = await lastEvent(server, 'client.auth_failed', 'charlie-connector');
  assert.equal(byOcsp.details?.reason, 'certificate_revoked');
  assert.match(byOcsp.decision!.reasons[0]!, /was revoked by its CA \(its issuing CA certificate at depth 1, serial [0-9a-f]+\) \(ocsp/);

  await server.apply({ partners: [await partner('charlie', charlie, hardBy('crl'))] });
  assert.equal(await viaProxy(), 401);
  assert.match((await lastEvent(server, 'client.auth_failed', 'charlie-connector')).decision!.reasons[0]!, /issuing CA certificate at depth 1.*\(crl/);
  assert.ok(charlie.served.rootCrl >= 1);
});

test('under the institutional profile a stored tls_client_auth client without a trust anchor is refused at authentication, on the record', async (t) => {
  forgetRevocationAnswers();
  const bravo = await makePartnerPki(t, { name: 'Bravo' });
  const server = await startTestServer({ t, env: { CLEARANCE_CLIENT_CERT_HEADER: 'Client-Cert', CLEARANCE_TRUSTED_PROXIES: '127.0.0.1', CLEARANCE_INSTITUTIONAL: 'true' } });
  await server.apply({ resource_servers: [{ identifier: clearingApi, scopes: ['settlement:submit'] }], partners: [await partner('bravo', bravo, { revocation: { mode: 'off' } })] });
  // Registration refuses such a client under the profile (src/clients/metadata.ts); one stored
  // before the profile was switched on, or written to the database around it, is refused here too.
  const { ctx } = server.running;
  const stored = (clientId: string, anchor?: string) => ({ ...connector(clientId, anchor), owner_lei: '5299000BROKERSXX0G95' }) as unknown as Parameters<typeof ctx.clients.upsert>[1];
  await ctx.storage.db.transaction().execute(async (trx) => {
    await ctx.clients.upsert(trx, stored('bravo-unbound'));
    await ctx.clients.upsert(trx, stored('bravo-connector', 'partner:bravo/mtls'));
  });
  ctx.clients.invalidate();
  const own = bravo.issue('bravo-connector', { subject: bravoSubject });
  const viaProxy = (clientId: string) =>
    fetch(`${server.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'client-cert': own.header },
      body: `grant_type=client_credentials&client_id=${clientId}&scope=settlement%3Asubmit`,
    });
  assert.equal((await viaProxy('bravo-connector')).status, 200, 'the client bound to its CA');
  const refused = await viaProxy('bravo-unbound');
  assert.equal(refused.status, 401);
  assert.deepEqual(await refused.json(), { error: 'invalid_client', error_description: 'the client is not bound to the certificate authority that issues its certificates' });
  const event = await lastEvent(server, 'client.auth_failed', 'bravo-unbound');
  assert.equal(event.details?.reason, 'trust_anchor_required');
  assert.equal((event.details?.certificate as { sha256: string }).sha256, own.thumbprint);
  assert.match(event.decision!.reasons[0]!, /without tls_client_auth_trust_anchor, which the institutional profile \(CLEARANCE_INSTITUTIONAL=true\) requires/);
});
