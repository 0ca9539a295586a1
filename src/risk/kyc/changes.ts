import { sql, type Transaction } from 'kysely';
import { isPostgres } from '../../audit/dialect.ts';
import type { AuditEvent } from '../../audit/events.ts';
import { clientsOwnedBy, endClientTokens } from '../../clients/store.ts';
import type { Clock } from '../../clock.ts';
import { cutOffPersonTokens } from '../../identity/lifecycle.ts';
import { alertInsert } from '../../signals/alerts.ts';
import { bumpGeneration } from '../../storage/generations.ts';
import type { Database } from '../../storage/schema.ts';
import { fieldsJson, type KycFields, type KycPrincipal, type KycRecord, type KycStatus } from './record.ts';
import { kycGeneration, readKycRecord } from './store.ts';

/** Where a change comes from (`kyc.updated` details.via). */
export type KycSource = 'apply' | 'admin' | 'provider' | 'screening' | 'compliance';

/** One change to a principal's record. */
export interface KycChange {
  principal: KycPrincipal;
  fields: KycFields;
  source: KycSource;
  /** Who: the administrator or apply's actor, the provider's id, `screening`, the compliance decider. */
  actor: string;
  /**
   * May this change take the record out of `frozen`? Only an administrator's (when no screening
   * match of the principal is open: ./../screening/decisions.ts decides those) and compliance's
   * clearing of a match (only when no one else froze it too: `frozenBy`, nextState). Anyone
   * else's change of a frozen record changes what it returns to (`previous_status`) and leaves it
   * frozen.
   */
  liftsFreeze?: boolean;
  /**
   * False: the change keeps `frozen` on a record frozen already only because it rewrites what it
   * read (an administrator's merge patch that names no status), so it does not become a holder of
   * the freeze (`frozenBy`, nextState). Default: a change that writes `frozen` holds it.
   */
  claimsFreeze?: boolean;
  /** apply: the declaration's canonical JSON, kept to recognise the same document next time. */
  declared?: string;
  /** Why (an administrator's or compliance's reason), for the audit event. */
  reason?: string;
  /** The version the writer read; a record changed meanwhile is a conflict (KycConflict). */
  expectedVersion?: number;
  requestId?: string;
}

/** The record changed meanwhile (another node, another request): read it again and retry. */
export class KycConflict extends Error {
  override name = 'KycConflict';
}

/** What a change did: the record before and after (undefined before: none), and its audit events. */
export interface KycChanged {
  before?: KycRecord;
  after: KycRecord;
  changed: boolean;
  events: AuditEvent[];
  /**
   * The clients whose tokens a legal entity's freeze ended (`endFrozenTokens`): once the change
   * has committed, a writer that holds the client registry invalidates it (./admin.ts,
   * ./webhook.ts; apply invalidates it anyway), so they are dead on this node at once; elsewhere,
   * and after a screening hit, the registry reloads on its generation, within a second.
   */
  clientsEnded: string[];
}

/**
 * Serialises every change of one principal's KYC facts — its record and its screening matches —
 * across nodes; each writer takes it first in its transaction, before it reads either (on
 * PostgreSQL a transaction-scoped advisory lock, re-entrant; SQLite has one writer at a time).
 * Without it, a freeze being lifted (which reads the open matches first) and a new match being
 * recorded (which finds the record frozen and so writes nothing to it) could both commit under
 * READ COMMITTED, leaving an open sanctions match on an unfrozen principal; and two first writes
 * of one record would race into a duplicate key.
 */
export async function lockKycPrincipal(trx: Transaction<Database>, principal: KycPrincipal): Promise<void> {
  if (!isPostgres(trx)) return;
  await sql`select pg_advisory_xact_lock(hashtextextended('clearance.kyc:' || current_schema() || ':' || ${kycLockName(principal)}, 0))`.execute(trx);
}

/**
 * Takes the KYC locks (lockKycPrincipal) of several principals at once, in one order whoever asks
 * (sorted by name), so two writers that each take several never wait on each other in a cycle.
 * A writer that may change several principals' records (apply) takes them all with this before it
 * writes anything: a freeze, holding its principal's lock, writes what the principal owns (a
 * person's row; a legal entity's clients and the `clients` generation: `endFrozenTokens`), so a
 * writer that held one of those while it waited for the lock would deadlock with it (40P01).
 */
export async function lockKycPrincipals(trx: Transaction<Database>, principals: readonly KycPrincipal[]): Promise<void> {
  if (!isPostgres(trx) || principals.length === 0) return;
  const names = [...new Set(principals.map(kycLockName))].sort();
  // One statement; ORDER BY: the locks are taken in the array's (sorted) order.
  await sql`select pg_advisory_xact_lock(hashtextextended('clearance.kyc:' || current_schema() || ':' || name, 0)) from unnest(${names}::text[]) with ordinality as locks(name, at) order by at`.execute(trx);
}

function kycLockName(principal: KycPrincipal): string {
  return `${principal.type}:${principal.id}`;
}

/**
 * Writes a change inside the caller's transaction (the principal locked first: lockKycPrincipal): the record inserted, or updated conditionally
 * on the version read (a concurrent writer makes this one a KycConflict); the `kyc` generation
 * bumped, so every node's cache reloads (./store.ts); a `kyc.updated` event with the before and
 * after and who changed it, for the caller to record in the same transaction. A record that
 * becomes `frozen` keeps its status in `previous_status`, raises a `kyc.frozen` alert, and ends
 * the principal's live tokens (`endFrozenTokens`; nothing new is issued while the freeze lasts,
 * src/risk/kyc/enforce.ts). A change that changes nothing writes nothing.
 */
export async function changeKycRecord(trx: Transaction<Database>, clock: Clock, change: KycChange): Promise<KycChanged> {
  const now = clock.now();
  await lockKycPrincipal(trx, change.principal);
  const before = await readKycRecord(trx, change.principal);
  if (change.expectedVersion !== undefined && (before?.version ?? 0) !== change.expectedVersion) throw new KycConflict('the KYC record changed meanwhile');
  const updatedBy = change.source === 'screening' ? 'screening' : `${change.source}:${change.actor}`;
  const next = nextState(before, change, updatedBy);
  const declared = change.declared ?? before?.declared;
  const same =
    before !== undefined &&
    before.status === next.status &&
    before.previousStatus === next.previousStatus &&
    before.frozenBy === next.frozenBy &&
    before.level === next.level &&
    before.provider === next.provider &&
    before.reviewDue === next.reviewDue &&
    before.evidenceRef === next.evidenceRef &&
    before.declared === declared;
  if (same) return { before, after: before, changed: false, events: [], clientsEnded: [] };

  const after: KycRecord = { ...next, principal: change.principal, version: (before?.version ?? 0) + 1, updatedAt: now, updatedBy, ...(declared !== undefined ? { declared } : {}) };
  const values = {
    status: after.status,
    previous_status: after.previousStatus ?? null,
    level: after.level ?? null,
    provider: after.provider ?? null,
    review_due: after.reviewDue ?? null,
    evidence_ref: after.evidenceRef ?? null,
    declared: after.declared ?? null,
    version: after.version,
    updated_at: now,
    updated_by: updatedBy,
    frozen_by: after.frozenBy ?? null,
  };
  if (!before) {
    const inserted = await trx
      .insertInto('kyc_records')
      .values({ principal_type: change.principal.type, principal_id: change.principal.id, ...values })
      .onConflict((oc) => oc.columns(['principal_type', 'principal_id']).doNothing())
      .returning('version')
      .execute();
    // Only a writer that skipped the lock could have inserted it meanwhile; never a duplicate key (a 5xx).
    if (inserted.length !== 1) throw new KycConflict('the KYC record changed meanwhile');
  } else {
    const result = await trx
      .updateTable('kyc_records')
      .set(values)
      .where('principal_type', '=', change.principal.type)
      .where('principal_id', '=', change.principal.id)
      .where('version', '=', before.version)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) throw new KycConflict('the KYC record changed meanwhile');
  }
  await bumpGeneration(trx, kycGeneration);

  const froze = after.status === 'frozen' && before?.status !== 'frozen';
  const ended = froze ? await endFrozenTokens(trx, change.principal, now) : undefined;
  if (froze) {
    await alertInsert(trx, clock, {
      type: 'kyc.frozen',
      subject: change.principal.id,
      data: { principal_type: change.principal.type, principal_id: change.principal.id, previous_status: after.previousStatus ?? null, by: change.source, ...(change.source === 'provider' ? { provider: change.actor } : {}) },
    }).execute();
  }
  const event: AuditEvent = {
    type: 'kyc.updated',
    ...(change.requestId ? { requestId: change.requestId } : {}),
    actor: change.actor,
    subject: change.principal.id,
    details: {
      principal_type: change.principal.type,
      via: change.source,
      ...(change.source === 'provider' ? { provider: change.actor } : {}),
      before: before ? recordJson(before) : null,
      after: recordJson(after),
      ...(change.reason !== undefined ? { reason: change.reason } : {}),
      ...(ended?.details ?? {}),
    },
  };
  return { before, after, changed: true, events: [event], clientsEnded: ended?.clients ?? [] };
}

/**
 * Ends the live tokens of a principal frozen at `now`, in the freeze's transaction.
 * - A person: their access tokens issued until now (their cut-off, src/identity/lifecycle.ts, as
 *   "sign out everywhere" does for tokens; their sessions stay).
 * - A legal entity: the tokens of every client in service it owns (`owner_lei`), each as a risk
 *   suspension ends a client's (src/clients/store.ts `endClientTokens`, `ClientStore.endTokens`):
 *   its cut-off (every access token issued to it, its own and those it holds for people, dead)
 *   and its refresh tokens revoked — named on `kyc.updated` (`tokens_ended`). A firm frozen on a
 *   sanctions hit must have its services stop at once, not when their tokens expire; lifting the
 *   freeze brings none back (a cut-off never moves back).
 *   Tokens that people of the firm hold through another firm's clients are not the firm's to
 *   end: they run to their expiry, as before (a person's own freeze ends theirs).
 * Nothing here is read on the token path: a client's cut-off is in the registry every node holds.
 */
async function endFrozenTokens(trx: Transaction<Database>, principal: KycPrincipal, now: number): Promise<{ details: Record<string, unknown>; clients: string[] }> {
  if (principal.type === 'User') {
    await cutOffPersonTokens(trx, principal.id, now);
    return { details: {}, clients: [] };
  }
  const ended: { client_id: string; refresh_tokens_revoked: number }[] = [];
  for (const clientId of await clientsOwnedBy(trx, principal.id)) {
    const result = await endClientTokens(trx, clientId, now);
    if (result) ended.push({ client_id: clientId, refresh_tokens_revoked: result.refreshTokensRevoked });
  }
  return { details: { tokens_ended: { clients: ended, access_tokens: 'dead (cut-off)' } }, clients: ended.map((c) => c.client_id) };
}

/**
 * What the record becomes: the fields written, the freeze kept or taken as the change may. A
 * record has one `frozen` status but two kinds of hold on it: screening's (an open or confirmed
 * match; a compliance confirmation re-freezing is screening's too), which compliance's clearing
 * of the last match lifts, and anyone else's (an administrator, a provider, apply), named in
 * `frozenBy` whenever such a change writes `frozen` — before a hit or after it — and lifted only
 * with the freeze itself (an administrator's change: `liftsFreeze`). Clearing the matches leaves a
 * record with a `frozenBy` frozen (src/risk/screening/decisions.ts).
 */
function nextState(before: KycRecord | undefined, change: KycChange, updatedBy: string): KycFields & { previousStatus?: KycStatus; frozenBy?: string } {
  const fields: KycFields = { ...change.fields };
  const wasFrozen = before?.status === 'frozen';
  const heldBefore = wasFrozen && before.frozenBy !== undefined ? { frozenBy: before.frozenBy } : {};
  if (fields.status === 'frozen') {
    // Frozen again: what it returns to stays; newly frozen: it returns to what it was.
    const previous = wasFrozen ? before.previousStatus : before?.status;
    const screenings = change.source === 'screening' || change.source === 'compliance';
    // An edit that only carries the freeze it read (claimsFreeze false) leaves its holders as they were.
    const keeps = screenings || (wasFrozen && change.claimsFreeze === false);
    return { ...fields, ...(previous !== undefined ? { previousStatus: previous } : {}), ...(keeps ? heldBefore : { frozenBy: updatedBy }) };
  }
  if (wasFrozen && !change.liftsFreeze) return { ...fields, status: 'frozen', previousStatus: fields.status, ...heldBefore };
  return fields;
}

/** The record as audit events and the admin API show its facts. */
export function recordJson(record: KycRecord): Record<string, unknown> {
  return {
    ...fieldsJson(record),
    ...(record.previousStatus !== undefined ? { previous_status: record.previousStatus } : {}),
    ...(record.frozenBy !== undefined ? { frozen_by: record.frozenBy } : {}),
    version: record.version,
  };
}
