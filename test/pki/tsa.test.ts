import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { requestTimestamp, TimestampError, timestampRequest, verifyTimestampResponse, verifyTimestampToken } from '../../src/pki/tsa.ts';
import { startLocalTsa } from '../helpers/tsa.ts';
import { opensslAsync } from './fixture.ts';

// The RFC 3161 client against openssl ts acting as a local TSA, and openssl ts -verify as the
// independent checker of what the client accepted.

const digest = createHash('sha256').update('signing evidence record').digest();

test('a stamp from a local openssl TSA verifies, within seconds of now, and openssl ts -verify agrees', async (t) => {
  const tsa = await startLocalTsa(t);
  const stamp = await requestTimestamp(tsa.url, digest, [tsa.ca]);
  assert.ok(Math.abs(stamp.genTime.getTime() - Date.now()) < 10_000);
  assert.equal(stamp.policy, '1.3.6.1.4.1.59999.9.1');
  assert.match(stamp.signer, /BEGIN CERTIFICATE/);
  const token = join(tsa.dir, 'token.der');
  writeFileSync(token, stamp.token);
  const checked = await opensslAsync(['ts', '-verify', '-digest', digest.toString('hex'), '-in', token, '-token_in', '-CAfile', join(tsa.dir, 'ca.pem'), '-untrusted', join(tsa.dir, 'tsa.pem')]);
  assert.match(checked.output, /Verification: OK/);
  // Offline, later: the stored token verifies without the TSA.
  assert.equal(verifyTimestampToken(stamp.token, { digest, trusted: [tsa.ca] }).genTime.getTime(), stamp.genTime.getTime());
});

test('a nonce whose random bytes begin with zeros is sent as a minimal DER INTEGER, which the TSA accepts and echoes', async (t) => {
  const tsa = await startLocalTsa(t);
  // One random nonce in 256 begins with 0x00: sent as it was, the INTEGER is malformed and openssl refuses it.
  for (const hex of ['0001020304050607', '0000000000000001', '0080010203040506', '8001020304050607']) {
    const nonce = Buffer.from(hex, 'hex');
    const response = await fetch(tsa.url, { method: 'POST', headers: { 'content-type': 'application/timestamp-query' }, body: timestampRequest(digest, nonce) });
    assert.equal(response.status, 200, hex);
    const stamp = verifyTimestampResponse(Buffer.from(await response.arrayBuffer()), { digest, nonce, trusted: [tsa.ca] });
    assert.ok(stamp.genTime instanceof Date, hex);
  }
});

test('a stamp is refused over another digest, tampered, from an untrusted TSA, or when the TSA does not answer', async (t) => {
  const tsa = await startLocalTsa(t);
  const stamp = await requestTimestamp(tsa.url, digest, [tsa.ca]);
  const other = createHash('sha256').update('another record').digest();
  assert.throws(() => verifyTimestampToken(stamp.token, { digest: other, trusted: [tsa.ca] }), (e: TimestampError) => /another digest/.test(e.message));
  const tampered = Buffer.from(stamp.token);
  tampered[tampered.length - 10]! ^= 0x01;
  assert.throws(() => verifyTimestampToken(tampered, { digest, trusted: [tsa.ca] }), TimestampError);
  const stranger = await startLocalTsa(t);
  assert.throws(() => verifyTimestampToken(stamp.token, { digest, trusted: [stranger.ca] }), (e: TimestampError) => /not one this Clearance trusts/.test(e.message));
  // The TSA's own certificate trusted directly works; an unrelated self-signed one does not.
  assert.ok(verifyTimestampToken(stamp.token, { digest, trusted: [new X509Certificate(tsa.tsaPem)] }));
  await assert.rejects(requestTimestamp('http://127.0.0.1:9/nothing', digest, [tsa.ca], { timeoutMs: 500 }), TimestampError);
  assert.throws(() => verifyTimestampToken(Buffer.from('garbage'), { digest, trusted: [tsa.ca] }), TimestampError);
});
