/**
 * External evidence in evidence bundles (docs/evidence.md): every `evidence.appended` event of the
 * bundle's query is in it already, with its inclusion proof, like any event; what this adds is the
 * material of the signed ones — the producer's detached JWS and the public key that verified it —
 * which the audit event names only by digest (a JWS is token-shaped, and the log keeps none). The
 * checks run offline, from the bundle alone; `--payload` files are matched to events by SHA-256.
 */
import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { evidenceJwsType, evidenceStatement } from '../guard/evidence.ts';
import { canonicalize } from '../jose/canonical-json.ts';
import { importPublicJwk, isJwsAlgorithm, jwkThumbprint, mediaType, verifyCompactSignature } from '../jose/index.ts';
import type { Database } from '../storage/schema.ts';
import type { StoredAuditEvent } from './events.ts';

/** A signed appended event's material, as a bundle carries it. */
export interface BundledAppendedEvidence {
  /** The `evidence_id` of its `evidence.appended` event. */
  id: string;
  /** The producer's detached JWS, `header..signature` (its SHA-256 is the event's `jws_sha256`). */
  jws: string;
  /** The public JWK that verified it, RFC 8785 canonical JSON (its RFC 7638 thumbprint is the event's `key_thumbprint`). */
  key: string;
}

/** One appended event, checked: what the verifier reports and what `--payload` files are matched to. */
export interface VerifiedAppendedEvidence {
  evidenceId: string;
  leafIndex: number;
  txn: string;
  /** The producer's client_id, and its firm's LEI. */
  producer: string;
  producerLei?: string;
  eventId: string;
  type: string;
  payloadSha256: string;
  occurredAt?: string;
  /** When Clearance recorded it (the event's time), epoch ms. */
  recordedAt: number;
  /** Whether the producer signed it; then the JWS verified with the key of this thumbprint. */
  signed: boolean;
  keyThumbprint?: string;
}

/** The material of the signed `evidence.appended` events among `events`, in the order recorded. */
export async function appendedEvidenceOf(db: Kysely<Database>, events: { event: StoredAuditEvent }[]): Promise<BundledAppendedEvidence[]> {
  const ids = events.filter(({ event }) => event.type === 'evidence.appended' && (event.details as Record<string, unknown> | undefined)?.signed === true).map(({ event }) => String(event.details!.evidence_id));
  const rows: { id: string; jws: string | null; jws_key: string | null }[] = [];
  for (let i = 0; i < ids.length; i += 500) {
    rows.push(...(await db.selectFrom('external_evidence').select(['id', 'jws', 'jws_key', 'created_at']).where('id', 'in', ids.slice(i, i + 500)).orderBy('created_at').execute()));
  }
  return rows.flatMap((row) => (row.jws !== null && row.jws_key !== null ? [{ id: row.id, jws: row.jws, key: row.jws_key }] : []));
}

const hex64 = /^[0-9a-f]{64}$/;

/**
 * For every `evidence.appended` event: its facts are well formed; when it says the producer signed
 * it, the bundle carries the JWS whose SHA-256 and the key whose thumbprint the (included, signed)
 * event names, and the JWS verifies with that key over the statement rebuilt from the event
 * (src/guard/evidence.ts) — so the producer's signature covers the payload through its hash.
 */
export function checkAppendedEvidence(
  events: { leafIndex: number; event: StoredAuditEvent }[],
  bundled: BundledAppendedEvidence[] | undefined,
): { problems: string[]; verified: VerifiedAppendedEvidence[] } {
  const problems: string[] = [];
  const verified: VerifiedAppendedEvidence[] = [];
  if (bundled !== undefined && !Array.isArray(bundled)) return { problems: ['appendedEvidence must be a list'], verified };
  const byId = new Map((bundled ?? []).map((b) => [b?.id, b]));
  const used = new Set<string>();
  for (const { leafIndex, event } of events) {
    if (event.type !== 'evidence.appended') continue;
    const where = `appended evidence (leaf ${leafIndex})`;
    const d = (event.details ?? {}) as Record<string, unknown>;
    const { evidence_id: id, event_id: eventId, evidence_type: type, payload_sha256: hash, occurred_at: occurredAt, signed } = d;
    if (typeof id !== 'string' || typeof eventId !== 'string' || typeof type !== 'string' || typeof hash !== 'string' || !hex64.test(hash) || typeof signed !== 'boolean' || typeof event.client !== 'string' || typeof event.txn !== 'string' || (occurredAt !== undefined && typeof occurredAt !== 'string')) {
      problems.push(`${where}: the event is not a well-formed evidence.appended`);
      continue;
    }
    const item: VerifiedAppendedEvidence = {
      evidenceId: id,
      leafIndex,
      txn: event.txn,
      producer: event.client,
      ...(typeof d.producer_lei === 'string' ? { producerLei: d.producer_lei } : {}),
      eventId,
      type,
      payloadSha256: hash,
      ...(occurredAt !== undefined ? { occurredAt: occurredAt as string } : {}),
      recordedAt: event.time,
      signed,
    };
    if (signed) {
      const material = byId.get(id);
      if (!material) {
        problems.push(`${where}: the bundle does not carry the producer's JWS of evidence ${id}`);
        continue;
      }
      used.add(id);
      try {
        item.keyThumbprint = checkSignature(material, d, { producer: event.client, txn: event.txn, event_id: eventId, type, payload_sha256: hash, occurred_at: occurredAt as string | undefined });
      } catch (error) {
        problems.push(`${where}: ${(error as Error).message}`);
        continue;
      }
    }
    verified.push(item);
  }
  for (const id of byId.keys()) if (!used.has(String(id))) problems.push(`appended evidence ${String(id)}: the bundle carries a JWS for no signed event of it`);
  return { problems, verified };
}

function checkSignature(material: BundledAppendedEvidence, details: Record<string, unknown>, fields: Parameters<typeof evidenceStatement>[0]): string {
  if (typeof material.jws !== 'string' || typeof material.key !== 'string') throw new Error('the JWS material is malformed');
  if (createHash('sha256').update(material.jws).digest('hex') !== details.jws_sha256) throw new Error('the JWS is not the one the log recorded (SHA-256 differs)');
  let jwk: Record<string, unknown>;
  try {
    jwk = JSON.parse(material.key) as Record<string, unknown>;
    if (canonicalize(jwk) !== material.key) throw new Error('not canonical');
  } catch {
    throw new Error('the producer key is not a canonical JWK');
  }
  const thumbprint = jwkThumbprint(jwk);
  if (thumbprint === undefined || thumbprint !== details.key_thumbprint) throw new Error('the producer key is not the one the log recorded (thumbprint differs)');
  const imported = importPublicJwk(jwk);
  if ('error' in imported) throw new Error(`the producer key ${imported.error}`);
  const [headerSegment, payloadSegment, signatureSegment] = material.jws.split('.');
  if (headerSegment === undefined || payloadSegment !== '' || signatureSegment === undefined) throw new Error('the JWS is not a detached compact JWS');
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(headerSegment, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new Error('the JWS header is not JSON');
  }
  if (!isJwsAlgorithm(header.alg) || mediaType(header.typ) !== evidenceJwsType) throw new Error('the JWS header is not an evidence statement’s');
  const input = `${headerSegment}.${Buffer.from(evidenceStatement(fields), 'utf8').toString('base64url')}.${signatureSegment}`;
  if (!verifyCompactSignature(header.alg, imported.key, input)) throw new Error('the producer’s JWS does not verify over the recorded event');
  return thumbprint;
}

/**
 * A payload file as the verifier was given it: `--payload FILE`, or `--payload NAME=FILE` naming its
 * event — `PRODUCER:EVENT_ID`, the evidence id, or a bare `EVENT_ID` when only one event of the
 * bundle has it (an event_id is unique only per producer).
 */
export interface SuppliedPayload {
  file: string;
  /** The event it is for (`PRODUCER:EVENT_ID`, the evidence id, or the producer's event_id), when named. */
  names?: string;
  sha256: string;
}

export interface PayloadCheck {
  problems: string[];
  /** Each supplied file and the events whose recorded hash it matches. */
  matched: { file: string; evidence: VerifiedAppendedEvidence }[];
  /** Appended events no supplied file matched (not a failure: the auditor holds only some payloads). */
  unsupplied: VerifiedAppendedEvidence[];
}

/**
 * The appended events a `NAME=FILE` names: the one whose evidence id is NAME, whose
 * `PRODUCER:EVENT_ID` is NAME, or whose own event_id is NAME. Compared whole, never split: a
 * client_id and an event_id may both hold `:`, and a NAME that reads both ways names two events.
 */
function eventsNamed(appended: VerifiedAppendedEvidence[], name: string): VerifiedAppendedEvidence[] {
  return appended.filter((e) => e.evidenceId === name || `${e.producer}:${e.eventId}` === name || e.eventId === name);
}

/**
 * Matches supplied payloads to the bundle's appended events by SHA-256: a file matching no event's
 * recorded hash is a failure (altered, or not a payload of this trade); a file named for an event
 * whose recorded hash differs is a mismatch, a failure too. A name must pick one event: an event_id
 * is unique only per producer (`(producer, event_id)`, docs/evidence.md), so a bare EVENT_ID that
 * two producers used is ambiguous and refused, naming them — never matched to whichever hash fits.
 */
export function checkPayloads(appended: VerifiedAppendedEvidence[], supplied: SuppliedPayload[]): PayloadCheck {
  const problems: string[] = [];
  const matched: PayloadCheck['matched'] = [];
  for (const payload of supplied) {
    if (payload.names !== undefined) {
      const named = eventsNamed(appended, payload.names);
      if (named.length === 0) {
        problems.push(`payload ${payload.file}: names ${payload.names}, which is no appended event of the bundle`);
        continue;
      }
      if (named.length > 1) {
        const producers = [...new Set(named.map((e) => e.producer))];
        problems.push(
          `payload ${payload.file}: ${payload.names} is ambiguous: it names ${named.length} appended events (${named.map((e) => `${e.producer}:${e.eventId}, evidence ${e.evidenceId}`).join('; ')}) ` +
            `of producer(s) ${producers.join(', ')}; name one as PRODUCER:EVENT_ID=FILE or EVIDENCE_ID=FILE`,
        );
        continue;
      }
      const evidence = named[0]!;
      if (evidence.payloadSha256 !== payload.sha256) {
        problems.push(`payload ${payload.file}: does not match event ${evidence.producer}:${evidence.eventId} (sha256 ${payload.sha256}, recorded ${evidence.payloadSha256})`);
        continue;
      }
      matched.push({ file: payload.file, evidence });
      continue;
    }
    const same = appended.filter((e) => e.payloadSha256 === payload.sha256);
    if (same.length === 0) problems.push(`payload ${payload.file}: matches no appended event's recorded hash (sha256 ${payload.sha256})`);
    for (const evidence of same) matched.push({ file: payload.file, evidence });
  }
  const seen = new Set(matched.map((m) => m.evidence.evidenceId));
  return { problems, matched, unsupplied: appended.filter((e) => !seen.has(e.evidenceId)) };
}
