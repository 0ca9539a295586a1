import { createHash, randomUUID, X509Certificate } from 'node:crypto';
import type { Context } from '../context.ts';
import { MessageSignatureError, readRecordedSignature, verifySignatureBase } from '../guard/message-signatures.ts';
import { canonicalize } from '../jose/canonical-json.ts';
import { ocspRequest } from '../guard/ocsp.ts';
import { respondOcsp } from '../pki/ocsp/index.ts';
import { requestTimestamp, TimestampError, tsaTrustPems } from '../pki/tsa.ts';
import { recordRefusal } from '../audit/refusals.ts';
import { readAccessToken } from '../tokens/reference-tokens.ts';

export const evidenceFormat = 'clearance-signed-request/1';

export class EvidenceRefusal extends Error {
  override name = 'EvidenceRefusal';
  /** The reason code of its `evidence.refused` event. */
  readonly reason: string;
  constructor(message: string, reason = 'malformed') {
    super(message);
    this.reason = reason;
  }
}

export class EvidenceUnavailable extends Error {
  override name = 'EvidenceUnavailable';
  /** The reason code of its `evidence.refused` event. */
  readonly reason: string;
  constructor(message: string, reason = 'tsa_unavailable') {
    super(message);
    this.reason = reason;
  }
}

/** What a producer (a resource server's guard) reports of a signed request it verified and executed. */
export interface SignedRequestReport {
  txn: string;
  /**
   * The access token's jti (never the token itself, which the signature base carries). Checked
   * against the token the signature covers: the record names that token's jti, never the report's.
   */
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
 * 4. the token the signature covers (its `authorization` component) is one of Clearance's access
 *    tokens, unexpired when the request was signed (`token_unknown`), bound to that certificate
 *    (`cnf.x5t#S256`, `key_binding`: an agent's signing key is the one its token is bound to), of
 *    the signed txn (`txn_mismatch`), and its jti is the report's (`jti_mismatch`): the record
 *    names what was signed, never what the producer says of it. The signer's profile is the
 *    certificate's own (the row of the serial that verified the signature);
 * 5. Clearance adds the signer's chain and its own signed OCSP answer about the certificate now, and
 *    asks the configured TSA for an RFC 3161 stamp over the record's SHA-256 (no TSA answer: the
 *    evidence is not recorded, EvidenceUnavailable — fail closed). In production mode a TSA is
 *    required: without one nothing is recorded (EvidenceUnavailable `no_tsa`, checked first); only
 *    a development deployment records evidence unstamped;
 * 6. the record (RFC 8785 canonical JSON) and `evidence.recorded` with its digest commit together.
 * Every refusal is on the record as `evidence.refused` (its reason code), as external evidence's are.
 * The record holds the signature base — the covered Authorization value included, without which the
 * signature cannot be checked again — but the audit event holds only its digest and facts.
 */
export async function recordSignedRequest(ctx: Context, report: unknown, producer: string, requestId?: string): Promise<RecordedEvidence> {
  try {
    return await verifyAndRecord(ctx, report, producer, requestId);
  } catch (error) {
    if (error instanceof EvidenceRefusal || error instanceof EvidenceUnavailable) {
      const txn = (report as { txn?: unknown } | null)?.txn;
      await recordRefusal(ctx, {
        type: 'evidence.refused',
        requestId: requestId ?? '',
        client: producer,
        ...(typeof txn === 'string' && auditableTxn.test(txn) ? { txn } : {}),
        error: error instanceof EvidenceRefusal ? 'invalid_request' : 'temporarily_unavailable',
        reason: error.reason,
        details: { kind: 'http_message_signature' },
      });
    }
    throw error;
  }
}

/** A reported txn put on a refusal's record only when it looks like one (it is the producer's word). */
const auditableTxn = /^[A-Za-z0-9._:-]{1,64}$/;

async function verifyAndRecord(ctx: Context, report: unknown, producer: string, requestId?: string): Promise<RecordedEvidence> {
  // Evidence without a trusted time is only the log's word for when it was signed: in production it
  // is recorded with an RFC 3161 stamp or not at all (docs/transaction-signing.md "Configuration").
  if (!ctx.config.tsa && ctx.config.mode === 'production') {
    throw new EvidenceUnavailable('no time-stamp authority is configured (CLEARANCE_TSA_URL, CLEARANCE_TSA_TRUST): in production evidence is recorded only with an RFC 3161 time stamp', 'no_tsa');
  }
  const r = readReport(report);
  let keyid: string;
  let created: number;
  try {
    ({ keyid, created } = readRecordedSignature(r.signature_input, r.signature_base, { method: r.method, targetUri: r.target_uri, txn: r.txn, contentDigest: r.content_digest }));
  } catch (error) {
    if (error instanceof MessageSignatureError) throw new EvidenceRefusal(error.message, error.code);
    throw error;
  }
  const row = await ctx.storage.db.selectFrom('pki_certificates').selectAll().where('serial', '=', keyid.toLowerCase()).executeTakeFirst();
  if (!row) throw new EvidenceRefusal(`keyid ${keyid} is no certificate of this CA`, 'unknown_key');
  const leaf = new X509Certificate(row.certificate);
  const authority = await ctx.pki.authorities.byId(row.authority_id);
  if (!authority) throw new EvidenceRefusal(`the issuing CA of ${keyid} is not active`, 'unknown_key');
  if (!verifySignatureBase(r.signature_base, Buffer.from(r.signature, 'base64'), leaf.publicKey)) throw new EvidenceRefusal('the signature does not verify with the certificate', 'bad_signature');
  const signedAt = created * 1000;
  if (signedAt < Number(row.not_before) || signedAt > Number(row.not_after)) throw new EvidenceRefusal('the certificate was not valid when the request was signed', 'expired_certificate');
  if (row.revoked_at !== null && Number(row.revoked_at) <= signedAt) throw new EvidenceRefusal('the certificate was revoked before the request was signed', 'revoked');
  const jti = await signedTokenJti(ctx, r, leaf, created);
  const chain = await ctx.pki.authorities.chainOf(authority);
  const ocsp = await respondOcsp(ctx, ocspRequest(leaf, authority.node));
  const id = randomUUID();
  const record = {
    format: evidenceFormat,
    id,
    producer,
    recorded_at: ctx.clock.now(),
    request: { method: r.method.toUpperCase(), target_uri: r.target_uri, txn: r.txn, jti, content_digest: r.content_digest },
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
            jti,
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

/**
 * The jti of the access token the verified signature covers (see recordSignedRequest 4): read from
 * the signed base's `authorization` component (`Bearer` or `DPoP`, RFC 6750 / RFC 9449), never from
 * the report, and refused unless that token is Clearance's, was unexpired at `created`, is bound to
 * `leaf` and is of the signed txn, and its jti is the one reported.
 */
async function signedTokenJti(ctx: Context, r: SignedRequestReport, leaf: X509Certificate, created: number): Promise<string> {
  const authorization = r.signature_base.split('\n').find((l) => l.startsWith('"authorization": '))?.slice('"authorization": '.length);
  const token = /^(?:bearer|dpop) +([^\s]+)$/i.exec(authorization ?? '')?.[1];
  if (token === undefined) throw new EvidenceRefusal('the signed authorization carries no access token', 'token_unknown');
  const read = await readAccessToken(ctx, token, created);
  const claims = read.ok ? (read.claims as unknown as Record<string, unknown>) : undefined;
  if (!claims || typeof claims.jti !== 'string') throw new EvidenceRefusal('the signed access token is none of this server’s, or had expired when the request was signed', 'token_unknown');
  const cnf = claims.cnf as Record<string, unknown> | undefined;
  // AMENDMENTS: the signing key is the one the token is bound to (the guard's rule 7, checked again).
  if (cnf?.['x5t#S256'] !== createHash('sha256').update(leaf.raw).digest('base64url')) throw new EvidenceRefusal('the signed access token is not bound to the signing certificate', 'key_binding');
  if (claims.txn !== r.txn) throw new EvidenceRefusal("the signed txn is not the access token's", 'txn_mismatch');
  if (claims.jti !== r.jti) throw new EvidenceRefusal('jti is not that of the access token the signature covers', 'jti_mismatch');
  return claims.jti;
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

/**
 * The RFC 3161 stamp over the record's digest, when a TSA is configured (CLEARANCE_TSA_URL). Never
 * one signed under Clearance's own CA, even if CLEARANCE_TSA_TRUST names it: its profiles may grant
 * timeStamping to the agents and people whose evidence is stamped (`tsa_untrusted`, as any stamp
 * whose signer is no trusted TSA's).
 */
async function timestamp(ctx: Context, digest: Buffer) {
  const tsa = ctx.config.tsa;
  if (!tsa) return undefined;
  const trusted = tsaTrustPems(tsa.trustFile).map((pem) => new X509Certificate(pem));
  const ownCa = (await ctx.pki.authorities.all()).map((a) => a.node);
  try {
    return await requestTimestamp(tsa.url, digest, trusted, { ownCa });
  } catch (error) {
    if (error instanceof TimestampError) throw new EvidenceUnavailable(`the time-stamp authority: ${error.message}`, error.untrustedSigner ? 'tsa_untrusted' : 'tsa_unavailable');
    throw error;
  }
}
