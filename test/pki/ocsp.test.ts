import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { AsnConvert } from '@peculiar/asn1-schema';
import { OCSPResponse, OCSPResponseStatus } from '@peculiar/asn1-ocsp';
import { requestCertificate, type IssuedCertificate } from '../../src/pki/issuance.ts';
import { respondOcsp } from '../../src/pki/ocsp/index.ts';
import { revokeCertificate } from '../../src/pki/revocation.ts';
import { makePki } from '../helpers/pki.ts';
import { startTestServer } from '../helpers/server.ts';
import { testContext } from '../helpers/storage.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';
import { initTestCa, openssl, opensslAsync, opensslCsr, scratch, tradingAgentProfile } from './fixture.ts';

// The OCSP responder (RFC 6960) checked by an independent client: `openssl ocsp` asks Clearance
// over HTTP, verifies the delegated responder's signature against the root, and reads the status.

async function running(t: TestContext) {
  const server = await startTestServer({ t });
  const ctx = server.running.ctx;
  const init = await initTestCa(ctx);
  await server.apply({ certificate_profiles: [tradingAgentProfile] });
  const { files, issue } = issuer(t, ctx, init);
  const ask = (holder: string, extra: string[] = []) =>
    opensslAsync(['ocsp', '-issuer', files.at('issuing.pem'), '-cert', files.at(`${holder}.pem`), '-url', `${server.issuer}/pki/ocsp`, '-CAfile', files.at('root.pem'), ...extra]);
  return { server, ctx, files, issue, ask };
}

test('openssl ocsp verifies the responder and reads good, then revoked with its reason, with and without a nonce', async (t) => {
  const { ctx, issue, ask } = await running(t);
  const issued = await issue('algo-7');
  const good = await ask('algo-7', ['-resp_text']);
  assert.ok(good.ok, good.output);
  assert.match(good.output, /Response verify OK/);
  assert.match(good.output, /algo-7\.pem: good/);
  assert.match(good.output, /OCSP Nonce/, 'the nonce openssl sent is echoed');
  assert.match(good.output, /Responder Id: [0-9A-F]{40}/, 'responder identified by key hash');
  await revokeCertificate(ctx, { serial: issued.serial, reason: 'keyCompromise', actor: 'test' });
  const revoked = await ask('algo-7', ['-no_nonce']);
  assert.ok(revoked.ok, revoked.output);
  assert.match(revoked.output, /Response verify OK/);
  assert.match(revoked.output, /algo-7\.pem: revoked/);
  assert.match(revoked.output, /Reason: keyCompromise/);
});

test('a certificate of another CA is refused as unauthorized; GET and POST answer alike', async (t) => {
  const { server, files, issue, ask } = await running(t);
  await issue('algo-8');
  const other = makePki(t);
  const stranger = other.issueClient('stranger', '/CN=stranger');
  const refused = await opensslAsync(['ocsp', '-issuer', other.ca.certFile, '-cert', stranger.certFile, '-url', `${server.issuer}/pki/ocsp`, '-CAfile', other.ca.certFile]);
  assert.match(refused.output, /unauthorized/i);
  // The same request by GET (RFC 6960 Appendix A.1): base64 of the DER, URL-encoded.
  openssl(['ocsp', '-issuer', files.at('issuing.pem'), '-cert', files.at('algo-8.pem'), '-no_nonce', '-reqout', files.at('req.der')]);
  const der = (await import('node:fs')).readFileSync(files.at('req.der'));
  const viaGet = await fetch(`${server.issuer}/pki/ocsp/${encodeURIComponent(der.toString('base64'))}`);
  assert.equal(viaGet.status, 200);
  assert.equal(viaGet.headers.get('content-type'), 'application/ocsp-response');
  files.write('resp.der', Buffer.from(await viaGet.arrayBuffer()));
  const read = await opensslAsync(['ocsp', '-respin', files.at('resp.der'), '-issuer', files.at('issuing.pem'), '-cert', files.at('algo-8.pem'), '-CAfile', files.at('root.pem')]);
  assert.match(read.output, /Response verify OK/);
  assert.match(read.output, /algo-8\.pem: good/);
  const viaPost = await fetch(`${server.issuer}/pki/ocsp`, { method: 'POST', headers: { 'content-type': 'application/ocsp-request' }, body: der });
  assert.equal(viaPost.status, 200);
  assert.match(viaPost.headers.get('cache-control') ?? '', /no-cache/);
});

test('a serial the CA never issued is unknown, never good; malformed requests are malformedRequest', async (t) => {
  const { ctx, files, issue } = await testContextCa(t);
  await issue('algo-9');
  // A request for a serial nobody issued: edit the serial of a real request.
  openssl(['ocsp', '-issuer', files.at('issuing.pem'), '-serial', '0x4242424242', '-no_nonce', '-reqout', files.at('unknown.der')]);
  const der = (await import('node:fs')).readFileSync(files.at('unknown.der'));
  files.write('unknown-resp.der', await respondOcsp(ctx, der));
  const read = await opensslAsync(['ocsp', '-respin', files.at('unknown-resp.der'), '-issuer', files.at('issuing.pem'), '-serial', '0x4242424242', '-CAfile', files.at('root.pem')]);
  assert.match(read.output, /Response verify OK/);
  assert.match(read.output, /0x4242424242: unknown/);
  const status = async (bytes: Uint8Array) => AsnConvert.parse(await respondOcsp(ctx, bytes), OCSPResponse).responseStatus;
  assert.equal(await status(Buffer.from('not an OCSP request')), OCSPResponseStatus.malformedRequest);
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (bytes) => {
      const answer = await status(bytes);
      return answer === OCSPResponseStatus.malformedRequest || answer === OCSPResponseStatus.unauthorized || answer === OCSPResponseStatus.successful;
    }),
    { numRuns: 200 },
  );
});

/** Files for openssl (the root and issuing CA certificates) and issuance of trading-agent certificates written beside them. */
function issuer(t: TestContext, ctx: Parameters<typeof requestCertificate>[0], init: Awaited<ReturnType<typeof initTestCa>>) {
  const files = scratch(t);
  files.write('root.pem', init.root.toString('pem'));
  files.write('issuing.pem', init.intermediate.toString('pem'));
  const issue = async (holder: string) => {
    const issued = (await requestCertificate(ctx, { profile: 'trading-agent', csr: opensslCsr(files, holder).csrPem, holder, requestedBy: 'test', requesterType: 'client' })) as IssuedCertificate;
    files.write(`${holder}.pem`, issued.certificatePem);
    return issued;
  };
  return { files, issue };
}

async function testContextCa(t: TestContext) {
  const { ctx } = await testContext({ t, risk: 'off' });
  const init = await initTestCa(ctx);
  const { applyDocument } = await import('./fixture.ts');
  await applyDocument(ctx, { certificate_profiles: [tradingAgentProfile] });
  const { files, issue } = issuer(t, ctx, init);
  return { ctx, files, issue };
}

test('the OCSP client verifies an answer offline: good, revoked with its time, and refuses a stale or foreign one', async (t) => {
  const { ctx, files, issue } = await testContextCa(t);
  const { X509Certificate } = await import('node:crypto');
  const { ocspRequest, readOcspResponse, OcspError } = await import('../../src/guard/ocsp.ts');
  const issued = await issue('algo-10');
  const leaf = new X509Certificate(issued.certificatePem);
  const issuer = new X509Certificate((await import('node:fs')).readFileSync(files.at('issuing.pem')));
  const now = ctx.clock.now();
  const good = readOcspResponse(await respondOcsp(ctx, ocspRequest(leaf, issuer)), leaf, issuer, { at: now });
  assert.equal(good.status, 'good');
  assert.equal(good.serial, issued.serial);
  await revokeCertificate(ctx, { serial: issued.serial, reason: 'keyCompromise', actor: 'test' });
  const answer = await respondOcsp(ctx, ocspRequest(leaf, issuer));
  const revoked = readOcspResponse(answer, leaf, issuer, { at: now });
  assert.equal(revoked.status, 'revoked');
  assert.equal(revoked.reason, 1);
  assert.ok(revoked.revokedAt! >= now);
  assert.throws(() => readOcspResponse(answer, leaf, issuer, { at: now + 3600_000 }), OcspError);
  const other = (await testContextCa(t)).files;
  const foreignIssuer = new X509Certificate((await import('node:fs')).readFileSync(other.at('issuing.pem')));
  assert.throws(() => readOcspResponse(answer, leaf, foreignIssuer, { at: now }), OcspError);
});

test('a revoked certificate stays revoked in OCSP after it expires, never good, with its revocation time and reason', async (t) => {
  const { ctx, files, issue } = await testContextCa(t);
  const { X509Certificate } = await import('node:crypto');
  const { ocspRequest, readOcspResponse } = await import('../../src/guard/ocsp.ts');
  const { ManualClock } = await import('../../src/clock.ts');
  const issued = await issue('algo-11');
  const leaf = new X509Certificate(issued.certificatePem);
  const issuer = new X509Certificate((await import('node:fs')).readFileSync(files.at('issuing.pem')));
  const revoked = await revokeCertificate(ctx, { serial: issued.serial, reason: 'keyCompromise', actor: 'test' });
  // Past the certificate's 8 hours, and past the day the status cache remembers revoked serials for.
  (ctx.clock as InstanceType<typeof ManualClock>).advance(8 * 3600_000 + 2 * 86400_000);
  const later = ctx.clock.now();
  const answer = readOcspResponse(await respondOcsp(ctx, ocspRequest(leaf, issuer)), leaf, issuer, { at: later });
  assert.equal(answer.status, 'revoked', 'a relying party checking a signature made before expiry must learn the key was revoked');
  assert.equal(answer.revokedAt, revoked.revokedAt);
  assert.equal(answer.reason, 1);
});

test('in the issuing CA’s last two days, OCSP answers reuse one responder certificate instead of making one per request', async (t) => {
  const { ctx, clock } = await testContext({ t, risk: 'off' });
  const { initCa } = await import('../../src/pki/authority.ts');
  const { passphrase } = await import('./fixture.ts');
  // An issuing CA with one day left: no responder certificate can get more than two days.
  const init = await initCa(ctx.storage.db, ctx.pki.custodies, ctx.clock, {
    name: 'Short Lived',
    root: { custody: 'export', passphrase },
    intermediateCustody: 'software',
    keyType: 'EC-P256',
    rootLifetimeDays: 30,
    intermediateLifetimeDays: 1,
  });
  ctx.pki.authorities.invalidate();
  const { applyDocument } = await import('./fixture.ts');
  await applyDocument(ctx, { certificate_profiles: [tradingAgentProfile] });
  const { files, issue } = issuer(t, ctx, init);
  await issue('algo-12');
  openssl(['ocsp', '-issuer', files.at('issuing.pem'), '-cert', files.at('algo-12.pem'), '-no_nonce', '-reqout', files.at('req.der')]);
  const der = (await import('node:fs')).readFileSync(files.at('req.der'));
  for (let i = 0; i < 5; i++) {
    const answer = AsnConvert.parse(await respondOcsp(ctx, der), OCSPResponse);
    assert.equal(answer.responseStatus, OCSPResponseStatus.successful);
    clock.advance(1);
  }
  const responders = await ctx.storage.db.selectFrom('pki_authorities').select('id').where('role', '=', 'ocsp').execute();
  assert.equal(responders.length, 1, 'an unauthenticated request must not make the CA sign a new responder certificate and store a new key each time');
  assert.equal((await ctx.storage.db.selectFrom('custody_keys').select('ref').execute()).length, 2, 'the issuing key and one responder key');
});

/** A context whose issuing CA has one day left (every responder ends with it), a certificate issued, and an OCSP request for it. */
async function lastDaysCa(t: TestContext) {
  const test = await testContext({ t, risk: 'off' });
  const { initCa } = await import('../../src/pki/authority.ts');
  const { passphrase, applyDocument } = await import('./fixture.ts');
  const init = await initCa(test.ctx.storage.db, test.ctx.pki.custodies, test.ctx.clock, {
    name: 'Short Lived',
    root: { custody: 'export', passphrase },
    intermediateCustody: 'software',
    keyType: 'EC-P256',
    rootLifetimeDays: 30,
    intermediateLifetimeDays: 1,
  });
  test.ctx.pki.authorities.invalidate();
  await applyDocument(test.ctx, { certificate_profiles: [tradingAgentProfile] });
  const { files, issue } = issuer(t, test.ctx, init);
  await issue('algo-13');
  openssl(['ocsp', '-issuer', files.at('issuing.pem'), '-cert', files.at('algo-13.pem'), '-no_nonce', '-reqout', files.at('req.der')]);
  const der = (await import('node:fs')).readFileSync(files.at('req.der'));
  return { ...test, der };
}

const answered = async (ctx: Parameters<typeof respondOcsp>[0], der: Uint8Array) => AsnConvert.parse(await respondOcsp(ctx, der), OCSPResponse).responseStatus;

test('two OCSP requests in the same millisecond, when the responder is to be made, both answer and make one responder', async (t) => {
  const { ctx, der } = await lastDaysCa(t);
  // The clock does not move: both requests see no responder, at the same instant.
  const statuses = await Promise.all([answered(ctx, der), answered(ctx, der)]);
  assert.deepEqual(statuses, [OCSPResponseStatus.successful, OCSPResponseStatus.successful]);
  const responders = await ctx.storage.db.selectFrom('pki_authorities').select('id').where('role', '=', 'ocsp').execute();
  assert.equal(responders.length, 1);
});

test('a second node making the responder in the millisecond another node made one answers, with that responder', async (t) => {
  const a = await lastDaysCa(t);
  const b = await openContext(a.config, { clock: a.clock, log: createLogger('silent'), storage: a.database.connect() });
  t.after(() => (b.audit as { close?: () => Promise<void> }).close?.());
  // Node B has read the CA's certificates before node A makes the responder (and, on SQLite, reads them again only a second later).
  await b.pki.authorities.all();
  assert.equal(await answered(a.ctx, a.der), OCSPResponseStatus.successful);
  assert.equal(await answered(b, a.der), OCSPResponseStatus.successful);
  const responders = await a.ctx.storage.db.selectFrom('pki_authorities').select('id').where('role', '=', 'ocsp').execute();
  assert.equal(responders.length, 1, 'node B uses the responder node A made');
});
