import { createHash, randomUUID, X509Certificate } from 'node:crypto';
import type { Context } from '../context.ts';
import { MessageSignatureError, readRecordedSignature, verifySignatureBase } from '../guard/message-signatures.ts';
import { canonicalize } from '../jose/canonical-json.ts';
import { ocspRequest } from '../guard/ocsp.ts';
import { respondOcsp } from '../pki/ocsp/index.ts';
import { requestTimestamp, TimestampError, tsaTrustPems } from '../pki/tsa.ts';

export const evidenceFormat = 'clearance-signed-request/1';

export class EvidenceRefusal extends Error {
  override name = 'EvidenceRefusal';
}

export class EvidenceUnavailable extends Error {
  override name = 'EvidenceUnavailable';
}

/** What a producer (a resource server's guard) reports of a signed request it verified and executed. */
export interface SignedRequestReport {
  txn: string;
  /** The access token's jti (never the token itself, which the signature base carries). */
  jti: string;
  method: string;
  target_uri: string;
  signature_input: string;
  /** Standard base64. */
  signature: string;
  signature_base: string;
  content_digest: string;
}

export interface RecordedEvidence {
  id: string;
  recordSha256: string;
  timestamp?: { genTime: number; serial: string };
}

const fields: (keyof SignedRequestReport)[] = ['txn', 'jti', 'method', 'target_uri', 'signature_input', 'signature', 'signature_base', 'content_digest'];

/**
 * Records the evidence of a signed request (docs/transaction-signing.md), each rule in order,
 * every refusal an EvidenceRefusal naming it:
 * 1. the report has every member, as strings of sane size;
 * 2. the signature input is one signature covering @method, @target-uri, content-digest,
 *    authorization and txn, naming its key (the serial of a certificate of Clearance's CA) and its
 *    creation time; the base ends with exactly that input, covers the report's method, target, txn
 *    and content digest;
 * 3. the signature verifies over the base with that certificate's key, which was within its validity
 *    and not yet revoked when the request was signed;
 * 4. Clearance adds the signer's chain and its own signed OCSP answer about the certificate now, and
 *    asks the configured TSA for an RFC 3161 stamp over the record's SHA-256 (no TSA answer: the
 *    evidence is not recorded, EvidenceUnavailable — fail closed);
 * 5. the record (RFC 8785 canonical JSON) and `evidence.recorded` with its digest commit together.
 * The record holds the signature base — the covered Authorization value included, without which the
 * signature cannot be checked again — but the audit event holds only its digest and facts.
 */
export async function recordSignedRequest(ctx: Context, report: unknown, producer: string, requestId?: string): Promise<RecordedEvidence> {
  const r = readReport(report);
  let keyid: string;
  let created: number;
  try {
    ({ keyid, created } = readRecordedSignature(r.signature_input, r.signature_base, { method: r.method, targetUri: r.target_uri, txn: r.txn, contentDigest: r.content_digest }));
  } catch (error) {
    if (error instanceof MessageSignatureError) throw new EvidenceRefusal(error.message);
    throw error;
  }
  const row = await ctx.storage.db.selectFrom('pki_certificates').selectAll().where('serial', '=', keyid.toLowerCase()).executeTakeFirst();
  if (!row) throw new EvidenceRefusal(`keyid ${keyid} is no certificate of this CA`);
  const leaf = new X509Certificate(row.certificate);
  const authority = await ctx.pki.authorities.byId(row.authority_id);
  if (!authority) throw new EvidenceRefusal(`the issuing CA of ${keyid} is not active`);
  if (!verifySignatureBase(r.signature_base, Buffer.from(r.signature, 'base64'), leaf.publicKey)) throw new EvidenceRefusal('the signature does not verify with the certificate');
  const signedAt = created * 1000;
  if (signedAt < Number(row.not_before) || signedAt > Number(row.not_after)) throw new EvidenceRefusal('the certificate was not valid when the request was signed');
  if (row.revoked_at !== null && Number(row.revoked_at) <= signedAt) throw new EvidenceRefusal('the certificate was revoked before the request was signed');
  const chain = await ctx.pki.authorities.chainOf(authority);
  const ocsp = await respondOcsp(ctx, ocspRequest(leaf, authority.node));
  const id = randomUUID();
  const record = {
    format: evidenceFormat,
    id,
    producer,
    recorded_at: ctx.clock.now(),
    request: { method: r.method.toUpperCase(), target_uri: r.target_uri, txn: r.txn, jti: r.jti, content_digest: r.content_digest },
    signature: { input: r.signature_input, value: r.signature, base: r.signature_base, created, keyid: row.serial },
    signer: {
      serial: row.serial,
      profile: row.profile,
      holder: row.holder,
      chain: [row.certificate, ...chain.filter((a) => a.role !== 'root').map((a) => a.pem)],
      root: chain.find((a) => a.role === 'root')?.pem ?? null,
    },
    status: { ocsp: ocsp.toString('base64'), at_signing: 'good' },
  };
  const text = canonicalize(record);
  const digest = createHash('sha256').update(text).digest();
  const stamp = await timestamp(ctx, digest);
  const recordSha256 = digest.toString('hex');
  await ctx.audit.recordWith(async (trx) => {
    await trx
      .insertInto('signing_evidence')
      .values({ id, txn: r.txn, record: text, record_sha256: recordSha256, timestamp_token: stamp?.token.toString('base64') ?? null, timestamp_time: stamp?.genTime.getTime() ?? null, created_at: ctx.clock.now() })
      .execute();
    return {
      value: undefined,
      events: [
        {
          type: 'evidence.recorded',
          txn: r.txn,
          actor: producer,
          subject: row.holder,
          ...(requestId !== undefined ? { requestId } : {}),
          details: {
            evidence_id: id,
            record_sha256: recordSha256,
            kind: 'http_message_signature',
            signer_serial: row.serial,
            profile: row.profile,
            signed_at: signedAt,
            jti: r.jti,
            method: r.method.toUpperCase(),
            target_uri: r.target_uri,
            status_at_signing: 'good',
            ...(stamp ? { timestamp: { gen_time: stamp.genTime.getTime(), serial: stamp.serial } } : {}),
          },
        },
      ],
    };
  });
  return { id, recordSha256, ...(stamp ? { timestamp: { genTime: stamp.genTime.getTime(), serial: stamp.serial } } : {}) };
}

function readReport(report: unknown): SignedRequestReport {
  if (typeof report !== 'object' || report === null || Array.isArray(report)) throw new EvidenceRefusal('the body must be a JSON object');
  const o = report as Record<string, unknown>;
  for (const field of fields) {
    const value = o[field];
    if (typeof value !== 'string' || value.length === 0 || value.length > 16_384) throw new EvidenceRefusal(`${field} is required: a string of at most 16384 characters`);
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(o.signature as string)) throw new EvidenceRefusal('signature is standard base64');
  return o as unknown as SignedRequestReport;
}

/** The RFC 3161 stamp over the record's digest, when a TSA is configured (CLEARANCE_TSA_URL). */
async function timestamp(ctx: Context, digest: Buffer) {
  const tsa = ctx.config.tsa;
  if (!tsa) return undefined;
  const trusted = tsaTrustPems(tsa.trustFile).map((pem) => new X509Certificate(pem));
  try {
    return await requestTimestamp(tsa.url, digest, trusted);
  } catch (error) {
    if (error instanceof TimestampError) throw new EvidenceUnavailable(`the time-stamp authority: ${error.message}`);
    throw error;
  }
}
