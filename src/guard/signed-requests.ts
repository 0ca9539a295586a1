import { createHash, X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate, CertificatePolicies, id_ce_certificatePolicies } from '@peculiar/asn1-x509';
import { certificateSerial, ocspRequest, readOcspResponse } from './ocsp.ts';
import { checkContentDigest, MessageSignatureError, verifyRequest, type VerifiedSignature } from './message-signatures.ts';
import type { AccessTokenClaims } from './token.ts';
import { traceContextHeaders } from './trace-context.ts';

/**
 * Signed orders and settlements at the resource server (docs/transaction-signing.md): the request
 * was signed (RFC 9421) by the holder of a certificate of the firm's Clearance CA — the chain to a
 * pinned root, the profile's policy OID or EKU, valid when signed, `good` by OCSP now — with the key
 * the access token is bound to (AMENDMENTS: an agent's signing key is bound to its certificate),
 * over this body, for the token's txn, never seen before. The evidence then goes to Clearance
 * (POST /evidence) with the guard's own producer token.
 */
export interface SignedRequestOptions {
  /** Clearance's issuer: certificates at <issuer>/pki/certificates/{serial}, OCSP at <issuer>/pki/ocsp. */
  issuer: string;
  /** The CA roots trusted, PEM (`clearance ca root`). */
  roots: string[];
  /** Certificate policy OIDs of which the signer's certificate must carry one (its profile); default none required. */
  policies?: string[];
  /** Extended key usage the signer's certificate must carry (default clientAuth). */
  eku?: string;
  /** Oldest a signature may be (default 300 s). */
  maxAgeSeconds?: number;
  /** Remembers signatures seen (default: in memory, for maxAgeSeconds). */
  replay?: { seen(key: string, expiresAt: number): Promise<boolean> };
  /** Report evidence to Clearance with this producer token (`evidence:write` for <issuer>/evidence). */
  evidence?: { token(): Promise<string> };
  fetch?: typeof fetch;
  now?: () => number;
}

export interface SignedRequest {
  method: string;
  /** The absolute URL the client sent to. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: Uint8Array;
}

export interface SignedRequestResult {
  signature: VerifiedSignature;
  signer: { serial: string; holder: string; profile: string; thumbprint: string };
  evidence?: { evidence_id: string; record_sha256: string; timestamp?: { gen_time: string; serial: string } };
}

export class SignedRequestError extends Error {
  override name = 'SignedRequestError';
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

const clientAuth = '1.3.6.1.5.5.7.3.2';

export function createSignedRequestVerifier(options: SignedRequestOptions): { verify(request: SignedRequest, token: AccessTokenClaims): Promise<SignedRequestResult> } {
  const doFetch = options.fetch ?? fetch;
  const now = options.now ?? Date.now;
  const roots = options.roots.map((pem) => new X509Certificate(pem));
  const certificates = new Map<string, { leaf: X509Certificate; issuer: X509Certificate; profile: string; holder: string }>();
  const memory = new Map<string, number>();
  const replay = options.replay ?? {
    async seen(key: string, expiresAt: number) {
      for (const [k, at] of memory) if (at < now()) memory.delete(k);
      if (memory.has(key)) return true;
      memory.set(key, expiresAt);
      return false;
    },
  };

  const certificateOf = async (serial: string) => {
    const known = certificates.get(serial);
    if (known) return known;
    if (!/^[0-9a-f]{2,40}$/.test(serial)) return undefined;
    const response = await doFetch(`${options.issuer}/pki/certificates/${serial}`);
    if (response.status === 404) return undefined;
    if (!response.ok) throw new SignedRequestError('unavailable', `Clearance answered ${response.status} for certificate ${serial}`);
    const body = (await response.json()) as { chain: string; profile: string; holder: string };
    const [leafPem, issuerPem] = body.chain.split(/(?=-----BEGIN CERTIFICATE-----)/);
    if (!leafPem || !issuerPem) throw new SignedRequestError('untrusted', `certificate ${serial} came without its chain`);
    const leaf = new X509Certificate(leafPem);
    const issuer = new X509Certificate(issuerPem);
    // The chain to a pinned root, whatever the server said.
    const anchored = roots.some((root) => issuer.checkIssued(root) && issuer.verify(root.publicKey)) && leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey);
    if (!anchored || certificateSerial(leaf) !== serial) throw new SignedRequestError('untrusted', `certificate ${serial} does not chain to a trusted root`);
    const found = { leaf, issuer, profile: body.profile, holder: body.holder };
    certificates.set(serial, found);
    return found;
  };

  return {
    async verify(request, token) {
      try {
        checkContentDigest(headerOf(request.headers, 'content-digest'), request.body);
      } catch (error) {
        throw new SignedRequestError((error as MessageSignatureError).code, (error as Error).message);
      }
      let signer: Awaited<ReturnType<typeof certificateOf>>;
      let signature: VerifiedSignature;
      try {
        signature = await verifyRequest(
          { method: request.method, targetUri: request.url, headers: request.headers },
          {
            resolveKey: async (keyid) => {
              signer = await certificateOf(keyid.toLowerCase());
              return signer && { publicKey: signer.leaf.publicKey };
            },
            now,
            maxAgeSeconds: options.maxAgeSeconds ?? 300,
            // The signature alone (canonical): the label is not signed, so it keys nothing.
            seen: (_label, value, created) => replay.seen(`sig:${value.toString('base64')}`, (created + (options.maxAgeSeconds ?? 300) + 60) * 1000),
          },
        );
      } catch (error) {
        if (error instanceof MessageSignatureError) throw new SignedRequestError(error.code, error.message);
        throw error;
      }
      const { leaf, issuer, profile, holder } = signer!;
      const signedAt = signature.created * 1000;
      if (signedAt < leaf.validFromDate.getTime() || signedAt > leaf.validToDate.getTime()) throw new SignedRequestError('expired_certificate', 'the certificate was not valid when the request was signed');
      if (!(leaf.keyUsage ?? []).includes(options.eku ?? clientAuth)) throw new SignedRequestError('wrong_profile', `the certificate lacks the extended key usage ${options.eku ?? clientAuth}`);
      if (options.policies?.length && !options.policies.some((oid) => hasPolicy(leaf, oid))) throw new SignedRequestError('wrong_profile', 'the certificate carries none of the required policies');
      const thumbprint = createHash('sha256').update(leaf.raw).digest('base64url');
      // AMENDMENTS: the signing key is the one the token is bound to.
      if (token.cnf?.['x5t#S256'] !== thumbprint) throw new SignedRequestError('key_binding', 'the request is not signed with the certificate the access token is bound to');
      if (token.txn === undefined || headerOf(request.headers, 'txn') !== token.txn) throw new SignedRequestError('txn', "the signed txn is not the access token's");
      const ocsp = await doFetch(`${options.issuer}/pki/ocsp`, { method: 'POST', headers: { 'content-type': 'application/ocsp-request', ...traceContextHeaders() }, body: ocspRequest(leaf, issuer) });
      if (!ocsp.ok) throw new SignedRequestError('status_unknown', `OCSP answered ${ocsp.status}`);
      let status;
      try {
        // Only the CA or the responder it designated answers for it (RFC 6960 §4.2.2.2): never
        // another of its certificates that carries OCSPSigning (src/guard/ocsp.ts).
        status = readOcspResponse(Buffer.from(await ocsp.arrayBuffer()), leaf, issuer, { at: now(), responder: 'designated' });
      } catch (error) {
        throw new SignedRequestError('status_unknown', (error as Error).message);
      }
      if (status.status !== 'good') throw new SignedRequestError('revoked', `the signer's certificate is ${status.status}`);
      const result: SignedRequestResult = { signature, signer: { serial: signature.keyid.toLowerCase(), holder, profile, thumbprint } };
      if (!options.evidence) return result;
      const reported = await doFetch(`${options.issuer}/evidence`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${await options.evidence.token()}`, ...traceContextHeaders() },
        body: JSON.stringify({
          txn: token.txn,
          jti: token.jti,
          method: request.method,
          target_uri: request.url,
          signature_input: signature.signatureInput,
          signature: signature.signature.toString('base64'),
          signature_base: signature.signatureBase,
          content_digest: headerOf(request.headers, 'content-digest'),
        }),
      });
      if (reported.status !== 201) throw new SignedRequestError('evidence_unrecorded', `Clearance did not record the evidence: ${reported.status} ${await reported.text()}`);
      return { ...result, evidence: (await reported.json()) as SignedRequestResult['evidence'] & object };
    },
  };
}

function headerOf(headers: SignedRequest['headers'], name: string): string | undefined {
  const found = Object.entries(headers).find(([key]) => key.toLowerCase() === name)?.[1];
  return Array.isArray(found) ? found.join(', ') : found;
}

/** Whether the certificate's policies extension (RFC 5280 §4.2.1.4) names `oid`. */
function hasPolicy(certificate: X509Certificate, oid: string): boolean {
  const parsed = AsnConvert.parse(certificate.raw, Certificate);
  const extension = parsed.tbsCertificate.extensions?.find((e) => e.extnID === id_ce_certificatePolicies);
  if (!extension) return false;
  return AsnConvert.parse(extension.extnValue.buffer, CertificatePolicies).some((policy) => policy.policyIdentifier === oid);
}
