/**
 * Evidence bundles (issue 3 §6): the events of a transaction (or subject, or time range), each
 * with its RFC 9162 §2.1.3 inclusion proof into one signed checkpoint, the audit public key, and
 * the token-signing JWKS in force while they happened. The whole bundle is also signed by the
 * audit key and written as RFC 8785 canonical JSON, so changing any byte of it is detected.
 * `verifyBundle` needs nothing but the file (and, ideally, the audit key's pinned fingerprint).
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import type { Kysely } from 'kysely';
import { checkBundledApprovals, type BundledApproval } from './bundle-approvals.ts';
import { checkBundledEvidence, type BundledSigningEvidence, type VerifiedSigningEvidence } from './bundle-evidence.ts';
import { checkBundledDestinations, destinationEvidenceFor, type BundledDestinationChange, type DestinationChangeSummary } from './bundle-destinations.ts';
import { appendedEvidenceOf, checkAppendedEvidence, type BundledAppendedEvidence, type VerifiedAppendedEvidence } from './bundle-appended.ts';
import { checkCounterpartyStatement, type CounterpartyStatement, type CounterpartySummary } from './bundle-counterparty.ts';
import type { Database } from '../storage/schema.ts';
import { auditKeyFingerprint, type AuditSigningKey } from './audit-key.ts';
import { auditKeyChainTo, checkAuditKeyChain, type BundledAuditKey } from './bundle-keys.ts';
import { canonicalize } from '../jose/canonical-json.ts';
import { isCanonicalBase64, verifyCheckpoint } from './checkpoint.ts';
import { parseStoredEvent } from './event-format.ts';
import type { StoredAuditEvent } from './events.ts';
import { privateMemberOf } from '../jose/index.ts';
import { leafHash, verifyInclusion } from './merkle.ts';
import { holdCovers, holdDetails, listHolds, type Hold } from './holds.ts';
import { inclusionProofFromStore, storedCheckpoint, StoreHasher, type SignedCheckpoint } from './proofs.ts';
import { maxPageSize, queryEvents, type AuditQuery } from './query.ts';

export const bundleFormat = 'clearance-audit-bundle/1';

export interface BundledEvent {
  leafIndex: number;
  event: StoredAuditEvent;
  /** Standard base64 hashes, RFC 9162 §2.1.3.1 order, into `checkpoint`. */
  inclusionProof: string[];
}

export interface EvidenceBundle {
  format: typeof bundleFormat;
  createdAt: number;
  /** What was asked for; every event in the bundle matches it. */
  query: AuditQuery;
  auditKey: { keyId: string; origin: string; /** SPKI DER, standard base64. */ publicKey: string };
  /**
   * The audit keys `auditKey` succeeded, newest first, each with its signed handover
   * (./bundle-keys.ts): an auditor who pinned an older key verifies this bundle too. Absent for a
   * first key, and in bundles written before handovers.
   */
  auditKeyChain?: BundledAuditKey[];
  checkpoint: SignedCheckpoint;
  events: BundledEvent[];
  /** The token-signing keys published at any time while these events happened (RFC 7517 §5). */
  jwks: { keys: JWK[] };
  /**
   * The legal holds that applied (./holds.ts): each hold, active or since released, that covers
   * at least one event of the bundle, as `holdDetails` states it (released ones with when and by
   * whom). Absent in bundles written before holds existed.
   */
  holds?: Record<string, unknown>[];
  /**
   * The signing evidence records the bundle's `evidence.recorded` events name (./bundle-evidence.ts),
   * and the TSA anchors their time stamps chain to. Absent in bundles written before them.
   */
  signingEvidence?: BundledSigningEvidence[];
  tsaTrust?: string[];
  /**
   * The producers' JWS and verifying keys of the signed `evidence.appended` events
   * (./bundle-appended.ts). Absent when none is signed, and in bundles written before them.
   */
  appendedEvidence?: BundledAppendedEvidence[];
  /**
   * Revealed personal fields by event id (docs/privacy.md), only when an allowed reader asked for
   * them: the events themselves carry the ciphertext the leaves cover; this is the exporter's
   * statement of what it decrypts to, signed with the rest. Absent by default.
   */
  personal?: Record<string, Record<string, unknown>>;
  /**
   * The address-book changes behind the bundle's transfers (./bundle-destinations.ts): for each
   * destination version a transfer's token event names, the events of the change that put it in
   * the book (its request, approvals and approval), with inclusion proofs into `checkpoint`.
   * Absent when the bundle has no such transfer.
   */
  destinations?: BundledDestinationChange[];
  /**
   * A counterparty's bundle (./bundle-counterparty.ts, docs/evidence.md "Evidence for
   * counterparties"): for whom it was cut, its hops and why, how many events of the txn it leaves
   * out. Absent in every other bundle, which holds every sealed event matching its query.
   */
  counterparty?: CounterpartyStatement;
  /** Ed25519 by the audit key over `bundleBody` of everything above. */
  signature: string;
}

export class BundleError extends Error {
  override name = 'BundleError';
}

/** Most events one bundle holds. */
export const maxBundleEvents = 100_000;

export interface ExportOptions {
  query: AuditQuery;
  key: AuditSigningKey;
  /**
   * The key that signed a given checkpoint (AuditKeys.signingKeyFor): right after a rotation the
   * latest checkpoint is still the previous key's, and the bundle is signed by its checkpoint's key.
   */
  keyFor?: (keyId: string) => Promise<AuditSigningKey>;
  /** The token-signing JWKS in force between two times (KeyStore.jwksInForce). */
  jwksInForce: (from: number, to: number) => Promise<{ keys: JWK[] }>;
  now: number;
  /** The TSA certificates evidence stamps chain to (PEM; CLEARANCE_TSA_TRUST), stated in the bundle. */
  tsaTrust?: string[];
  /** When given (an allowed reader asked), the revealed personal fields of the events, stated as `personal`. */
  personal?: (events: StoredAuditEvent[]) => Promise<Record<string, Record<string, unknown>>>;
  /**
   * A counterparty's bundle (src/evidence/counterparty.ts): only the events `include` admits, the
   * others withheld and counted; no legal holds (the operator's matters, not the counterparty's);
   * the statement made from the events it holds.
   */
  counterparty?: {
    include: (event: StoredAuditEvent) => boolean;
    statement: (events: readonly BundledEvent[], withheld: number) => CounterpartyStatement;
  };
}

export interface ExportResult {
  bundle: EvidenceBundle;
  /** The file: canonical JSON and a newline. */
  text: string;
  /** Matching events not in the bundle because the sealer has not sealed them yet. */
  unsealed: number;
}

/** Builds and signs a bundle of every sealed event matching the query, proven into the latest checkpoint. */
export async function exportBundle(db: Kysely<Database>, options: ExportOptions): Promise<ExportResult> {
  const checkpoint = await storedCheckpoint(db);
  if (!checkpoint) throw new BundleError('the audit log has no checkpoint yet');
  // One key vouches for the bundle and its checkpoint; after a rotation, the checkpoint's.
  const key = checkpoint.keyId === options.key.keyId ? options.key : await options.keyFor?.(checkpoint.keyId);
  if (!key) throw new BundleError('the latest checkpoint is signed by another audit key than the current one');
  const hasher = new StoreHasher(db);
  const events: BundledEvent[] = [];
  let unsealed = 0;
  let withheld = 0;
  for (let after: string | undefined, first = true; first || after; first = false) {
    const page = await queryEvents(db, options.query, { limit: maxPageSize, ...(after ? { after } : {}) });
    for (const { leafIndex, event } of page.events) {
      // Withheld before anything else: a counterparty learns how many, never whether sealed.
      if (options.counterparty && !options.counterparty.include(event)) {
        withheld++;
        continue;
      }
      if (leafIndex === null || leafIndex >= checkpoint.treeSize) {
        unsealed++;
        continue;
      }
      if (events.length >= maxBundleEvents) throw new BundleError(`more than ${maxBundleEvents} events match; narrow the query`);
      const proof = await inclusionProofFromStore(hasher, leafIndex, checkpoint.treeSize);
      events.push({ leafIndex, event, inclusionProof: proof.map((h) => h.toString('base64')) });
    }
    after = page.next;
  }
  const times = events.map((e) => e.event.time);
  const jwks = events.length ? await options.jwksInForce(Math.min(...times), Math.max(...times)) : { keys: [] };
  const holds = (await listHolds(db)).filter((hold) => events.some(({ event }) => holdCovers(hold, event))).map(holdDetails);
  const evidenceIds = events.filter(({ event }) => event.type === 'evidence.recorded').map(({ event }) => String((event.details as Record<string, unknown>).evidence_id));
  const evidenceRows = evidenceIds.length ? await db.selectFrom('signing_evidence').select(['id', 'record', 'timestamp_token']).where('id', 'in', evidenceIds).orderBy('created_at').execute() : [];
  const appendedEvidence = await appendedEvidenceOf(db, events);
  const signingEvidence = evidenceRows.map((row) => ({ id: row.id, record: row.record, ...(row.timestamp_token ? { timestamp: row.timestamp_token } : {}) }));
  // The address-book changes behind the transfers (issue 24: the change and both approvals).
  const destinations = await destinationEvidenceFor(db, events, hasher, checkpoint.treeSize);
  unsealed += destinations.unsealed;
  const personal = options.personal ? await options.personal(events.map(({ event }) => event)) : {};
  const auditKeyChain = await auditKeyChainTo(db, key.keyId);
  const unsigned: Omit<EvidenceBundle, 'signature'> = {
    format: bundleFormat,
    createdAt: options.now,
    query: options.query,
    auditKey: {
      keyId: key.keyId,
      origin: key.origin,
      publicKey: key.publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
    },
    ...(auditKeyChain.length ? { auditKeyChain } : {}),
    checkpoint,
    events,
    jwks,
    ...(options.counterparty ? { counterparty: options.counterparty.statement(events, withheld) } : { holds }),
    ...(signingEvidence.length ? { signingEvidence, tsaTrust: options.tsaTrust ?? [] } : {}),
    ...(destinations.changes.length ? { destinations: destinations.changes } : {}),
    ...(Object.keys(personal).length ? { personal } : {}),
    ...(appendedEvidence.length ? { appendedEvidence } : {}),
  };
  const signature = (await key.signer.sign(Buffer.from(bundleBody(unsigned), 'utf8'))).toString('base64');
  const bundle: EvidenceBundle = { ...unsigned, signature };
  return { bundle, text: canonicalize(bundle) + '\n', unsealed };
}

/** The signed text: a fixed line, then the canonical JSON of the bundle without its signature. */
export function bundleBody(unsigned: Omit<EvidenceBundle, 'signature'>): string {
  return `clearance audit bundle v1\n${canonicalize(unsigned)}`;
}

export interface BundleReport {
  ok: boolean;
  /** Every problem found; empty when ok. */
  problems: string[];
  events: number;
  /** `approval.given` events whose evidence was checked (./bundle-approvals.ts). */
  approvals?: number;
  /** Who approved what, and how it was proven, one per `approval.given`. */
  approvers?: BundledApproval[];
  checkpoint?: SignedCheckpoint;
  /** Fingerprint of the audit key the bundle is signed with: compare it with the published one. */
  keyId?: string;
  /** When the bundle carries handovers: `keyId`, then each older key that handed over to the one before it in this list. */
  keyChain?: string[];
  /** The legal holds the bundle states applied to its events. */
  holds?: Record<string, unknown>[];
  /** Signed requests whose evidence verified: signer, time, status, stamp (./bundle-evidence.ts). */
  signedRequests?: VerifiedSigningEvidence[];
  /** The address-book changes behind the bundle's transfers, with who asked and who approved (./bundle-destinations.ts). */
  destinations?: DestinationChangeSummary[];
  /** External producers' events (`evidence.appended`), checked (./bundle-appended.ts): what `--payload` files are matched to. */
  appended?: VerifiedAppendedEvidence[];
  /** A counterparty's bundle: for whom, its hops, how many events it leaves out, and the chain's mandate and consent references (./bundle-counterparty.ts). */
  counterparty?: CounterpartySummary;
}

/**
 * Verifies a bundle file offline: exact canonical bytes, the bundle signature, the checkpoint
 * signature, each event's canonical form and inclusion proof, each event matching the query, and
 * no private key material in the JWKS. With `pinnedKey`, only that audit key (or those keys) is accepted.
 */
export function verifyBundle(text: string, options: { pinnedKey?: KeyObject | KeyObject[] } = {}): BundleReport {
  const problems: string[] = [];
  const report = (extra: Partial<BundleReport> = {}): BundleReport => ({ ok: problems.length === 0, problems, events: 0, ...extra });
  let bundle: EvidenceBundle;
  try {
    bundle = JSON.parse(text) as EvidenceBundle;
    // One accepted spelling: any changed byte changes the content, which the signature covers.
    if (canonicalize(bundle) + '\n' !== text) problems.push('the file is not the canonical JSON the export wrote (it was altered)');
  } catch {
    problems.push('the file is not a JSON evidence bundle');
    return report();
  }
  if (typeof bundle !== 'object' || bundle === null || bundle.format !== bundleFormat) {
    problems.push(`the file is not a ${bundleFormat} bundle`);
    return report();
  }
  const { signature, ...unsigned } = bundle;
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(bundle.auditKey.publicKey, 'base64'), format: 'der', type: 'spki' });
    if (key.asymmetricKeyType !== 'ed25519') throw new Error('not Ed25519');
  } catch {
    problems.push('the audit public key in the bundle is not an Ed25519 key');
    return report();
  }
  const keyId = auditKeyFingerprint(key);
  if (keyId !== bundle.auditKey.keyId) problems.push('the audit key id is not the fingerprint of the audit key');
  // A pinned key, or one the pinned key handed over to, and so on (./bundle-keys.ts).
  const pinned = options.pinnedKey && new Set([options.pinnedKey].flat().map(auditKeyFingerprint));
  const chain = checkAuditKeyChain(bundle.auditKeyChain, keyId, String(bundle.auditKey.origin), pinned);
  problems.push(...chain.problems);
  if (!chain.pinnedReached) problems.push('the bundle is signed by another audit key than the pinned one, and no pinned key handed over to it');
  let signed = false;
  try {
    // One spelling of the signature: base64 decoding ignores what follows the padding, so a
    // changed character there would otherwise pass unnoticed.
    if (!isCanonicalBase64(String(signature), 64)) throw new Error('not canonical base64');
    signed = verify(null, Buffer.from(bundleBody(unsigned), 'utf8'), key, Buffer.from(String(signature), 'base64'));
  } catch {
    signed = false;
  }
  if (!signed) problems.push('the bundle signature is not valid');

  const cp = bundle.checkpoint;
  if (cp?.keyId !== keyId || cp.origin !== bundle.auditKey.origin || !verifyCheckpoint(cp, cp.signature, key)) {
    problems.push('the checkpoint is not validly signed by the audit key');
    return report({ keyId });
  }
  const root = Buffer.from(cp.rootHash, 'base64');
  let previous = -1;
  const readable: BundledEvent[] = [];
  const events = Array.isArray(bundle.events) ? bundle.events : [];
  for (const [i, item] of events.entries()) {
    const where = `event ${i} (leaf ${item?.leafIndex})`;
    if (!Number.isSafeInteger(item?.leafIndex) || item.leafIndex <= previous) {
      problems.push(`${where}: leaf indexes must increase`);
      continue;
    }
    previous = item.leafIndex;
    let bytes: string;
    try {
      bytes = canonicalize(item.event);
      parseStoredEvent(bytes);
    } catch (error) {
      problems.push(`${where}: ${(error as Error).message}`);
      continue;
    }
    const proof = Array.isArray(item.inclusionProof) ? item.inclusionProof.map((h) => Buffer.from(String(h), 'base64')) : [];
    // RFC 9162 §2.1.3.2: the leaf hash and the audit path must lead to the signed root.
    if (!verifyInclusion(item.leafIndex, cp.treeSize, leafHash(Buffer.from(bytes, 'utf8')), proof, root)) {
      problems.push(`${where}: the inclusion proof does not lead to the checkpoint's root`);
    }
    if (!matches(item.event, bundle.query ?? {})) problems.push(`${where}: the event does not match the bundle's query`);
    readable.push(item);
  }
  // Approvals are checked too: each person's evidence, and each token's list of approvals against them.
  const approvals = checkBundledApprovals(readable);
  problems.push(...approvals.problems);
  const holds = checkStatedHolds(bundle.holds, readable, problems);
  const evidence = checkBundledEvidence(readable, bundle.signingEvidence, bundle.tsaTrust);
  problems.push(...evidence.problems);
  const destinations = checkBundledDestinations(readable, bundle.destinations, cp.treeSize, root);
  problems.push(...destinations.problems);
  const appended = checkAppendedEvidence(readable, bundle.appendedEvidence);
  problems.push(...appended.problems);
  const counterparty = checkCounterpartyStatement(bundle.counterparty, readable, bundle.query);
  problems.push(...counterparty.problems);
  if (!Array.isArray(bundle.jwks?.keys) || bundle.jwks.keys.some((k) => typeof k !== 'object' || k === null || privateMemberOf(k) !== undefined)) {
    problems.push('the JWKS must hold public keys only');
  }
  return report({ events: events.length, approvals: approvals.approvals.length, approvers: approvals.approvals, checkpoint: cp, keyId, ...(chain.keyIds.length > 1 ? { keyChain: chain.keyIds } : {}), holds, signedRequests: evidence.verified, ...(destinations.changes.length ? { destinations: destinations.changes } : {}), appended: appended.verified, ...(counterparty.summary ? { counterparty: counterparty.summary } : {}) });
}

/**
 * The holds a bundle states (signed with the rest): each well formed, and each covering at least
 * one of the bundle's events, since the export states only those.
 */
function checkStatedHolds(stated: unknown, events: BundledEvent[], problems: string[]): Record<string, unknown>[] {
  if (stated === undefined) return [];
  if (!Array.isArray(stated)) {
    problems.push('holds must be a list');
    return [];
  }
  for (const [i, hold] of stated.entries()) {
    const h = (typeof hold === 'object' && hold !== null ? hold : {}) as Record<string, unknown>;
    const kind = h.kind;
    const shaped =
      typeof h.hold_id === 'string' &&
      typeof h.matter_ref === 'string' &&
      (kind === 'range' ? Number.isSafeInteger(h.from) && Number.isSafeInteger(h.to) : (kind === 'txn' || kind === 'subject' || kind === 'client') && typeof h.value === 'string');
    if (!shaped) {
      problems.push(`hold ${i}: not a legal hold statement`);
      continue;
    }
    const rule = { kind: kind as Hold['kind'], value: h.value as string | undefined, from: h.from as number | undefined, to: h.to as number | undefined };
    if (!events.some(({ event }) => holdCovers(rule, event))) problems.push(`hold ${String(h.hold_id)}: covers none of the bundle's events`);
  }
  return stated as Record<string, unknown>[];
}

function matches(event: StoredAuditEvent, query: AuditQuery): boolean {
  if (query.txn !== undefined && event.txn !== query.txn) return false;
  if (query.subject !== undefined && event.subject !== query.subject) return false;
  if (query.client !== undefined && event.client !== query.client) return false;
  if (query.type !== undefined && event.type !== query.type) return false;
  if (query.decision !== undefined && (event.decision ? (event.decision.allow ? 'allow' : 'deny') : undefined) !== query.decision) return false;
  if (query.since !== undefined && event.time < query.since) return false;
  if (query.until !== undefined && event.time >= query.until) return false;
  return true;
}
