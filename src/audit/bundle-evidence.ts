import { createHash, X509Certificate } from 'node:crypto';
import { readRecordedSignature, verifySignatureBase } from '../guard/message-signatures.ts';
import { canonicalize } from '../jose/canonical-json.ts';
import { readOcspResponse } from '../guard/ocsp.ts';
import { verifyTimestampToken } from '../pki/tsa.ts';
import type { StoredAuditEvent } from './events.ts';

/** A signing evidence record as a bundle carries it: the canonical record, and its RFC 3161 token. */
export interface BundledSigningEvidence {
  id: string;
  /** The record's RFC 8785 canonical JSON, exactly as recorded (its SHA-256 is in the event). */
  record: string;
  /** The TimeStampToken, standard base64, when the record was stamped. */
  timestamp?: string;
}

/** One verified signed request, for the verifier's report. */
export interface VerifiedSigningEvidence {
  id: string;
  txn: string;
  signer: string;
  holder: string;
  profile: string;
  /** When the request was signed (its `created`), epoch ms. */
  signedAt: number;
  method: string;
  target: string;
  statusAtSigning: string;
  timestamp?: number;
  rootSha256?: string;
}

/**
 * What an evidence bundle says about signed requests, checked offline (docs/transaction-signing.md):
 * for every `evidence.recorded` event, the bundle carries the record whose SHA-256 the event names;
 * its signature verifies over its base with the signer's certificate; the base ends with the
 * signature input and covers the request's method, target, txn (the event's) and content digest;
 * the certificate chains through the issuing CA to the root in the record, and was valid when it
 * signed; the CA's OCSP answer in the record verifies and says the certificate was good then (good,
 * or revoked only after); the RFC 3161 stamp (when there is one) verifies over the record's digest,
 * is signed by a TSA certificate (the timeStamping EKU alone, critical: RFC 3161 §2.3) of no CA of
 * the record's chain, valid at the stamp's genTime, on a path valid then (through the certificates
 * the token carries: src/pki/tsa.ts) up to a TSA anchor the bundle states, and is not earlier than
 * the signature.
 */
export function checkBundledEvidence(
  events: { leafIndex: number; event: StoredAuditEvent }[],
  bundled: BundledSigningEvidence[] | undefined,
  tsaTrust: string[] | undefined,
): { problems: string[]; verified: VerifiedSigningEvidence[] } {
  const problems: string[] = [];
  const verified: VerifiedSigningEvidence[] = [];
  const byId = new Map((bundled ?? []).map((b) => [b.id, b]));
  const anchors = (tsaTrust ?? []).flatMap((pem) => {
    try {
      return [new X509Certificate(pem)];
    } catch {
      problems.push('a TSA anchor of the bundle is not a certificate');
      return [];
    }
  });
  for (const { leafIndex, event } of events) {
    if (event.type !== 'evidence.recorded') continue;
    const where = `signing evidence (leaf ${leafIndex})`;
    const details = (event.details ?? {}) as Record<string, unknown>;
    const found = byId.get(String(details.evidence_id));
    if (!found) {
      problems.push(`${where}: the bundle does not carry record ${String(details.evidence_id)}`);
      continue;
    }
    const digest = createHash('sha256').update(found.record).digest();
    if (digest.toString('hex') !== details.record_sha256) {
      problems.push(`${where}: the record is not the one the log recorded (SHA-256 differs)`);
      continue;
    }
    try {
      verified.push(checkRecord(found, digest, event, anchors));
    } catch (error) {
      problems.push(`${where}: ${(error as Error).message}`);
    }
  }
  return { problems, verified };
}

interface EvidenceRecord {
  id: string;
  request: { method: string; target_uri: string; txn: string; jti: string; content_digest: string };
  signature: { input: string; value: string; base: string; created: number; keyid: string };
  signer: { serial: string; profile: string; holder: string; chain: string[]; root: string | null };
  status: { ocsp: string; at_signing: string };
}

function checkRecord(bundled: BundledSigningEvidence, digest: Buffer, event: StoredAuditEvent, anchors: X509Certificate[]): VerifiedSigningEvidence {
  const record = JSON.parse(bundled.record) as EvidenceRecord;
  if (canonicalize(record) !== bundled.record) throw new Error('the record is not in canonical form');
  const { request, signature, signer } = record;
  if (request.txn !== event.txn) throw new Error('the record is of another transaction than its event');
  const input = readRecordedSignature(signature.input, signature.base, { method: request.method, targetUri: request.target_uri, txn: request.txn, contentDigest: request.content_digest });
  if (input.created !== signature.created || input.keyid.toLowerCase() !== signer.serial) throw new Error('the signature input is not the recorded one');
  const [leafPem, issuerPem] = signer.chain;
  if (!leafPem || !issuerPem || !signer.root) throw new Error('the record lacks the signer chain');
  const leaf = new X509Certificate(leafPem);
  const issuer = new X509Certificate(issuerPem);
  const root = new X509Certificate(signer.root);
  if (!leaf.checkIssued(issuer) || !leaf.verify(issuer.publicKey) || !issuer.checkIssued(root) || !issuer.verify(root.publicKey)) throw new Error('the signer certificate does not chain to the root');
  if (!verifySignatureBase(signature.base, Buffer.from(signature.value, 'base64'), leaf.publicKey)) throw new Error('the request signature does not verify');
  const signedAt = signature.created * 1000;
  if (signedAt < leaf.validFromDate.getTime() || signedAt > leaf.validToDate.getTime()) throw new Error('the certificate was not valid when it signed');
  // The CA's answer as of when it was produced (at recording, after the signature): offline, months
  // later, it is judged as of then, and says whether the certificate was revoked before it signed.
  const status = readOcspResponse(Buffer.from(record.status.ocsp, 'base64'), leaf, issuer, {});
  if (status.producedAt < signedAt - 60_000) throw new Error('the OCSP answer predates the signature');
  const goodThen = status.status === 'good' || (status.status === 'revoked' && status.revokedAt! > signedAt);
  if (!goodThen) throw new Error(`the certificate's status when it signed was ${status.status}`);
  let stamped: number | undefined;
  if (bundled.timestamp !== undefined) {
    // Never a stamp signed under the signer's own CA (the record's issuing CA and root), whatever
    // the bundle's anchors say: its profiles may grant timeStamping to agents and people.
    const stamp = verifyTimestampToken(Buffer.from(bundled.timestamp, 'base64'), { digest, trusted: anchors, ownCa: [issuer, root] });
    stamped = stamp.genTime.getTime();
    // A second of TSA accuracy, a minute of clock skew between signer and TSA.
    if (stamped < signedAt - 60_000) throw new Error('the time stamp is earlier than the signature');
  }
  return {
    id: bundled.id,
    txn: request.txn,
    signer: signer.serial,
    holder: signer.holder,
    profile: signer.profile,
    signedAt,
    method: request.method,
    target: request.target_uri,
    statusAtSigning: status.status === 'good' ? 'good' : `good (revoked later, ${new Date(status.revokedAt!).toISOString()})`,
    ...(stamped !== undefined ? { timestamp: stamped } : {}),
    rootSha256: createHash('sha256').update(root.raw).digest('hex'),
  };
}
