import { constants, createHash, createPublicKey, timingSafeEqual, verify } from 'node:crypto';
import { cose, decodeCredentialPublicKey } from '@simplewebauthn/server/helpers';
import type { AssertionEvidence } from '../identity/passkeys/assertion.ts';
import { approvalChallenge, approvalDigest } from '../jose/approval-digest.ts';
import { safeEqual } from '../jose/index.ts';
import type { ApprovalKindName } from './kinds.ts';
import { requestDigest } from './requests.ts';

/**
 * The evidence of one what-you-see-is-what-you-sign approval: everything an auditor needs to
 * check, without Clearance and without trusting it, that the person's authenticator signed a
 * challenge that commits to exactly these authorization_details. It travels inside the
 * `approval.given` audit event (so the log's inclusion proofs and checkpoints cover it) and
 * therefore inside every evidence bundle of the transaction. Binary members are base64url.
 */
export interface ApprovalEvidence {
  format: typeof approvalEvidenceFormat;
  /** The approved entries, exactly as approved (the request's order). */
  authorization_details: unknown[];
  /** approvalDigest(authorization_details). */
  digest: string;
  /** The server's nonce of this ceremony. */
  nonce: string;
  /** The WebAuthn relying party id (the issuer's host) and origin the ceremony was bound to. */
  rp_id: string;
  origin: string;
  credential_id: string;
  /** The credential's public key as SPKI DER, so any X.509/PKIX tool can use it. */
  public_key: string;
  /** The credential's COSE algorithm (RFC 9053: -7 ES256, -35 ES384, -36 ES512, -8 EdDSA, -257 RS256, -37 PS256). */
  alg: number;
  /** WebAuthn §6.1 authenticator data, §5.8.1 client data JSON, and the assertion signature. */
  authenticator_data: string;
  client_data_json: string;
  signature: string;
}

export const approvalEvidenceFormat = 'clearance-approval/1';

/**
 * The evidence of one passkey approval of a request a second person approves (a CIBA request, a
 * recovery, a break-glass activation; src/approvals/requests.ts), made on the approvals page: as
 * `clearance-approval/1`, but what was approved is the request's `content` (shown to the approver
 * in full), `digest` is requestDigest(content), and the request's id and kind are named. The
 * signed challenge commits to the digest only; `request_id` and `kind` say where the evidence
 * belongs and are checked against the audit event that carries it.
 */
export interface RequestApprovalEvidence extends Omit<ApprovalEvidence, 'format' | 'authorization_details'> {
  format: typeof requestApprovalEvidenceFormat;
  request_id: string;
  kind: ApprovalKindName;
  /** The request's content, exactly as approved. */
  content: Record<string, unknown>;
}

export const requestApprovalEvidenceFormat = 'clearance-approval-request/1';

/** Either format of passkey approval evidence. */
export type AnyApprovalEvidence = ApprovalEvidence | RequestApprovalEvidence;

/** The COSE algorithm (RFC 9052 §7.1 label 3) of a credential public key, as registered. */
export function coseAlgorithm(coseKey: Uint8Array<ArrayBuffer>): number {
  const alg = decodeCredentialPublicKey(coseKey).get(cose.COSEKEYS.alg);
  if (typeof alg !== 'number') throw new TypeError('the COSE key names no algorithm');
  return alg;
}

/**
 * The evidence of an approval from a verified assertion (src/identity/passkeys/assertion.ts
 * `verifyPersonAssertion`, whose challenge was approvalChallenge(digest, nonce)).
 */
export function approvalEvidenceOf(
  approved: { entries: unknown[]; digest: string; nonce: string; rpId: string; origin: string },
  assertion: AssertionEvidence,
): ApprovalEvidence {
  return {
    format: approvalEvidenceFormat,
    authorization_details: approved.entries,
    digest: approved.digest,
    nonce: approved.nonce,
    rp_id: approved.rpId,
    origin: approved.origin,
    ...signedAssertion(assertion),
  };
}

/** What both formats keep of the assertion itself: the credential, its key, and what it signed. */
function signedAssertion(assertion: AssertionEvidence) {
  return {
    credential_id: assertion.credentialId,
    public_key: assertion.spki,
    alg: coseAlgorithm(new Uint8Array(Buffer.from(assertion.publicKey, 'base64url'))),
    authenticator_data: assertion.authenticatorData,
    client_data_json: assertion.clientDataJSON,
    signature: assertion.signature,
  };
}

/**
 * The evidence of a request's approval from a verified assertion whose challenge was
 * approvalChallenge(request.digest, nonce) (src/approvals/request-ceremony.ts).
 */
export function requestApprovalEvidenceOf(
  approved: { requestId: string; kind: ApprovalKindName; content: Record<string, unknown>; digest: string; nonce: string; rpId: string; origin: string },
  assertion: AssertionEvidence,
): RequestApprovalEvidence {
  return {
    format: requestApprovalEvidenceFormat,
    request_id: approved.requestId,
    kind: approved.kind,
    content: approved.content,
    digest: approved.digest,
    nonce: approved.nonce,
    rp_id: approved.rpId,
    origin: approved.origin,
    ...signedAssertion(assertion),
  };
}

/** How node:crypto verifies a signature of each COSE algorithm WebAuthn authenticators use. */
const verifiers: Record<number, { hash: string | null; pss?: true }> = {
  [-7]: { hash: 'sha256' },
  [-35]: { hash: 'sha384' },
  [-36]: { hash: 'sha512' },
  [-8]: { hash: null },
  [-257]: { hash: 'sha256' },
  [-37]: { hash: 'sha256', pss: true },
};

/** WebAuthn §6.1 flags: user present (bit 0) and user verified (bit 2). */
const userPresent = 0x01;
const userVerified = 0x04;

/**
 * Checks approval evidence of either format offline, returning every problem (empty: it
 * verifies). First the binding to what was approved, by format:
 * - `clearance-approval/1`: the digest is approvalDigest(authorization_details);
 * - `clearance-approval-request/1`: the digest is requestDigest(content), and the request's id
 *   and kind are named;
 * then the same WebAuthn checks for both (verifySignedApproval).
 */
export function verifyApprovalEvidence(evidence: AnyApprovalEvidence): string[] {
  const problems: string[] = [];
  try {
    if (typeof evidence !== 'object' || evidence === null) return ['the approval evidence is missing'];
    if (evidence.format === approvalEvidenceFormat) {
      if (!Array.isArray(evidence.authorization_details)) return ['the approved authorization_details are missing'];
      if (!safeEqual(approvalDigest(evidence.authorization_details), String(evidence.digest))) {
        problems.push('the digest is not that of the approved authorization_details (they were changed)');
      }
    } else if (evidence.format === requestApprovalEvidenceFormat) {
      if (typeof evidence.content !== 'object' || evidence.content === null || Array.isArray(evidence.content)) return ['the approved content is missing'];
      if (typeof evidence.request_id !== 'string' || typeof evidence.kind !== 'string') return ['the evidence names no request'];
      if (!safeEqual(requestDigest(evidence.content), String(evidence.digest))) problems.push('the digest is not that of the approved content (it was changed)');
    } else {
      return [`unknown approval evidence format ${String((evidence as { format?: unknown }).format)}`];
    }
  } catch (error) {
    return [`the evidence cannot be read: ${(error as Error).message}`];
  }
  return [...problems, ...verifySignedApproval(evidence)];
}

/**
 * The WebAuthn checks of approval evidence that need no server state (WebAuthn L3 §7.2), the same
 * for every format:
 * 1. the client data is a `webauthn.get` (step 11) whose challenge is approvalChallenge(digest,
 *    nonce) (step 12) at `origin` (step 13), not cross-origin;
 * 2. the authenticator data's RP ID hash is SHA-256(rp_id) (step 15), and the user was present
 *    (step 16) and verified (step 17);
 * 3. the signature over authenticatorData ‖ SHA-256(clientDataJSON) verifies with the
 *    credential's public key (step 20).
 */
function verifySignedApproval(evidence: Omit<ApprovalEvidence, 'format' | 'authorization_details'>): string[] {
  const problems: string[] = [];
  try {
    const clientDataBytes = Buffer.from(evidence.client_data_json, 'base64url');
    const clientData = JSON.parse(clientDataBytes.toString('utf8')) as Record<string, unknown>;
    if (clientData.type !== 'webauthn.get') problems.push('the client data is not of an assertion (webauthn.get)');
    if (typeof clientData.challenge !== 'string' || !safeEqual(clientData.challenge, approvalChallenge(evidence.digest, evidence.nonce))) {
      problems.push('the signed challenge does not commit to this digest and nonce');
    }
    if (clientData.origin !== evidence.origin) problems.push('the client data names another origin');
    if (clientData.crossOrigin === true) problems.push('the assertion was made in a cross-origin frame');
    const authenticatorData = Buffer.from(evidence.authenticator_data, 'base64url');
    if (authenticatorData.length < 37) {
      problems.push('the authenticator data is too short');
      return problems;
    }
    const rpIdHash = createHash('sha256').update(evidence.rp_id, 'utf8').digest();
    if (!timingSafeEqual(authenticatorData.subarray(0, 32), rpIdHash)) problems.push('the authenticator data is for another relying party');
    const flags = authenticatorData[32]!;
    if (!(flags & userPresent)) problems.push('the user was not present');
    if (!(flags & userVerified)) problems.push('the user was not verified');
    const key = createPublicKey({ key: Buffer.from(evidence.public_key, 'base64url'), format: 'der', type: 'spki' });
    const signed = Buffer.concat([authenticatorData, createHash('sha256').update(clientDataBytes).digest()]);
    const verifier = verifiers[evidence.alg];
    if (!verifier) {
      problems.push(`unsupported signature algorithm ${String(evidence.alg)}`);
      return problems;
    }
    const ok = verify(
      verifier.hash,
      signed,
      verifier.pss ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST } : key,
      Buffer.from(evidence.signature, 'base64url'),
    );
    if (!ok) problems.push('the signature does not verify with the credential public key');
  } catch (error) {
    problems.push(`the evidence cannot be read: ${(error as Error).message}`);
  }
  return problems;
}
