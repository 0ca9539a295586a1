/**
 * External evidence from a producer's own systems (docs/evidence.md): an order management system,
 * a venue gateway, a settlement or custody system appends "this exact payload happened under this
 * txn" to Clearance's audit log (POST <issuer>/audit/evidence), sending only the payload's SHA-256
 * and, optionally, a detached JWS (RFC 7515 Appendix F) by its own registered key.
 *
 * The statement the JWS signs is rebuilt by Clearance and by the offline verifier from the recorded
 * fields (`evidenceStatement`), so the payload never travels: the signature covers the payload
 * through its SHA-256, and binds it to the producer, the txn, the event id and the type.
 *
 * Imports only jose, node: built-ins and src/jose, like the rest of the guard.
 */
import { createHash, randomUUID } from 'node:crypto';
import { CompactSign, importJWK, SignJWT, type CryptoKey, type JWK, type KeyObject } from 'jose';
import { canonicalize } from '../jose/canonical-json.ts';
import { traceContextHeaders } from './trace-context.ts';

/** The format member of the signed statement. */
export const evidenceStatementFormat = 'clearance-evidence-statement/1';

/** The `typ` of a producer's detached JWS over the statement (RFC 7515 §4.1.9; RFC 8725 §3.11). */
export const evidenceJwsType = 'clearance-evidence+jws';

/** The scope of an external evidence producer, for Clearance's evidence API (`<issuer>/evidence`). */
export const evidenceAppendScope = 'evidence:append';

/** The fields of an appended event a producer's JWS covers. */
export interface EvidenceStatementFields {
  /** The producer's client_id. */
  producer: string;
  txn: string;
  /** The producer's own id for the event (its idempotency key). */
  event_id: string;
  /** A registered type (`order.received`, …) or a namespaced `x-<namespace>.<name>`. */
  type: string;
  /** 64 lowercase hex digits: what `sha256sum` prints for the payload file. */
  payload_sha256: string;
  /** RFC 3339, exactly as sent. */
  occurred_at?: string | undefined;
}

/**
 * The statement a producer's detached JWS signs: the RFC 8785 canonical JSON of the fields and the
 * format, UTF-8. One spelling, rebuilt from the fields by whoever verifies.
 */
export function evidenceStatement(fields: EvidenceStatementFields): string {
  const { producer, txn, event_id, type, payload_sha256, occurred_at } = fields;
  return canonicalize({ format: evidenceStatementFormat, producer, txn, event_id, type, payload_sha256, ...(occurred_at !== undefined ? { occurred_at } : {}) });
}

/** SHA-256 of a payload, as Clearance records it: 64 lowercase hex digits. */
export function payloadSha256(payload: Uint8Array | string): string {
  return createHash('sha256').update(payload).digest('hex');
}

/** A producer's signing key: its private key (registered in its client's jwks or jwks_uri) and algorithm. */
export interface EvidenceSigningKey {
  privateKey: CryptoKey | KeyObject | JWK;
  /** ES256 (default), PS256 or EdDSA: the algorithms Clearance accepts for client keys. */
  alg?: 'ES256' | 'PS256' | 'EdDSA';
  /** The key's `kid` in the registration (recommended: Clearance looks the key up by it). */
  kid?: string;
}

/**
 * Signs the statement as a detached JWS (RFC 7515 Appendix F): `header..signature`, the payload
 * segment left out because the verifier rebuilds it.
 */
export async function signEvidenceStatement(fields: EvidenceStatementFields, key: EvidenceSigningKey): Promise<string> {
  const alg = key.alg ?? 'ES256';
  const privateKey = isJwk(key.privateKey) ? await importJWK(key.privateKey, alg) : key.privateKey;
  const jws = await new CompactSign(new TextEncoder().encode(evidenceStatement(fields)))
    .setProtectedHeader({ alg, typ: evidenceJwsType, ...(key.kid !== undefined ? { kid: key.kid } : {}) })
    .sign(privateKey);
  const [header, , signature] = jws.split('.');
  return `${header}..${signature}`;
}

/** How the producer gets its token: client credentials with private_key_jwt or a secret, or a token it has. */
export type EvidenceClientAuth =
  | { clientId: string; privateKey: CryptoKey | KeyObject | JWK; alg?: 'ES256' | 'PS256' | 'EdDSA'; kid?: string }
  | { clientId: string; clientSecret: string };

export interface EvidenceRecorderOptions {
  /** Clearance's issuer URL. */
  issuer: string;
  /** The producer client's credentials; the recorder gets (and reuses) client-credentials tokens. */
  clientAuth?: EvidenceClientAuth;
  /** A token for `<issuer>/evidence` with `evidence:append`, or a function giving one (instead of clientAuth). */
  accessToken?: string | (() => Promise<string>);
  /** The producer's client_id when only `accessToken` is given (the JWS statement names it). */
  clientId?: string;
  /**
   * Sign each event's statement (detached JWS) with this key; default: the private_key_jwt key of
   * `clientAuth` when there is one. `false`: never sign.
   */
  signingKey?: EvidenceSigningKey | false;
  /** Default `<issuer>/token`. */
  tokenEndpoint?: string;
  fetch?: typeof fetch;
}

/** One event to append. */
export interface EvidenceEvent {
  txn: string;
  type: string;
  /** The producer's own id: sending the same event again is answered with the first record. */
  eventId: string;
  /** The payload, hashed here; never sent. */
  payload: Uint8Array | string;
  occurredAt?: Date | string;
}

/** Clearance's answer: the recorded event. */
export interface RecordedExternalEvidence {
  evidence_id: string;
  txn: string;
  event_id: string;
  type: string;
  payload_sha256: string;
  occurred_at?: string;
  signed: boolean;
  recorded_at: string;
  /** False when Clearance had recorded this event before (a retry): the first record stands. */
  created: boolean;
}

/** Clearance refused the event (its OAuth error), or could not be reached. */
export class EvidenceRecordError extends Error {
  override name = 'EvidenceRecordError';
  /** The HTTP status Clearance answered (0: not reached). */
  readonly status: number;
  /** The OAuth error code (`access_denied`, `invalid_request`, …). */
  readonly error: string;
  constructor(status: number, error: string, description: string) {
    super(`${error}: ${description}`);
    this.status = status;
    this.error = error;
  }
}

export interface EvidenceRecorder {
  record(event: EvidenceEvent): Promise<RecordedExternalEvidence>;
}

/**
 * A recorder for one producer: hashes each payload, signs the statement (when it has a key), gets a
 * client-credentials token for `<issuer>/evidence` with `evidence:append` (reused until a minute
 * before it expires) and posts the event. A retry of the same event (same eventId and payload) is
 * safe: Clearance answers with the first record.
 */
export function createEvidenceRecorder(options: EvidenceRecorderOptions): EvidenceRecorder {
  const doFetch = options.fetch ?? fetch;
  const issuer = options.issuer.replace(/\/+$/, '');
  const clientId = options.clientAuth?.clientId ?? options.clientId;
  if (clientId === undefined) throw new TypeError('createEvidenceRecorder needs clientAuth, or clientId with accessToken');
  const signingKey: EvidenceSigningKey | undefined =
    options.signingKey === false
      ? undefined
      : (options.signingKey ??
        (options.clientAuth && 'privateKey' in options.clientAuth
          ? { privateKey: options.clientAuth.privateKey, ...(options.clientAuth.alg ? { alg: options.clientAuth.alg } : {}), ...(options.clientAuth.kid !== undefined ? { kid: options.clientAuth.kid } : {}) }
          : undefined));
  let cached: { token: string; until: number } | undefined;

  const token = async (): Promise<string> => {
    if (typeof options.accessToken === 'string') return options.accessToken;
    if (options.accessToken) return options.accessToken();
    if (cached && cached.until > Date.now()) return cached.token;
    const auth = options.clientAuth!;
    const form = new URLSearchParams({ grant_type: 'client_credentials', resource: `${issuer}/evidence`, scope: evidenceAppendScope });
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', ...traceContextHeaders() };
    if ('clientSecret' in auth) {
      // RFC 6749 §2.3.1: both parts form-encoded, then base64.
      const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
      headers.authorization = `Basic ${Buffer.from(`${enc(auth.clientId)}:${enc(auth.clientSecret)}`).toString('base64')}`;
    } else {
      const alg = auth.alg ?? 'ES256';
      const key = isJwk(auth.privateKey) ? await importJWK(auth.privateKey, alg) : auth.privateKey;
      const now = Math.floor(Date.now() / 1000);
      // RFC 7523 §3: iss = sub = client_id, aud = the issuer, short-lived, a fresh jti.
      const assertion = await new SignJWT({ jti: randomUUID() })
        .setProtectedHeader({ alg, ...(auth.kid !== undefined ? { kid: auth.kid } : {}) })
        .setIssuer(auth.clientId)
        .setSubject(auth.clientId)
        .setAudience(issuer)
        .setIssuedAt(now)
        .setExpirationTime(now + 60)
        .sign(key);
      form.set('client_id', auth.clientId);
      form.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      form.set('client_assertion', assertion);
    }
    const response = await doFetch(options.tokenEndpoint ?? `${issuer}/token`, { method: 'POST', headers, body: form.toString() });
    const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
    if (response.status !== 200 || typeof body.access_token !== 'string') throw new EvidenceRecordError(response.status, String(body.error ?? 'token_request_failed'), String(body.error_description ?? 'no access token for the evidence API'));
    const lifetime = typeof body.expires_in === 'number' ? body.expires_in : 60;
    cached = { token: body.access_token, until: Date.now() + Math.max(0, lifetime - 60) * 1000 };
    return body.access_token;
  };

  return {
    async record(event) {
      const occurredAt = event.occurredAt instanceof Date ? event.occurredAt.toISOString() : event.occurredAt;
      const fields: EvidenceStatementFields = { producer: clientId, txn: event.txn, event_id: event.eventId, type: event.type, payload_sha256: payloadSha256(event.payload), ...(occurredAt !== undefined ? { occurred_at: occurredAt } : {}) };
      const jws = signingKey ? await signEvidenceStatement(fields, signingKey) : undefined;
      const response = await doFetch(`${issuer}/audit/evidence`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${await token()}`, ...traceContextHeaders() },
        body: JSON.stringify({ txn: fields.txn, event_id: fields.event_id, type: fields.type, payload_sha256: fields.payload_sha256, ...(occurredAt !== undefined ? { occurred_at: occurredAt } : {}), ...(jws ? { jws } : {}) }),
      });
      const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
      if (response.status !== 200 && response.status !== 201) throw new EvidenceRecordError(response.status, String(body.error ?? 'evidence_unrecorded'), String(body.error_description ?? `Clearance answered ${response.status}`));
      return { ...(body as unknown as Omit<RecordedExternalEvidence, 'created'>), created: response.status === 201 };
    },
  };
}

/**
 * The one-call helper: records one event (see createEvidenceRecorder; a recorder made once reuses
 * its token across events).
 */
export async function recordEvidence(options: EvidenceRecorderOptions & EvidenceEvent): Promise<RecordedExternalEvidence> {
  const { txn, type, eventId, payload, occurredAt, ...recorder } = options;
  return createEvidenceRecorder(recorder).record({ txn, type, eventId, payload, ...(occurredAt !== undefined ? { occurredAt } : {}) });
}

function isJwk(key: unknown): key is JWK {
  // A CryptoKey or a KeyObject has no `kty`.
  return typeof key === 'object' && key !== null && 'kty' in key;
}
