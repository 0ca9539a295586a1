import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { PkiError } from '../../src/pki/authority.ts';
import { publishCrl } from '../../src/pki/crl.ts';
import { requestCertificate, PkiRefusal, type IssuedCertificate } from '../../src/pki/issuance.ts';
import { revokeCertificate, RevocationError } from '../../src/pki/revocation.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import { applyDocument, initTestCa, openssl, opensslCsr, passphrase, scratch, tradingAgentProfile } from './fixture.ts';

// The private CA (docs/pki.md): what `ca init` makes, what an issuance under a profile gives, and
// that openssl — an independent checker — accepts the chain and the CRL and sees a revocation.

async function caHarness(t: TestContext, dialect = testDialects()[0]!) {
  const { ctx, clock } = await testContext({ t, dialect, risk: 'off' });
  const init = await initTestCa(ctx);
  await applyDocument(ctx, { certificate_profiles: [tradingAgentProfile] });
  const files = scratch(t);
  files.write('root.pem', init.root.toString('pem'));
  files.write('issuing.pem', init.intermediate.toString('pem'));
  return { ctx, clock, init, files };
}

async function issue(ctx: Parameters<typeof requestCertificate>[0], csr: string, holder = 'algo-7', extra: { lifetimeSeconds?: number } = {}) {
  const outcome = await requestCertificate(ctx, { profile: 'trading-agent', csr, holder, requestedBy: 'pipeline', requesterType: 'client', ...extra });
  assert.equal(outcome.status, 'issued');
  return outcome as IssuedCertificate;
}

for (const dialect of testDialects()) {
  test(`[${dialect.name}] ca init makes a root whose key is exported encrypted and an issuing CA below it`, async (t) => {
    const { ctx, init } = await caHarness(t, dialect);
    assert.ok(init.encryptedRootKey?.includes('ENCRYPTED PRIVATE KEY'));
    assert.throws(() => createPrivateKey({ key: init.encryptedRootKey!, format: 'pem', passphrase: 'wrong passphrase' }));
    const rootKey = createPrivateKey({ key: init.encryptedRootKey!, format: 'pem', passphrase });
    const root = new X509Certificate(init.root.toString('pem'));
    assert.ok(createPublicKey(rootKey).equals(root.publicKey));
    assert.equal(root.ca, true);
    const issuing = new X509Certificate(init.intermediate.toString('pem'));
    assert.ok(issuing.checkIssued(root) && issuing.verify(root.publicKey));
    // The root's private key is nowhere in the database: its authority row has no key reference.
    const rows = await ctx.storage.db.selectFrom('pki_authorities').select(['role', 'key_ref']).execute();
    assert.deepEqual(rows.find((r) => r.role === 'root')?.key_ref, null);
    assert.match(rows.find((r) => r.role === 'issuing')?.key_ref ?? '', /^software:/);
    const custody = await ctx.storage.db.selectFrom('custody_keys').select(['private_key']).execute();
    assert.equal(custody.length, 1, 'only the issuing key is in custody');
    assert.ok(!custody[0]!.private_key.includes('PRIVATE KEY'), 'the custody key is sealed, not PEM');
  });

  test(`[${dialect.name}] a second ca init is refused while the CA exists`, async (t) => {
    const { ctx } = await caHarness(t, dialect);
    await assert.rejects(initTestCa(ctx), PkiError);
  });

  test(`[${dialect.name}] a certificate issued under a profile is accepted by openssl verify with the profile's names, EKU and policy`, async (t) => {
    const { ctx, files } = await caHarness(t, dialect);
    const { csrPem } = opensslCsr(files, 'algo-7');
    const issued = await issue(ctx, csrPem);
    const chain = files.write('chain.pem', issued.chainPem);
    files.write('leaf.pem', issued.certificatePem);
    const verified = openssl(['verify', '-CAfile', files.at('root.pem'), '-untrusted', chain, '-purpose', 'sslclient', files.at('leaf.pem')]);
    assert.ok(verified.ok, verified.output);
    const text = openssl(['x509', '-in', files.at('leaf.pem'), '-noout', '-text']).output;
    assert.match(text, /Subject: CN = algo-7, O = Example Broker/);
    assert.match(text, /URI:spiffe:\/\/broker\.example\/agent\/algo-7/);
    assert.match(text, /TLS Web Client Authentication/);
    assert.match(text, /Policy: 1\.3\.6\.1\.4\.1\.59999\.1\.1/);
    assert.match(text, /CRL Distribution Points:[\s\S]*\/pki\/crl\/issuing-/);
    assert.match(text, /OCSP - URI:.*\/pki\/ocsp/);
    const leaf = new X509Certificate(issued.certificatePem);
    assert.ok(leaf.validToDate.getTime() - ctx.clock.now() <= 8 * 3600_000);
  });

  test(`[${dialect.name}] a revoked certificate is on the next CRL, which openssl checks and refuses the certificate by`, async (t) => {
    const { ctx, files } = await caHarness(t, dialect);
    const issued = await issue(ctx, opensslCsr(files, 'algo-7').csrPem);
    const kept = await issue(ctx, opensslCsr(files, 'algo-8').csrPem, 'algo-8');
    const { authority } = await ctx.pki.authorities.issuing();
    const before = await publishCrl(ctx, authority.id);
    await revokeCertificate(ctx, { serial: issued.serial, reason: 'keyCompromise', actor: 'test' });
    const crl = files.write('crl.der', await publishCrl(ctx, authority.id));
    assert.ok(openssl(['crl', '-inform', 'DER', '-in', crl, '-out', files.at('crl.pem')]).ok);
    const text = openssl(['crl', '-in', files.at('crl.pem'), '-noout', '-text']).output;
    assert.match(text, new RegExp(`Serial Number: ${issued.serial.toUpperCase()}`));
    assert.ok(!text.includes(kept.serial.toUpperCase()));
    assert.match(text, /Key Compromise/);
    // RFC 5280 §5.2.3: the CRL number grows.
    const number = (der: Buffer) => Number(/CRL Number: \n\s*(\d+)/.exec(openssl(['crl', '-inform', 'DER', '-in', files.write('n.der', der), '-noout', '-text']).output)?.[1]);
    assert.ok(number(await publishCrl(ctx, authority.id)) > number(before));
    files.write('chain.pem', issued.chainPem);
    const check = (leaf: string) => openssl(['verify', '-crl_check', '-CRLfile', files.at('crl.pem'), '-CAfile', files.at('root.pem'), '-untrusted', files.at('chain.pem'), files.write('leaf.pem', leaf)]);
    const refused = check(issued.certificatePem);
    assert.equal(refused.ok, false);
    assert.match(refused.output, /certificate revoked/);
    assert.ok(check(kept.certificatePem).ok);
  });
}

test('a revocation is final: a second one is refused, as is an unknown serial or reason', async (t) => {
  const { ctx, files } = await caHarness(t);
  const issued = await issue(ctx, opensslCsr(files, 'algo-7').csrPem);
  await revokeCertificate(ctx, { serial: issued.serial, reason: 'superseded', actor: 'test' });
  await assert.rejects(revokeCertificate(ctx, { serial: issued.serial, reason: 'superseded', actor: 'test' }), (e: RevocationError) => e.code === 'already_revoked');
  await assert.rejects(revokeCertificate(ctx, { serial: '4000', reason: 'superseded', actor: 'test' }), (e: RevocationError) => e.code === 'unknown_certificate');
  await assert.rejects(revokeCertificate(ctx, { serial: issued.serial, reason: 'certificateHold', actor: 'test' }), (e: RevocationError) => e.code === 'bad_reason');
});

test('issuance refuses what the profile does not allow, each with its reason recorded', async (t) => {
  const { ctx, files } = await caHarness(t);
  const refusal = async (code: string, input: Partial<Parameters<typeof requestCertificate>[1]>) => {
    await assert.rejects(
      requestCertificate(ctx, { profile: 'trading-agent', csr: opensslCsr(files, 'x').csrPem, holder: 'algo-7', requestedBy: 'pipeline', requesterType: 'client', ...input }),
      (e: PkiRefusal) => e instanceof PkiRefusal && e.code === code,
    );
  };
  await refusal('unknown_profile', { profile: 'nobody' });
  await refusal('invalid_csr', { csr: 'not a csr' });
  const { csrPem } = opensslCsr(files, 'tampered');
  const der = Buffer.from(csrPem.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64');
  der[der.length - 5]! ^= 0x01;
  await refusal('invalid_csr', { csr: der.toString('base64') });
  await refusal('key_type', { csr: opensslCsr(files, 'rsa', { keyArgs: ['-newkey', 'rsa:2048'] }).csrPem });
  await refusal('key_type', { csr: opensslCsr(files, 'p384', { keyArgs: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'] }).csrPem });
  await refusal('names', { csr: opensslCsr(files, 'wide', { san: 'URI:spiffe://broker.example/agent/algo-9' }).csrPem });
  await refusal('names', { csr: opensslCsr(files, 'dns', { san: 'DNS:evil.example' }).csrPem });
  await refusal('names', { holder: 'algo-7,O=Other' });
  await refusal('names', { holder: '../admin' });
  await refusal('lifetime', { lifetimeSeconds: 8 * 3600 + 1 });
  await refusal('lifetime', { lifetimeSeconds: 10 });
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'pki.issuance_refused').execute();
  const reasons = rows.map((r) => (JSON.parse(r.event) as { details: { reason: string } }).details.reason);
  assert.deepEqual(reasons, ['unknown_profile', 'invalid_csr', 'invalid_csr', 'key_type', 'key_type', 'names', 'names', 'names', 'names', 'lifetime', 'lifetime']);
  assert.equal(await ctx.storage.db.selectFrom('pki_certificates').select('serial').executeTakeFirst(), undefined);
});

test('a CSR asking for exactly the names the profile gives is issued, and Ed25519 keys are accepted', async (t) => {
  const { ctx, files } = await caHarness(t);
  await issue(ctx, opensslCsr(files, 'same', { san: 'URI:spiffe://broker.example/agent/algo-7' }).csrPem);
  const ed = await issue(ctx, opensslCsr(files, 'ed', { keyArgs: ['-newkey', 'ed25519'] }).csrPem);
  assert.equal(new X509Certificate(ed.certificatePem).publicKey.asymmetricKeyType, 'ed25519');
});

test('the issued event records the serial, profile and key digest, never the certificate or a key', async (t) => {
  const { ctx, files } = await caHarness(t);
  const issued = await issue(ctx, opensslCsr(files, 'algo-7').csrPem);
  const row = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'pki.certificate_issued').executeTakeFirstOrThrow();
  const event = JSON.parse(row.event) as { subject: string; actor: string; details: Record<string, unknown> };
  assert.equal(event.subject, 'algo-7');
  assert.equal(event.actor, 'pipeline');
  assert.equal(event.details.serial, issued.serial);
  assert.equal(event.details.profile, 'trading-agent');
  assert.equal(event.details.control, 'financial');
  assert.match(String(event.details.spki_sha256), /^[A-Za-z0-9_-]{43}$/);
  assert.ok(!row.event.includes('BEGIN'), 'no PEM in the event');
});

test('a name outside the profile name constraints is refused even when the template makes it', async (t) => {
  const { ctx, files } = await caHarness(t);
  await applyDocument(ctx, { certificate_profiles: [{ ...tradingAgentProfile, name: 'escaping', san: { uri: ['spiffe://other.example/{holder}'] } }] });
  await assert.rejects(
    requestCertificate(ctx, { profile: 'escaping', csr: opensslCsr(files, 'e').csrPem, holder: 'algo-7', requestedBy: 'p', requesterType: 'client' }),
    (e: PkiRefusal) => e.code === 'names' && /name constraints/.test(e.message),
  );
});

test('a revoked certificate stays on the CRL until a CRL issued after it expired has listed it (RFC 5280 §3.3), then leaves', async (t) => {
  const { ctx, clock, files } = await caHarness(t);
  const issued = await issue(ctx, opensslCsr(files, 'algo-7').csrPem, 'algo-7', { lifetimeSeconds: 3600 });
  const { authority } = await ctx.pki.authorities.issuing();
  await revokeCertificate(ctx, { serial: issued.serial, reason: 'keyCompromise', actor: 'test' });
  const serials = (der: Buffer) => openssl(['crl', '-inform', 'DER', '-in', files.write('listed.der', der), '-noout', '-text']).output;
  // Nobody asked for a CRL while the certificate was valid; the first one asked for afterwards is
  // the first issued beyond its validity period, and must list it.
  clock.advance(3600_000 + 10 * 60_000);
  const first = serials(await publishCrl(ctx, authority.id));
  assert.match(first, new RegExp(`Serial Number: ${issued.serial.toUpperCase()}`), 'the first CRL after expiry still lists the revoked certificate');
  assert.match(first, /Key Compromise/);
  // Once it has appeared on such a CRL, a later one may leave it out (the CRL stays bounded).
  clock.advance(31 * 60_000);
  const later = serials(await publishCrl(ctx, authority.id));
  assert.ok(!later.includes(issued.serial.toUpperCase()), later);
});
