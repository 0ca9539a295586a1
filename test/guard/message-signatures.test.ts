import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { checkContentDigest, contentDigest, MessageSignatureError, signRequest, verifyRequest, type SignableRequest } from '../../src/guard/message-signatures.ts';

// RFC 9421 HTTP Message Signatures and RFC 9530 Content-Digest, checked against the RFC's own
// test vector and by refusing every alteration of a signed order.

// RFC 9421 Appendix B.1.4: the ed25519 test key.
const rfcKey = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: 'n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU', x: 'JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs' }, format: 'jwk' });

test('the RFC 9421 B.2.6 ed25519 test vector verifies over exactly the signature base the RFC prints', async () => {
  const request: SignableRequest = {
    method: 'POST',
    targetUri: 'https://example.com/foo?param=Value&Pet=dog',
    headers: {
      host: 'example.com',
      date: 'Tue, 20 Apr 2021 02:07:55 GMT',
      'content-type': 'application/json',
      'content-length': '18',
      'signature-input': 'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"',
      signature: 'sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:',
    },
  };
  const verified = await verifyRequest(request, {
    resolveKey: async (keyid) => (keyid === 'test-key-ed25519' ? { publicKey: createPublicKey(rfcKey) } : undefined),
    requiredComponents: ['@method'],
    maxAgeSeconds: Number.MAX_SAFE_INTEGER,
    now: () => 1618884473_000,
  });
  assert.equal(verified.keyid, 'test-key-ed25519');
  assert.equal(
    verified.signatureBase,
    '"date": Tue, 20 Apr 2021 02:07:55 GMT\n"@method": POST\n"@path": /foo\n"@authority": example.com\n"content-type": application/json\n"content-length": 18\n"@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"',
  );
});

const body = Buffer.from(JSON.stringify({ side: 'buy', instrument: 'DE0001102580', notional: 5_000_000, currency: 'EUR' }));
const order = (): SignableRequest => ({
  method: 'POST',
  targetUri: 'https://broker.example/orders',
  headers: { authorization: 'DPoP eyJ.token.sig', txn: 'txn-123', 'content-digest': contentDigest(body), 'content-type': 'application/json' },
});

for (const type of ['ec', 'ed25519'] as const) {
  test(`an ${type === 'ec' ? 'ECDSA P-256' : 'Ed25519'} signed order verifies, and any change to method, target, token, txn or digest is refused`, async () => {
    const { privateKey, publicKey } = type === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
    const now = 1_800_000_000_000;
    const signed = order();
    Object.assign(signed.headers, signRequest(signed, { key: privateKey, keyid: '4f2a', created: now / 1000, nonce: 'n-1' }));
    const options = { resolveKey: async (id: string) => (id === '4f2a' ? { publicKey } : undefined), now: () => now };
    const ok = await verifyRequest(signed, options);
    assert.deepEqual(ok.coveredComponents, ['@method', '@target-uri', 'content-digest', 'authorization', 'txn']);
    assert.equal(ok.alg, type === 'ec' ? 'ecdsa-p256-sha256' : 'ed25519');
    checkContentDigest(signed.headers['content-digest'] as string, body);
    const refused = async (change: (r: SignableRequest) => void, code: string) => {
      const copy: SignableRequest = { ...signed, headers: { ...signed.headers } };
      change(copy);
      await assert.rejects(verifyRequest(copy, options), (e: MessageSignatureError) => e instanceof MessageSignatureError && e.code === code);
    };
    await refused((r) => (r.method = 'PUT'), 'bad_signature');
    await refused((r) => (r.targetUri = 'https://broker.example/orders?x=1'), 'bad_signature');
    await refused((r) => (r.headers.authorization = 'DPoP eyJ.other.sig'), 'bad_signature');
    await refused((r) => (r.headers.txn = 'txn-999'), 'bad_signature');
    await refused((r) => (r.headers['content-digest'] = contentDigest(Buffer.from('{"notional":50000000}'))), 'bad_signature');
    await refused((r) => delete r.headers.txn, 'missing_component');
    await refused((r) => (r.headers['signature-input'] = (r.headers['signature-input'] as string).replace(' "txn"', '')), 'missing_component');
    await refused((r) => delete r.headers.signature, 'missing');
    await refused((r) => (r.headers.signature = 'sig1=:AAAA'), 'malformed');
    await refused((r) => (r.headers['signature-input'] = (r.headers['signature-input'] as string).replace('keyid="4f2a"', 'keyid="other"')), 'unknown_key');
    await refused((r) => (r.headers['signature-input'] = (r.headers['signature-input'] as string).replace(/alg="[^"]+"/, `alg="${type === 'ec' ? 'ed25519' : 'ecdsa-p256-sha256'}"`)), 'unsupported_alg');
    // The body altered after signing: its digest no longer matches (the covered digest cannot be swapped).
    assert.throws(() => checkContentDigest(signed.headers['content-digest'] as string, Buffer.from(body.toString().replace('5000000', '50000000'))), (e: MessageSignatureError) => e.code === 'digest_mismatch');
    await assert.rejects(verifyRequest(signed, { ...options, now: () => now + 301_000 }), (e: MessageSignatureError) => e.code === 'expired');
    await assert.rejects(verifyRequest(signed, { ...options, now: () => now - 120_000 }), (e: MessageSignatureError) => e.code === 'future');
    const seen = new Set<string>();
    const once = { ...options, seen: async (label: string, signature: Buffer) => (seen.has(label + signature.toString('base64')) ? true : (seen.add(label + signature.toString('base64')), false)) };
    await verifyRequest(signed, once);
    await assert.rejects(verifyRequest(signed, once), (e: MessageSignatureError) => e.code === 'replayed');
  });
}

test('Content-Digest refuses a missing header, unknown algorithms alone and a wrong digest, and ignores an unknown one beside a good one', () => {
  assert.throws(() => checkContentDigest(undefined, body), (e: MessageSignatureError) => e.code === 'digest_mismatch');
  assert.throws(() => checkContentDigest('md5=:AAAA:', body), (e: MessageSignatureError) => e.code === 'digest_mismatch');
  assert.throws(() => checkContentDigest(`sha-256=:${Buffer.alloc(32).toString('base64')}:`, body), (e: MessageSignatureError) => e.code === 'digest_mismatch');
  checkContentDigest(`${contentDigest(body)}, md5=:AAAA:`, body);
});

test('random Signature and Signature-Input headers never throw anything but MessageSignatureError', async () => {
  const { publicKey } = generateKeyPairSync('ed25519');
  await fc.assert(
    fc.asyncProperty(fc.string({ maxLength: 200 }), fc.string({ maxLength: 120 }), async (input, signature) => {
      try {
        await verifyRequest({ ...order(), headers: { ...order().headers, 'signature-input': input, signature } }, { resolveKey: async () => ({ publicKey }), now: () => Date.now() });
        return false;
      } catch (error) {
        return error instanceof MessageSignatureError;
      }
    }),
    { numRuns: 400 },
  );
});
