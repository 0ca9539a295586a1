import { createHash, randomUUID } from 'node:crypto';
import type { Context } from '../context.ts';
import { AuditGuardError, assertNoSecrets, containsJwt } from '../audit/guard.ts';
import type { AuditEvent } from '../audit/events.ts';
import { queryEvents } from '../audit/query.ts';
import { recordRefusal } from '../audit/refusals.ts';
import { txnInScope } from '../audit/scope.ts';
import { registeredKeys, type RegisteredKey } from '../clients/authentication/client-keys.ts';
import { assertionAlgs } from '../clients/metadata.ts';
import type { Client } from '../clients/store.ts';
import { evidenceJwsType, evidenceStatement, type EvidenceStatementFields, type RecordedExternalEvidence } from '../guard/evidence.ts';
import { findUser } from '../identity/users.ts';
import { canonicalize } from '../jose/canonical-json.ts';
import { isCanonicalBase64url, jwkThumbprint, mediaType, verifyCompactSignature } from '../jose/index.ts';
import { isUniqueViolation } from '../storage/faults.ts';
import { isTxn } from '../transactions/txn.ts';

/**
 * External evidence under a txn (docs/evidence.md, AMENDMENTS: "only registered evidence producers
 * may add evidence (a scope of their own)"): a producer — an ordinary client holding
 * `evidence:append` for `<issuer>/evidence` — appends a typed event naming a payload by its SHA-256.
 */

/**
 * The registered event types. Anything else must be namespaced: `x-<namespace>.<name>` (lowercase
 * letters, digits, `-`; the name may add `.` and `_`), so a private type never takes a name the
 * list may register later.
 */
export const externalEvidenceTypes = [
  'order.received',
  'order.accepted',
  'order.rejected',
  'order.routed',
  'order.amended',
  'order.cancelled',
  'order.executed',
  'trade.confirmed',
  'trade.allocated',
  'trade.reported',
  'settlement.instructed',
  'settlement.matched',
  'settlement.settled',
  'settlement.failed',
  'custody.deposited',
  'custody.transferred',
  'custody.withdrawn',
] as const;

const namespacedType = /^x-[a-z0-9]+(?:-[a-z0-9]+)*\.[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
const eventIdPattern = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;
const sha256Hex = /^[0-9a-f]{64}$/;
// RFC 3339 §5.6 date-time: a full date, a time, and an offset (Z or ±hh:mm).
const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;
/** How far ahead of our clock a producer's `occurred_at` may be (clock skew). */
export const maxFutureSkewMs = 5 * 60_000;
/** Longest detached JWS accepted (an RSA-4096 PS256 signature is ~700 characters). */
const maxJwsLength = 4096;
const members = new Set(['txn', 'event_id', 'type', 'payload_sha256', 'occurred_at', 'jws']);

/** Whether `type` is a registered type or a namespaced `x-` one. */
export function isEvidenceType(type: string): boolean {
  return (externalEvidenceTypes as readonly string[]).includes(type) || (type.length <= 96 && namespacedType.test(type));
}

/** An append refused: the OAuth error it answers and a reason code for the audit event. */
export class ExternalEvidenceRefusal extends Error {
  override name = 'ExternalEvidenceRefusal';
  /** `invalid_request` (400), `access_denied` (403) or `conflict` (an event id reused for another event: 409). */
  readonly code: 'invalid_request' | 'access_denied' | 'conflict';
  readonly reason: string;
  constructor(code: 'invalid_request' | 'access_denied' | 'conflict', reason: string, message: string) {
    super(message);
    this.code = code;
    this.reason = reason;
  }
}

/** What a producer sends (POST /audit/evidence), checked. */
export interface AppendRequest {
  txn: string;
  event_id: string;
  type: string;
  payload_sha256: string;
  occurred_at?: string;
  jws?: string;
}

/**
 * The recorded event, as answered (the same answer to a retry): the wire shape the guard's helper
 * reads (src/guard/evidence.ts), less whether this call created it.
 */
export type AppendedEvidence = Omit<RecordedExternalEvidence, 'created'>;

/**
 * Reads the body, each rule a refusal naming it: a JSON object with only the known members (never
 * the payload itself); `txn` in the txn format; `event_id` 1–128 of `A-Z a-z 0-9 . _ : / -`;
 * `type` registered or `x-` namespaced; `payload_sha256` 64 lowercase hex digits; `occurred_at`
 * RFC 3339 with an offset, not ahead of our clock by more than five minutes; `jws` a string.
 */
export function readAppendRequest(body: unknown, now: number): AppendRequest {
  const refuse = (message: string, reason = 'malformed') => new ExternalEvidenceRefusal('invalid_request', reason, message);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw refuse('the body must be a JSON object');
  const o = body as Record<string, unknown>;
  for (const name of Object.keys(o)) {
    if (!members.has(name)) throw refuse(name === 'payload' ? 'send the payload’s SHA-256 (payload_sha256), never the payload' : `unknown member ${name.slice(0, 40)}`);
  }
  const { txn, event_id: eventId, type, payload_sha256: hash, occurred_at: occurredAt, jws } = o;
  if (!isTxn(txn)) throw refuse('txn must be 1 to 64 letters, digits or . _ : -');
  if (typeof eventId !== 'string' || !eventIdPattern.test(eventId) || containsJwt(eventId)) throw refuse('event_id must be 1 to 128 letters, digits or . _ : / - (starting with a letter or digit)');
  if (typeof type !== 'string' || !isEvidenceType(type)) throw refuse('type must be a registered evidence type (docs/evidence.md) or a namespaced x-<namespace>.<name>', 'unknown_type');
  if (typeof hash !== 'string' || !sha256Hex.test(hash)) throw refuse('payload_sha256 must be the SHA-256 of the payload as 64 lowercase hex digits', 'bad_hash');
  if (occurredAt !== undefined) {
    if (typeof occurredAt !== 'string' || !rfc3339.test(occurredAt) || !Number.isFinite(Date.parse(occurredAt))) throw refuse('occurred_at must be an RFC 3339 date-time with an offset');
    if (Date.parse(occurredAt) > now + maxFutureSkewMs) throw refuse('occurred_at is in the future');
  }
  if (jws !== undefined && (typeof jws !== 'string' || jws.length === 0 || jws.length > maxJwsLength)) throw refuse(`jws must be a detached compact JWS of at most ${maxJwsLength} characters`, 'jws_invalid');
  return { txn, event_id: eventId, type, payload_sha256: hash, ...(occurredAt !== undefined ? { occurred_at: occurredAt as string } : {}), ...(jws !== undefined ? { jws: jws as string } : {}) };
}

/**
 * Appends a producer's event, each rule in order (every refusal an ExternalEvidenceRefusal, put on
 * the record as `evidence.refused`):
 * 1. the body reads (readAppendRequest);
 * 2. the producer is a client in service with a firm (`owner_lei`): evidence speaks for a firm;
 * 3. the firm takes part in the txn (`firmTakesPart`) — an unknown txn and another firm's are
 *    refused alike, 403 access_denied, so the answer tells no one whether a txn exists;
 * 4. a JWS, when sent, is a detached compact JWS by one of the producer's registered keys over the
 *    statement rebuilt from the request (`verifyProducerJws`);
 * 5. (producer, event_id) is new — or was recorded for the same statement (signed or not alike),
 *    and the first record is the answer (`created: false`); another statement under it is a conflict;
 * 6. the row and `evidence.appended` commit together. Nothing of the payload but its hash is kept.
 */
export async function appendExternalEvidence(ctx: Context, producerId: string, body: unknown, requestId: string): Promise<RecordedExternalEvidence> {
  let txn: string | undefined;
  try {
    const request = readAppendRequest(body, ctx.clock.now());
    txn = request.txn;
    const producer = await ctx.clients.get(producerId);
    if (!producer || producer.disabledAt !== null) throw new ExternalEvidenceRefusal('access_denied', 'producer_unknown', 'the producer is not a client in service');
    const lei = producer.metadata.owner_lei;
    if (lei === undefined) throw new ExternalEvidenceRefusal('access_denied', 'producer_without_firm', 'the producer client has no owner_lei: evidence is appended for a firm');
    const part = await firmTakesPart(ctx, lei, request.txn);
    if (part !== 'party') throw new ExternalEvidenceRefusal('access_denied', part === 'unknown' ? 'txn_unknown' : 'txn_not_party', 'the producer’s firm takes no part in this txn');
    const fields: EvidenceStatementFields = { producer: producerId, txn: request.txn, event_id: request.event_id, type: request.type, payload_sha256: request.payload_sha256, occurred_at: request.occurred_at };
    const statement = evidenceStatement(fields);
    const signer = request.jws !== undefined ? await verifyProducerJws(ctx, producer, request.jws, statement) : undefined;
    const fingerprint = createHash('sha256').update(`${statement}\n${signer ? 'signed' : 'unsigned'}`).digest('hex');
    const first = await existing(ctx, producerId, request.event_id, fingerprint);
    if (first) return first;
    try {
      return await insert(ctx, { request, producerId, lei, fingerprint, signer, requestId });
    } catch (error) {
      // Two copies of one event at once: the second finds the first's row.
      if (!isUniqueViolation(error)) throw error;
      const raced = await existing(ctx, producerId, request.event_id, fingerprint);
      if (raced) return raced;
      throw error;
    }
  } catch (error) {
    if (error instanceof ExternalEvidenceRefusal) {
      await recordRefusal(ctx, { type: 'evidence.refused', requestId, client: producerId, ...(txn !== undefined ? { txn } : {}), error: error.code === 'conflict' ? 'invalid_request' : error.code, reason: error.reason });
    }
    throw error;
  }
}

/** The first record of (producer, event_id) when it is the same statement; a conflict when it is not. */
async function existing(ctx: Context, producer: string, eventId: string, fingerprint: string): Promise<RecordedExternalEvidence | undefined> {
  const row = await ctx.storage.db.selectFrom('external_evidence').selectAll().where('producer', '=', producer).where('event_id', '=', eventId).executeTakeFirst();
  if (!row) return undefined;
  if (row.fingerprint !== fingerprint) {
    throw new ExternalEvidenceRefusal('conflict', 'event_id_conflict', `event_id ${eventId} was recorded for another event (evidence ${row.id}); an event id names one event`);
  }
  return { ...answer(row), created: false };
}

function answer(row: { id: string; txn: string; event_id: string; type: string; payload_sha256: string; occurred_at: string | null; jws: string | null; created_at: number | string }): AppendedEvidence {
  return {
    evidence_id: row.id,
    txn: row.txn,
    event_id: row.event_id,
    type: row.type,
    payload_sha256: row.payload_sha256,
    ...(row.occurred_at !== null ? { occurred_at: row.occurred_at } : {}),
    signed: row.jws !== null,
    recorded_at: new Date(Number(row.created_at)).toISOString(),
  };
}

interface Signer {
  jws: string;
  /** The verifying public JWK, RFC 8785 canonical JSON. */
  jwk: string;
  thumbprint: string;
}

async function insert(
  ctx: Context,
  input: { request: AppendRequest; producerId: string; lei: string; fingerprint: string; signer: Signer | undefined; requestId: string },
): Promise<RecordedExternalEvidence> {
  const { request, producerId, signer } = input;
  const row = {
    id: randomUUID(),
    producer: producerId,
    event_id: request.event_id,
    txn: request.txn,
    type: request.type,
    payload_sha256: request.payload_sha256,
    occurred_at: request.occurred_at ?? null,
    fingerprint: input.fingerprint,
    jws: signer?.jws ?? null,
    jws_key: signer?.jwk ?? null,
    created_at: ctx.clock.now(),
  };
  const event: AuditEvent = {
    type: 'evidence.appended',
    requestId: input.requestId,
    txn: request.txn,
    actor: producerId,
    client: producerId,
    details: {
      evidence_id: row.id,
      event_id: request.event_id,
      evidence_type: request.type,
      payload_sha256: request.payload_sha256,
      ...(request.occurred_at !== undefined ? { occurred_at: request.occurred_at } : {}),
      producer_lei: input.lei,
      signed: signer !== undefined,
      ...(signer ? { jws_sha256: createHash('sha256').update(signer.jws).digest('hex'), key_thumbprint: signer.thumbprint } : {}),
    },
  };
  try {
    // The event must pass the log's guard; check before writing, so a refusal is a 400, never a 5xx.
    assertNoSecrets(event);
  } catch (error) {
    if (error instanceof AuditGuardError) throw new ExternalEvidenceRefusal('invalid_request', 'malformed', 'the event cannot be recorded as sent (a value looks like a token)');
    throw error;
  }
  await ctx.audit.recordWith(async (trx) => {
    await trx.insertInto('external_evidence').values(row).execute();
    return { value: undefined, events: [event] };
  });
  return { ...answer(row), created: true };
}

/**
 * Whether the firm `lei` takes part in `txn`, by the participation rule of src/audit/scope.ts (the
 * one home of it: a txn one of the firm's clients started, or in which a token was issued or
 * exchanged for one of its clients or people), or because a token under the txn was issued or
 * exchanged for a resource server the firm runs — one whose `owner_lei` is the firm: the clearing
 * firm whose API took the settlement instruction is in the trade though no client of its own asked
 * for a token, and its producers need no introspection or exchange rights to show it.
 * `unknown` when nothing at all is filed under the txn.
 *
 * The cost of an append is bounded by the trade, not by the firm: the firm's clients come from the
 * clients' in-memory cache, the resource servers from theirs, and of the firm's people only those
 * the txn's tokens name are read (a handful), never the list of every person.
 */
export async function firmTakesPart(ctx: Context, lei: string, txn: string): Promise<'party' | 'not_party' | 'unknown'> {
  const clients = new Set((await ctx.clients.list()).filter((c) => c.metadata.owner_lei === lei).map((c) => c.metadata.client_id));
  const db = ctx.storage.db;
  const leis: ReadonlySet<string> = new Set([lei]);
  // Machine producers mostly report trades their firm's machines took part in: the clients first.
  if (await txnInScope(db, { kind: 'entities', leis, parties: clients }, txn)) return 'party';
  const audiences = new Set<string>();
  const subjects = new Set<string>();
  let tokens = 0;
  for (const type of ['token.issued', 'token.exchanged'] as const) {
    // A trade has a handful of tokens; a few pages bound the work whatever is filed under it.
    for (let after: string | undefined, pages = 0; pages < 5; pages++) {
      const page = await queryEvents(db, { txn, type }, { limit: 1000, ...(after ? { after } : {}) });
      for (const { event } of page.events) {
        tokens++;
        if (typeof event.audience === 'string') audiences.add(event.audience);
        // A client's own token names the client as its subject: the clients were checked above.
        if (typeof event.subject === 'string' && event.subject !== event.client) subjects.add(event.subject);
      }
      if (!page.next) break;
      after = page.next;
    }
  }
  // A disabled resource server still took the token: its firm stays a party to that trade.
  for (const audience of audiences) if ((await ctx.resourceServers.getStored(audience))?.server.owner_lei === lei) return 'party';
  if (subjects.size > 0) {
    // The firm's people among the txn's subjects (a person counts through a desk of the firm),
    // then scope.ts decides with them as it would with all of the firm's people.
    const snapshot = await ctx.entities.snapshot();
    const people = new Set(clients);
    for (const subject of subjects) {
      const user = await findUser(ctx, subject);
      if (user?.desks.some((desk) => snapshot.desks.get(desk)?.lei === lei)) people.add(user.id);
    }
    if (people.size > clients.size && (await txnInScope(db, { kind: 'entities', leis, parties: people }, txn))) return 'party';
  }
  if (tokens > 0) return 'not_party';
  const started = await db.selectFrom('transactions').select('txn').where('txn', '=', txn).executeTakeFirst();
  if (started) return 'not_party';
  return (await queryEvents(db, { txn }, { limit: 1 })).events.length > 0 ? 'not_party' : 'unknown';
}

/**
 * Verifies a producer's detached JWS (RFC 7515 Appendix F) over the statement, each failure a
 * refusal (`jws_invalid`):
 * - compact, three segments, the payload segment empty (the statement is rebuilt, never sent), the
 *   header and signature canonical base64url;
 * - the header a JSON object: `alg` one of the client-key algorithms (never `none`, RFC 8725 §3.1),
 *   `typ` `clearance-evidence+jws` (RFC 8725 §3.11: no other JWS of the producer's passes for
 *   one), no `crit` (RFC 7515 §4.1.11: we understand no extension) and no `b64` (RFC 7797
 *   unencoded payloads are not used); `kid` an opaque lookup key among the producer's own keys;
 * - keys come only from the producer's registration — `jwks`, or its `jwks_uri` fetched again once
 *   for a kid it does not hold (a rotation) — never from the header (`jwk`, `jku`, `x5u`, `x5c`
 *   are ignored, RFC 8725 §3.10);
 * - the signature verifies over `header.BASE64URL(statement)` with one of them (RFC 7515 §5.2).
 */
export async function verifyProducerJws(ctx: Context, producer: Client, jws: string, statement: string): Promise<Signer> {
  const refuse = (message: string) => new ExternalEvidenceRefusal('invalid_request', 'jws_invalid', `jws: ${message}`);
  const parts = jws.split('.');
  if (parts.length !== 3) throw refuse('must be a compact JWS (three segments)');
  const [headerSegment, payloadSegment, signatureSegment] = parts as [string, string, string];
  if (payloadSegment !== '') throw refuse('must be detached (RFC 7515 Appendix F): leave the payload segment empty');
  if (!isCanonicalBase64url(headerSegment) || !isCanonicalBase64url(signatureSegment)) throw refuse('the header and signature must be base64url');
  let header: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(headerSegment, 'base64url').toString('utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    header = parsed as Record<string, unknown>;
  } catch {
    throw refuse('the header is not a JSON object');
  }
  const alg = header.alg;
  if (typeof alg !== 'string' || !(assertionAlgs as readonly string[]).includes(alg)) throw refuse(`alg must be one of ${assertionAlgs.join(', ')}`);
  if (mediaType(header.typ) !== evidenceJwsType) throw refuse(`typ must be ${evidenceJwsType}`);
  if (header.crit !== undefined) throw refuse('crit is not supported');
  if (header.b64 !== undefined) throw refuse('b64 is not supported (the statement is base64url-encoded, RFC 7515)');
  const kid = header.kid;
  if (kid !== undefined && (typeof kid !== 'string' || kid === '')) throw refuse('kid must be a non-empty string');
  const signingInput = `${headerSegment}.${Buffer.from(statement, 'utf8').toString('base64url')}.${signatureSegment}`;
  const tryKeys = (keys: RegisteredKey[]) => keys.filter((k) => (kid === undefined || k.kid === kid) && k.algorithms.includes(alg as (typeof assertionAlgs)[number])).find((k) => verifyCompactSignature(alg as (typeof assertionAlgs)[number], k.key, signingInput));
  let verified: RegisteredKey | undefined;
  if (producer.metadata.jwks_uri) {
    const sets = ctx.clientAuthentication.clientKeys;
    if (!sets) throw refuse('the producer registered a jwks_uri, and this server fetches no client keys');
    const first = await sets.get(producer);
    if ('error' in first) throw refuse(`the producer's keys could not be fetched (${first.error})`);
    verified = tryKeys(first.keys);
    if (!verified && !first.fetched) {
      const again = await sets.get(producer, { refresh: true });
      if (!('error' in again) && again.fetched) verified = tryKeys(again.keys);
    }
  } else {
    verified = tryKeys(registeredKeys(producer));
  }
  if (!verified) throw refuse('the signature does not verify with any of the producer’s registered keys over this event');
  const jwk = { ...(verified.key.export({ format: 'jwk' }) as Record<string, unknown>), ...(verified.kid !== undefined ? { kid: verified.kid } : {}) };
  return { jws, jwk: canonicalize(jwk), thumbprint: jwkThumbprint(jwk)! };
}
