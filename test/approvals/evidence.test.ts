import assert from 'node:assert/strict';
import { decodeAttestationObject, parseAuthenticatorData } from '@simplewebauthn/server/helpers';
import { describe, test } from 'node:test';
import { approvalEvidenceOf, requestApprovalEvidenceOf, verifyApprovalEvidence, type ApprovalEvidence, type RequestApprovalEvidence } from '../../src/approvals/evidence.ts';
import { requestDigest } from '../../src/approvals/requests.ts';
import { cosePublicKeyToSpki, type AssertionEvidence } from '../../src/identity/passkeys/assertion.ts';
import { approvalChallenge, approvalDigest, entriesToApprove, parseApprovalChallenge } from '../../src/jose/approval-digest.ts';
import { SoftwareAuthenticator, type Bend } from '../helpers/authenticator.ts';

const origin = 'https://idp.broker.example';
const rpId = 'idp.broker.example';
const order = { type: 'order', instrument: 'XS2345678901', side: 'buy', notional: 2_500_000, currency: 'EUR' };
const settlement = { type: 'settlement_instruction', account: 'DE89370400440532013000', currency: 'EUR' };

/**
 * Approval evidence made by a software authenticator (test/helpers/authenticator.ts) with a
 * registered P-256 credential, over the approval challenge of `entries`; `bend` bends the ceremony.
 */
function evidenceFor(entries: unknown[], bend: Bend = {}): ApprovalEvidence {
  const digest = approvalDigest(entries);
  const nonce = Buffer.alloc(16, 9).toString('base64url');
  return approvalEvidenceOf({ entries, digest, nonce, rpId, origin }, assertionOver(digest, nonce, bend));
}

/** A new P-256 credential's assertion over the approval challenge of `digest` and `nonce`, as a verified one is kept. */
function assertionOver(digest: string, nonce: string, bend: Bend): AssertionEvidence {
  const authenticator = new SoftwareAuthenticator({ origin });
  const registered = authenticator.register({ challenge: 'cmVnaXN0ZXI', rp: { id: rpId }, user: { id: 'dXNlci0x' } }) as { response: { attestationObject: string } };
  const signed = authenticator.assert({ challenge: approvalChallenge(digest, nonce), rpId }, bend) as {
    id: string;
    response: { authenticatorData: string; clientDataJSON: string; signature: string };
  };
  const coseKey = publicKeyOfAttestation(registered.response.attestationObject);
  return {
    credentialId: signed.id,
    publicKey: Buffer.from(coseKey).toString('base64url'),
    spki: cosePublicKeyToSpki(coseKey).toString('base64url'),
    authenticatorData: signed.response.authenticatorData,
    clientDataJSON: signed.response.clientDataJSON,
    signature: signed.response.signature,
  };
}

/** The credential public key (COSE) in a registration's attestation object. */
function publicKeyOfAttestation(attestationObject: string): Uint8Array<ArrayBuffer> {
  const authData = decodeAttestationObject(new Uint8Array(Buffer.from(attestationObject, 'base64url'))).get('authData');
  return new Uint8Array(parseAuthenticatorData(authData).credentialPublicKey!);
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
    assert.deepEqual(verifyApprovalEvidence(evidenceFor([order], { userVerified: false })), ['the user was not verified']);
  });

  test('refuses a signature by another key, and evidence it cannot read', () => {
    const evidence = evidenceFor([order]);
    const other = evidenceFor([order]);
    assert.deepEqual(verifyApprovalEvidence({ ...evidence, public_key: other.public_key }), ['the signature does not verify with the credential public key']);
    assert.deepEqual(verifyApprovalEvidence({ ...evidence, alg: -65535 }), ['unsupported signature algorithm -65535']);
    assert.match(verifyApprovalEvidence({ ...evidence, client_data_json: 'bm90IGpzb24' })[0]!, /cannot be read/);
  });
});

describe('request-approval evidence (clearance-approval-request/1)', () => {
  const content = { binding_message: 'Order 7781', authorization_details: [order] };
  function requestEvidence(bend: Bend = {}): RequestApprovalEvidence {
    const digest = requestDigest(content);
    const nonce = Buffer.alloc(16, 7).toString('base64url');
    return requestApprovalEvidenceOf({ requestId: 'req-1', kind: 'ciba', content, digest, nonce, rpId, origin }, assertionOver(digest, nonce, bend));
  }

  test('verifies offline with the same WebAuthn checks as an order approval', () => {
    const evidence = requestEvidence();
    assert.equal(evidence.format, 'clearance-approval-request/1');
    assert.deepEqual(verifyApprovalEvidence(evidence), []);
  });

  test('names a changed content, a changed digest, an unverified user and a bad signature', () => {
    const evidence = requestEvidence();
    assert.match(verifyApprovalEvidence({ ...evidence, content: { ...content, binding_message: 'Order 7782' } }).join(), /not that of the approved content/);
    assert.match(verifyApprovalEvidence({ ...evidence, digest: requestDigest({ other: true }) }).join(), /challenge does not commit/);
    assert.match(verifyApprovalEvidence(requestEvidence({ userVerified: false })).join(), /not verified/);
    assert.match(verifyApprovalEvidence({ ...evidence, signature: Buffer.from('forged').toString('base64url') }).join(), /signature does not verify/);
    assert.match(verifyApprovalEvidence({ ...evidence, format: 'other/1' } as never).join(), /unknown approval evidence format/);
  });
});
