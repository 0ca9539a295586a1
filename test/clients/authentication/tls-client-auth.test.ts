import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import { certificateThumbprint, parseSubjectAltName } from '../../../src/clients/authentication/tls-client-auth.ts';
import { basic, harness, makeCertificate, rejectsWith, type Certificate, type Harness } from './fixture.ts';

const subject = '/C=DE/O=Acme Clearing GmbH/OU=Rates/CN=oms-service';
const registeredDn = 'CN=oms-service,OU=Rates,O=Acme Clearing GmbH,C=DE';

/** A tls_client_auth client registered with `field`, and the request helper. */
async function tlsClient(t: TestContext, field: Record<string, string>): Promise<Harness> {
  const h = await harness(t);
  await h.register({ client_id: 'oms-service', token_endpoint_auth_method: 'tls_client_auth', ...field });
  return h;
}

function present(h: Harness, cert: Certificate | undefined, chainVerified = true, clientId = 'oms-service') {
  return h.authenticate({ body: { client_id: clientId }, certificate: cert?.certificate, certificateChainVerified: chainVerified });
}

describe('tls_client_auth by subject DN', () => {
  test('authenticates a client whose CA-validated certificate has the registered subject DN', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_subject_dn: registeredDn });
    const cert = makeCertificate({ subject });
    const result = await present(h, cert);
    assert.equal(result.method, 'tls_client_auth');
    assert.equal(result.certificateThumbprint, certificateThumbprint(cert.certificate));
  });

  test('matches a registered DN written with other attribute-type spellings and spaces', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_subject_dn: 'cn=oms-service, ou=Rates, o=Acme Clearing GmbH, 2.5.4.6=DE' });
    assert.equal((await present(h, makeCertificate({ subject }))).method, 'tls_client_auth');
  });

  test('matches a subject with a comma, a plus sign and a multi-valued RDN', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_subject_dn: 'CN=oms-service,OU=Credit+OU=Rates,O=Acme\\, Inc. \\+ Co,C=DE' });
    const cert = makeCertificate({ subject: '/C=DE/O=Acme, Inc. \\+ Co/OU=Rates+OU=Credit/CN=oms-service', multivalue: true });
    assert.equal((await present(h, cert)).method, 'tls_client_auth');
  });

  test('rejects a certificate whose subject DN does not match', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_subject_dn: registeredDn });
    await rejectsWith(present(h, makeCertificate({ subject: '/C=DE/O=Acme Clearing GmbH/OU=Credit/CN=oms-service' })), {
      detail: /certificate subject "CN=oms-service,OU=Credit,O=Acme Clearing GmbH,C=DE" is not client oms-service's registered/,
    });
  });

  test('rejects a subject DN with the same attributes in another order', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_subject_dn: registeredDn });
    await rejectsWith(present(h, makeCertificate({ subject: '/CN=oms-service/OU=Rates/O=Acme Clearing GmbH/C=DE' })), { detail: /is not client oms-service's registered/ });
  });

  test('rejects a subject DN that differs only in letter case of a value', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_subject_dn: registeredDn });
    await rejectsWith(present(h, makeCertificate({ subject: '/C=DE/O=Acme Clearing GmbH/OU=Rates/CN=OMS-service' })), { detail: /is not client oms-service's registered/ });
  });

  test('rejects a subject DN with an extra RDN', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_subject_dn: registeredDn });
    await rejectsWith(present(h, makeCertificate({ subject: `${subject}/emailAddress=ops@acme.example` })), { detail: /is not client oms-service's registered/ });
  });

  test('rejects a request with no certificate', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_subject_dn: registeredDn });
    await rejectsWith(present(h, undefined), { detail: /uses tls_client_auth but presented no certificate/, description: /certificate is required/ });
  });

  test('rejects a certificate whose chain the TLS layer did not validate', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_subject_dn: registeredDn });
    await rejectsWith(present(h, makeCertificate({ subject }), false), { detail: /chain was not validated/ });
  });

  test('rejects a certificate outside its validity period', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_subject_dn: registeredDn });
    const cert = makeCertificate({ subject, days: 1 });
    h.clock.advance(2 * 24 * 3600 * 1000);
    await rejectsWith(present(h, cert), { detail: /outside its validity period/ });
  });

  test("rejects client A's certificate presented with client B's client_id", async (t) => {
    const h = await tlsClient(t, { tls_client_auth_subject_dn: registeredDn });
    await h.register({ client_id: 'risk-service', token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_subject_dn: 'CN=risk-service,O=Acme Clearing GmbH,C=DE' });
    await rejectsWith(present(h, makeCertificate({ subject }), true, 'risk-service'), { detail: /is not client risk-service's registered/ });
  });

  test('rejects a tls_client_auth client that sends a client secret instead', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_subject_dn: registeredDn });
    const cert = makeCertificate({ subject });
    await rejectsWith(h.authenticate({ authorization: basic('oms-service', 'x'), certificate: cert.certificate, certificateChainVerified: true }), {
      detail: /used client_secret_basic but is registered for tls_client_auth/,
    });
  });
});

describe('tls_client_auth by subject alternative name', () => {
  const san = 'DNS:oms.acme.example,URI:https://acme.example/clients/oms,IP:2001:db8::10,IP:192.0.2.44,email:Ops.Desk@Acme.example';

  test('matches the registered DNS name, ignoring letter case', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_san_dns: 'OMS.acme.example' });
    assert.equal((await present(h, makeCertificate({ subject: '/CN=whatever', san }))).method, 'tls_client_auth');
  });

  test('matches the registered URI exactly', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_san_uri: 'https://acme.example/clients/oms' });
    assert.equal((await present(h, makeCertificate({ subject: '/CN=whatever', san }))).method, 'tls_client_auth');
  });

  test('matches a registered IPv6 address written in another form', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_san_ip: '2001:0db8:0:0:0:0:0:10' });
    assert.equal((await present(h, makeCertificate({ subject: '/CN=whatever', san }))).method, 'tls_client_auth');
  });

  test('matches a registered IPv4 address', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_san_ip: '192.0.2.44' });
    assert.equal((await present(h, makeCertificate({ subject: '/CN=whatever', san }))).method, 'tls_client_auth');
  });

  test('matches a registered email address with the domain in another case', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_san_email: 'Ops.Desk@acme.EXAMPLE' });
    assert.equal((await present(h, makeCertificate({ subject: '/CN=whatever', san }))).method, 'tls_client_auth');
  });

  test('rejects an email address whose local part differs in case', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_san_email: 'ops.desk@acme.example' });
    await rejectsWith(present(h, makeCertificate({ subject: '/CN=whatever', san })), { detail: /has no email entry equal to/ });
  });

  test('rejects a URI that differs in any character', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_san_uri: 'https://acme.example/clients/oms/' });
    await rejectsWith(present(h, makeCertificate({ subject: '/CN=whatever', san })), { detail: /has no uri entry equal to/ });
  });

  test('rejects a DNS name found only in another SAN type or in the subject CN', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_san_dns: 'acme.example' });
    const cert = makeCertificate({ subject: '/CN=acme.example', san: 'URI:acme.example,email:ops@acme.example' });
    await rejectsWith(present(h, cert), { detail: /has no dns entry equal to client oms-service's registered "acme.example"/ });
  });

  test('does not expand a wildcard DNS name in the certificate', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_san_dns: 'oms.acme.example' });
    await rejectsWith(present(h, makeCertificate({ subject: '/CN=x', san: 'DNS:*.acme.example' })), { detail: /has no dns entry/ });
  });

  test('rejects a certificate with no SAN at all', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_san_dns: 'oms.acme.example' });
    await rejectsWith(present(h, makeCertificate({ subject: '/CN=oms.acme.example' })), { detail: /SAN "\(none\)"/ });
  });

  test('reads the SAN string Node writes, including quoted values with commas', () => {
    assert.deepEqual(
      parseSubjectAltName('DNS:a.example, URI:"https://x.example/a, b", IP Address:10.0.0.1, othername:<unsupported>, email:o@x.example'),
      [
        { type: 'dns', value: 'a.example' },
        { type: 'uri', value: 'https://x.example/a, b' },
        { type: 'ip', value: '10.0.0.1' },
        { type: 'email', value: 'o@x.example' },
      ],
    );
  });

  test('reads a URI with a comma from a real certificate as one value', async (t) => {
    const h = await tlsClient(t, { tls_client_auth_san_uri: 'https://acme.example/a, DNS:oms.acme.example' });
    const cert = makeCertificate({ subject: '/CN=x', sanLines: ['URI.1 = https://acme.example/a, DNS:oms.acme.example'] });
    assert.match(cert.certificate.subjectAltName ?? '', /^URI:"/); // Node quotes it
    assert.equal((await present(h, cert)).method, 'tls_client_auth');
    const other = await tlsClient(t, { tls_client_auth_san_dns: 'oms.acme.example' });
    await rejectsWith(present(other, cert), { detail: /has no dns entry/ });
  });
});

describe('self_signed_tls_client_auth', () => {
  async function selfSigned(t: TestContext, keys: Record<string, unknown>[]): Promise<Harness> {
    const h = await harness(t);
    await h.register({ client_id: 'algo-7', kind: 'agent', token_endpoint_auth_method: 'self_signed_tls_client_auth', jwks: { keys } });
    return h;
  }

  for (const key of ['ec', 'ed25519', 'rsa'] as const) {
    test(`authenticates a client whose ${key} certificate key is in its registered jwks`, async (t) => {
      const cert = makeCertificate({ subject: '/CN=algo-7', key });
      const h = await selfSigned(t, [cert.certificate.publicKey.export({ format: 'jwk' }) as Record<string, unknown>]);
      const result = await present(h, cert, false, 'algo-7');
      assert.equal(result.method, 'self_signed_tls_client_auth');
      assert.equal(result.certificateThumbprint, createHash('sha256').update(cert.certificate.raw).digest('base64url'));
    });
  }

  test('finds the certificate key among several registered keys', async (t) => {
    const other = makeCertificate({ subject: '/CN=other' });
    const cert = makeCertificate({ subject: '/CN=algo-7' });
    const jwk = (c: Certificate) => c.certificate.publicKey.export({ format: 'jwk' }) as Record<string, unknown>;
    const h = await selfSigned(t, [{ ...jwk(other), kid: 'old' }, { ...jwk(cert), kid: 'new' }]);
    assert.equal((await present(h, cert, false, 'algo-7')).method, 'self_signed_tls_client_auth');
  });

  test('authenticates by a certificate registered as x5c of a key', async (t) => {
    const cert = makeCertificate({ subject: '/CN=algo-7' });
    const jwk = cert.certificate.publicKey.export({ format: 'jwk' }) as Record<string, unknown>;
    const h = await selfSigned(t, [{ ...jwk, x5c: [cert.certificate.raw.toString('base64')] }]);
    assert.equal((await present(h, cert, false, 'algo-7')).method, 'self_signed_tls_client_auth');
  });

  test('rejects a certificate whose key is not registered', async (t) => {
    const registered = makeCertificate({ subject: '/CN=algo-7' });
    const h = await selfSigned(t, [registered.certificate.publicKey.export({ format: 'jwk' }) as Record<string, unknown>]);
    await rejectsWith(present(h, makeCertificate({ subject: '/CN=algo-7' }), false, 'algo-7'), {
      detail: /certificate key \(jkt [A-Za-z0-9_-]{43}\) is not among client algo-7's 1 registered keys/,
    });
  });

  test('rejects a request with no certificate', async (t) => {
    const cert = makeCertificate({ subject: '/CN=algo-7' });
    const h = await selfSigned(t, [cert.certificate.publicKey.export({ format: 'jwk' }) as Record<string, unknown>]);
    await rejectsWith(present(h, undefined, false, 'algo-7'), { detail: /uses self_signed_tls_client_auth but presented no certificate/ });
  });

  test('refuses a client that registered only a jwks_uri where no key source is configured', async (t) => {
    const h = await harness(t);
    await h.register({ client_id: 'algo-7', kind: 'agent', token_endpoint_auth_method: 'self_signed_tls_client_auth', jwks_uri: 'https://algo.example/jwks' });
    await rejectsWith(present(h, makeCertificate({ subject: '/CN=algo-7' }), false, 'algo-7'), { detail: /registered jwks_uri, but this server fetches no client keys/ });
  });
});
