import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { describe, test } from 'node:test';
import { approvalEvidenceFormat, coseKeyToSpki, verifyApprovalEvidence, type ApprovalEvidence } from '../../src/approvals/evidence.ts';
import { approvalChallenge, approvalDigest, entriesToApprove, parseApprovalChallenge } from '../../src/jose/approval-digest.ts';

const origin = 'https://idp.broker.example';
const rpId = 'idp.broker.example';
const order = { type: 'order', instrument: 'XS2345678901', side: 'buy', notional: 2_500_000, currency: 'EUR' };
const settlement = { type: 'settlement_instruction', account: 'DE89370400440532013000', currency: 'EUR' };

/** The EC2 P-256 COSE key (RFC 9053 §7.1.1) of a public key, CBOR-encoded: what an authenticator registers. */
function coseOf(key: KeyObject): Uint8Array<ArrayBuffer> {
  const jwk = key.export({ format: 'jwk' });
  const x = Buffer.from(jwk.x!, 'base64url');
  const y = Buffer.from(jwk.y!, 'base64url');
  // {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}
  return new Uint8Array(Buffer.concat([Buffer.from([0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20]), x, Buffer.from([0x22, 0x58, 0x20]), y]));
}

/** What a platform authenticator signs for `challenge`: WebAuthn §6.1 authenticator data and §5.8.1 client data. */
function assertion(privateKey: KeyObject, challenge: string, options: { origin?: string; rpId?: string; flags?: number } = {}) {
  const clientDataJson = Buffer.from(JSON.stringify({ type: 'webauthn.get', challenge, origin: options.origin ?? origin, crossOrigin: false }));
  const authenticatorData = Buffer.concat([
    createHash('sha256').update(options.rpId ?? rpId).digest(),
    Buffer.from([options.flags ?? 0x05]), // UP | UV
    Buffer.from([0, 0, 0, 7]), // signature counter
  ]);
  const signature = sign('sha256', Buffer.concat([authenticatorData, createHash('sha256').update(clientDataJson).digest()]), privateKey);
  return { authenticatorData, clientDataJson, signature };
}

function evidenceFor(entries: unknown[], options: Parameters<typeof assertion>[2] = {}): ApprovalEvidence {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const digest = approvalDigest(entries);
  const nonce = Buffer.alloc(16, 9).toString('base64url');
  const signed = assertion(privateKey, approvalChallenge(digest, nonce), options);
  return {
    format: approvalEvidenceFormat,
    authorization_details: entries,
    digest,
    nonce,
    rp_id: rpId,
    origin,
    credential_id: 'Y3JlZGVudGlhbC0x',
    public_key: coseKeyToSpki(coseOf(publicKey)),
    alg: -7,
    authenticator_data: signed.authenticatorData.toString('base64url'),
    client_data_json: signed.clientDataJson.toString('base64url'),
    signature: signed.signature.toString('base64url'),
  };
}

describe('the approval digest', () => {
  test('covers the order and settlement entries of a request, in its order, and nothing else', () => {
    const details = [{ type: 'account_access', accounts: ['A-1'] }, order, settlement];
    assert.deepEqual(entriesToApprove(details), [order, settlement]);
  });

  test('is the same for the same entries whatever their members’ order, and changes with any value or the entries’ order', () => {
    const reordered = { currency: 'EUR', notional: 2_500_000, side: 'buy', instrument: 'XS2345678901', type: 'order' };
    assert.equal(approvalDigest([order]), approvalDigest([reordered]));
    assert.notEqual(approvalDigest([order]), approvalDigest([{ ...order, notional: 2_500_001 }]));
    assert.notEqual(approvalDigest([order, settlement]), approvalDigest([settlement, order]));
    assert.match(approvalDigest([order]), /^[A-Za-z0-9_-]{43}$/);
  });

  test('starts the challenge, which carries the nonce after it', () => {
    const digest = approvalDigest([order]);
    const nonce = Buffer.alloc(16, 1).toString('base64url');
    assert.deepEqual(parseApprovalChallenge(approvalChallenge(digest, nonce)), { digest, nonce });
    assert.equal(parseApprovalChallenge('c2hvcnQ'), undefined);
    assert.throws(() => approvalChallenge(digest, 'c2hvcnQ'), /16 bytes/);
  });
});

describe('verifying approval evidence offline', () => {
  test('accepts an assertion whose challenge commits to the approved entries', () => {
    assert.deepEqual(verifyApprovalEvidence(evidenceFor([order, settlement])), []);
  });

  test('refuses evidence whose entries were changed after the approval', () => {
    const evidence = evidenceFor([order]);
    const changed = { ...evidence, authorization_details: [{ ...order, notional: 25_000_000 }] };
    assert.deepEqual(verifyApprovalEvidence(changed), ['the digest is not that of the approved authorization_details (they were changed)']);
  });

  test('refuses evidence whose digest was replaced to match changed entries (the signed challenge no longer matches)', () => {
    const evidence = evidenceFor([order]);
    const entries = [{ ...order, notional: 25_000_000 }];
    const forged = { ...evidence, authorization_details: entries, digest: approvalDigest(entries) };
    assert.deepEqual(verifyApprovalEvidence(forged), ['the signed challenge does not commit to this digest and nonce']);
  });

  test('refuses an assertion made for another origin or relying party, or without user verification', () => {
    assert.deepEqual(verifyApprovalEvidence(evidenceFor([order], { origin: 'https://idp.broker.example.attacker.test' })), ['the client data names another origin']);
    assert.deepEqual(verifyApprovalEvidence(evidenceFor([order], { rpId: 'broker.example' })), ['the authenticator data is for another relying party']);
    assert.deepEqual(verifyApprovalEvidence(evidenceFor([order], { flags: 0x01 })), ['the user was not verified']);
  });

  test('refuses a signature by another key, and evidence it cannot read', () => {
    const evidence = evidenceFor([order]);
    const other = evidenceFor([order]);
    assert.deepEqual(verifyApprovalEvidence({ ...evidence, public_key: other.public_key }), ['the signature does not verify with the credential public key']);
    assert.deepEqual(verifyApprovalEvidence({ ...evidence, alg: -65535 }), ['unsupported signature algorithm -65535']);
    assert.match(verifyApprovalEvidence({ ...evidence, client_data_json: 'bm90IGpzb24' })[0]!, /cannot be read/);
  });
});
