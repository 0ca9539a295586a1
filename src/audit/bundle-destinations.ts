import type { Kysely } from 'kysely';
import { canonicalize } from '../jose/canonical-json.ts';
import type { Database } from '../storage/schema.ts';
import { changeTransactions } from '../transfers/address-book.ts';
import { checkBundledApprovals, type BundledApproval } from './bundle-approvals.ts';
import { parseStoredEvent } from './event-format.ts';
import type { StoredAuditEvent } from './events.ts';
import { leafHash, verifyInclusion } from './merkle.ts';
import { inclusionProofFromStore, type StoreHasher } from './proofs.ts';
import { maxPageSize, queryEvents } from './query.ts';

/**
 * The address-book evidence of a transfer in an evidence bundle (issue 24 item 2, done when "its
 * evidence bundle shows the address-book change, both approvals and the transfer"; docs/audit.md
 * "Evidence bundles", docs/transfers.md "Destination control"). A transfer's token event names the
 * destination it went to (`details.transfers[].destination_id` and `destination_version`, written
 * by src/transfers/enforce.ts); the change that put that version in the book is a transaction of
 * its own (txn = its approval request: `transfer_destination.requested`, `approval.requested`,
 * `approval.given`, `transfer_destination.approved`, …). The bundle carries those events in
 * `destinations`, one section per destination version, each event with its inclusion proof into
 * the bundle's checkpoint; verify-bundle checks them offline like the bundle's own events, and
 * that each section is named by a transfer in the bundle, holds the change's approval, and that
 * the approvals it lists are the `approval.given` events it carries (each checked as usual).
 */

export interface BundledDestinationChange {
  /** The destination's id in the address book. */
  id: string;
  version: number;
  /** The change's transaction: its approval request's id. */
  txn: string;
  events: { leafIndex: number; event: StoredAuditEvent; inclusionProof: string[] }[];
}

/** What verify-bundle reports of one destination change. */
export interface DestinationChangeSummary {
  id: string;
  version: number;
  txn: string;
  key?: string;
  lei?: string;
  account?: string;
  requestedBy?: string;
  /** When it was asked and approved, epoch ms; when it became usable (after the cool-down). */
  requestedAt?: number;
  approvedAt?: number;
  usableFrom?: number;
  /** Why it was held for review (asked from a new device), if it was. */
  reviewReason?: string;
  /** The approvals of the change (`approval.given`), each checked as every approval in a bundle. */
  approvals: BundledApproval[];
}

/** The destination versions an event names: a transfer's (`details.transfers[]`) or its own `destination_id`. */
export function destinationRefs(event: StoredAuditEvent): { id: string; version?: number }[] {
  const details = (event.details ?? {}) as Record<string, unknown>;
  const refs: { id: string; version?: number }[] = [];
  const add = (o: Record<string, unknown>) => {
    if (typeof o.destination_id !== 'string') return;
    refs.push({ id: o.destination_id, ...(Number.isSafeInteger(o.destination_version) ? { version: o.destination_version as number } : {}) });
  };
  if (Array.isArray(details.transfers)) for (const t of details.transfers) if (typeof t === 'object' && t !== null) add(t as Record<string, unknown>);
  add(details);
  return refs;
}

/**
 * For the export (src/audit/bundle.ts): the change events of every destination version the
 * bundle's events name — only token events (issued, exchanged), the transfers that happened —
 * each sealed event with its inclusion proof into the checkpoint of `treeSize`. `unsealed`: events
 * of those changes the sealer has not sealed yet (left out, as for the bundle's own events).
 */
export async function destinationEvidenceFor(
  db: Kysely<Database>,
  bundled: readonly { event: StoredAuditEvent }[],
  hasher: StoreHasher,
  treeSize: number,
): Promise<{ changes: BundledDestinationChange[]; unsealed: number }> {
  const refs = bundled.filter(({ event }) => transferEventTypes.includes(event.type)).flatMap(({ event }) => destinationRefs(event));
  const changes: BundledDestinationChange[] = [];
  let unsealed = 0;
  for (const change of await changeTransactions(db, refs)) {
    const events: BundledDestinationChange['events'] = [];
    for (let after: string | undefined, first = true; first || after; first = false) {
      const page = await queryEvents(db, { txn: change.txn }, { limit: maxPageSize, ...(after ? { after } : {}) });
      for (const { leafIndex, event } of page.events) {
        if (leafIndex === null || leafIndex >= treeSize) {
          unsealed++;
          continue;
        }
        const proof = await inclusionProofFromStore(hasher, leafIndex, treeSize);
        events.push({ leafIndex, event, inclusionProof: proof.map((h) => h.toString('base64')) });
      }
      after = page.next;
    }
    if (events.length > 0) changes.push({ ...change, events });
  }
  return { changes, unsealed };
}

/** The events of a transfer that took place: a token issued or exchanged for it. */
const transferEventTypes: readonly string[] = ['token.issued', 'token.exchanged'];

/**
 * For verify-bundle: each stated change's events are canonical, in order, proven into the
 * checkpoint's `root` of `treeSize`, and of the change's txn; the change is named by a transfer of
 * the bundle; it holds its `transfer_destination.approved` for that destination and version, whose
 * approvers are the people of its `approval.given` events (each checked by checkBundledApprovals).
 */
export function checkBundledDestinations(
  main: readonly { event: StoredAuditEvent }[],
  stated: unknown,
  treeSize: number,
  root: Buffer,
): { problems: string[]; changes: DestinationChangeSummary[] } {
  const problems: string[] = [];
  const changes: DestinationChangeSummary[] = [];
  if (stated === undefined) return { problems, changes };
  if (!Array.isArray(stated)) return { problems: ['destinations must be a list'], changes };
  const named = main.filter(({ event }) => transferEventTypes.includes(event.type)).flatMap(({ event }) => destinationRefs(event));
  for (const [i, item] of stated.entries()) {
    const s = (typeof item === 'object' && item !== null ? item : {}) as Partial<BundledDestinationChange>;
    const where = `destination change ${i}`;
    if (typeof s.id !== 'string' || !Number.isSafeInteger(s.version) || typeof s.txn !== 'string' || !Array.isArray(s.events)) {
      problems.push(`${where}: not a destination change (id, version, txn, events)`);
      continue;
    }
    const label = `${where} (${s.id} v${s.version})`;
    if (!named.some((r) => r.id === s.id && (r.version === undefined || r.version === s.version))) problems.push(`${label}: no transfer in the bundle names this destination version`);
    const readable: { leafIndex: number; event: StoredAuditEvent }[] = [];
    let previous = -1;
    for (const [j, e] of s.events.entries()) {
      const at = `${label} event ${j} (leaf ${e?.leafIndex})`;
      if (!Number.isSafeInteger(e?.leafIndex) || e.leafIndex <= previous) {
        problems.push(`${at}: leaf indexes must increase`);
        continue;
      }
      previous = e.leafIndex;
      let bytes: string;
      try {
        bytes = canonicalize(e.event);
        parseStoredEvent(bytes);
      } catch (error) {
        problems.push(`${at}: ${(error as Error).message}`);
        continue;
      }
      const proof = Array.isArray(e.inclusionProof) ? e.inclusionProof.map((h) => Buffer.from(String(h), 'base64')) : [];
      // RFC 9162 §2.1.3.2: the leaf hash and the audit path must lead to the signed root.
      if (!verifyInclusion(e.leafIndex, treeSize, leafHash(Buffer.from(bytes, 'utf8')), proof, root)) problems.push(`${at}: the inclusion proof does not lead to the checkpoint's root`);
      if (e.event.txn !== s.txn) problems.push(`${at}: the event is not of the change's transaction ${s.txn}`);
      readable.push({ leafIndex: e.leafIndex, event: e.event });
    }
    const ofThis = (type: string) =>
      readable.find(({ event }) => event.type === type && event.details?.destination_id === s.id && event.details?.version === s.version)?.event;
    const requested = ofThis('transfer_destination.requested');
    const approved = ofThis('transfer_destination.approved');
    const checked = checkBundledApprovals(readable);
    problems.push(...checked.problems.map((p) => `${label}: ${p}`));
    const approvals = checked.approvals.filter((a) => a.kind === 'transfer_destination' && a.requestId === s.txn);
    if (!approved) {
      problems.push(`${label}: the bundle holds no approval of this destination version (transfer_destination.approved)`);
    } else {
      const listed = Array.isArray(approved.details?.approved_by) ? (approved.details.approved_by as unknown[]).map(String) : [];
      const given = approvals.map((a) => a.approver ?? '');
      if (listed.length === 0 || listed.length !== given.length || listed.some((p) => !given.includes(p))) {
        problems.push(`${label}: the approvers it names (${listed.join(', ')}) are not those of its approval.given events (${given.join(', ')})`);
      }
    }
    const d = (approved?.details ?? requested?.details ?? {}) as Record<string, unknown>;
    changes.push({
      id: s.id,
      version: s.version!,
      txn: s.txn,
      ...(typeof d.destination_key === 'string' ? { key: d.destination_key } : {}),
      ...(typeof d.lei === 'string' ? { lei: d.lei } : {}),
      ...(typeof d.account === 'string' ? { account: d.account } : {}),
      ...(typeof d.requested_by === 'string' ? { requestedBy: d.requested_by } : {}),
      ...(requested ? { requestedAt: requested.time } : {}),
      ...(approved ? { approvedAt: approved.time } : {}),
      ...(Number.isSafeInteger(approved?.details?.usable_from) ? { usableFrom: approved!.details!.usable_from as number } : {}),
      ...(typeof approved?.details?.review_reason === 'string' ? { reviewReason: approved.details.review_reason } : {}),
      approvals,
    });
  }
  return { problems, changes };
}
