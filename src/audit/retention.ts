/**
 * Retention (issue 3 §8): each event type is kept for its own period, but the log only ever loses
 * a whole sealed prefix: leaves [0, P) go once every event in them is past its type's retention.
 * Before deleting, a signed pruning record commits to the tree those leaves formed (pruning.ts),
 * checked consistent with the latest signed checkpoint (RFC 9162 §2.1.4.2), so the rest of the
 * log still verifies. P is a multiple of 256, so proofs for the remaining leaves are served
 * from the cached tiles that cover the removed ones. P never reaches an event a legal hold covers
 * (holds.ts).
 */
import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { Database } from '../storage/schema.ts';
import type { AuditSigningKey } from './audit-key.ts';
import { auditEventTypes } from './events.ts';
import { CompactMerkleTree, verifyConsistency } from './merkle.ts';
import { heldFrom, type Hold } from './holds.ts';
import { consistencyProofFromStore, storedCheckpoint, StoreHasher } from './proofs.ts';
import { signPruning, type PruningRecord } from './pruning.ts';
import { encodeFrontier, tileWidth } from './tiles.ts';
import type { Context } from '../context.ts';
import { isValidLei } from '../entities/lei.ts';
import { listUsers } from '../identity/users.ts';
import { isPostgres } from './dialect.ts';

/** Retention periods in ms by event type; `default` for the others (absent: kept forever). */
export interface RetentionPolicy {
  default?: number;
  types: Record<string, number>;
  /**
   * Per legal entity (`lei:<LEI>=PERIOD`, docs/privacy.md "Retention per jurisdiction"): a firm's
   * events are kept at least this long — those whose client, subject or actor is one of its
   * current clients (`owner_lei`) or people (its desks) when the prune runs, and those whose details
   * name its LEI (`lei`, `owner_lei`, `producer_lei`). A person who moved to another firm, or a
   * client since removed, is no longer its party: their older events fall back to the other
   * periods unless their details name the LEI. It only ever keeps more: the cut stays a whole
   * prefix, so a period shorter than an event's type's removes nothing earlier.
   */
  entities?: Record<string, number>;
  /** The parties of each entity in `entities`, resolved when the prune runs (withEntityParties); not part of the signed policy. */
  parties?: Record<string, string[]>;
}

export class RetentionError extends Error {
  override name = 'RetentionError';
}

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, y: 365 * 86_400_000 };

/** Parses `type=PERIOD,...` with `*` for every other type; periods like 90d, 7y, 12h. */
export function parseRetention(spec: string): RetentionPolicy {
  const policy: RetentionPolicy = { types: {} };
  for (const part of spec.split(',').map((p) => p.trim()).filter(Boolean)) {
    const match = /^([a-z_.*]+|lei:[A-Z0-9]{20})=(\d+)(ms|s|m|h|d|y)$/.exec(part);
    if (!match) throw new RetentionError(`"${part}" is not TYPE=PERIOD or lei:LEI=PERIOD (PERIOD like 30d, 7y)`);
    const [, type, amount, unit] = match;
    const ms = Number(amount) * units[unit!]!;
    if (type!.startsWith('lei:')) {
      const lei = type!.slice(4);
      if (!isValidLei(lei)) throw new RetentionError(`"${lei}" is not a valid LEI (ISO 17442)`);
      (policy.entities ??= {})[lei] = ms;
    } else if (type === '*') policy.default = ms;
    else if ((auditEventTypes as readonly string[]).includes(type!)) policy.types[type!] = ms;
    else throw new RetentionError(`"${type}" is not an audit event type`);
  }
  if (policy.default === undefined && Object.keys(policy.types).length === 0 && policy.entities === undefined) throw new RetentionError('the retention policy is empty');
  return policy;
}

/**
 * The policy with the parties of each legal entity it names (its clients by `owner_lei`, its people
 * by their desks' firm), as the audit scope reads a firm's events (scope.ts). Resolved at prune time
 * from today's directory: a firm's client or person added since is counted, one moved away or
 * removed is not. A LEI that is no legal entity of this instance is refused (RetentionError): a
 * valid checksum alone would keep nothing and say nothing.
 */
export async function withEntityParties(ctx: Pick<Context, 'storage' | 'entities' | 'clients'>, policy: RetentionPolicy): Promise<RetentionPolicy> {
  if (!policy.entities) return policy;
  const snapshot = await ctx.entities.snapshot();
  const unknown = Object.keys(policy.entities).filter((lei) => !snapshot.legalEntities.has(lei));
  if (unknown.length > 0) throw new RetentionError(`${unknown.map((lei) => `lei:${lei}`).join(', ')}: not a legal entity of this instance (declare it under legal_entities, or correct the LEI)`);
  const clients = await ctx.clients.list();
  const users = await listUsers(ctx);
  const parties: Record<string, string[]> = {};
  for (const lei of Object.keys(policy.entities)) {
    parties[lei] = [
      ...clients.filter((c) => c.metadata.owner_lei === lei).map((c) => c.metadata.client_id),
      ...users.filter((u) => u.desks.some((desk) => snapshot.desks.get(desk)?.lei === lei)).map((u) => u.id),
    ];
  }
  return { ...policy, parties };
}

/** What the pruning record signs of a policy: its periods, never the resolved parties. */
function signedPolicy(policy: RetentionPolicy): string {
  const { parties: _parties, ...periods } = policy;
  return JSON.stringify(periods);
}

/** The details members whose LEI makes an event a firm's for `lei:LEI=PERIOD`. */
const leiDetails = ['lei', 'owner_lei', 'producer_lei'] as const;

/** A text member of the stored event's JSON (`$.actor`, `$.details.lei`), in the database's own JSON functions. */
function eventMember(db: Kysely<Database>, path: `$.${string}`): RawBuilder<string | null> {
  if (!isPostgres(db)) return sql<string | null>`json_extract(event, ${path})`;
  const keys = path.slice(2).split('.');
  return sql<string | null>`(event::jsonb #>> ${`{${keys.join(',')}}`})`;
}

export interface PrunePlan {
  /** Leaves below this index can go (a multiple of 256, at most the latest checkpoint's size). */
  pruneBefore: number;
  /** Leaves already pruned before this run. */
  prunedBefore: number;
  /** Events that would be removed now. */
  events: number;
  /**
   * The legal holds that stop the cut (holds.ts): each active hold whose first covered event lies
   * below where retention alone would cut, with that event's leaf. The cut stops before the lowest.
   */
  held: { hold: Hold; leaf: number }[];
}

/** How far the log can be pruned under `policy` at `now`, without changing anything. */
export async function planPrune(db: Kysely<Database>, policy: RetentionPolicy, now: number): Promise<PrunePlan> {
  const prunedBefore = Number((await db.selectFrom('audit_prunings').select(({ fn }) => fn.max('tree_size').as('n')).executeTakeFirst())?.n ?? 0);
  const latest = await storedCheckpoint(db);
  if (!latest) return { pruneBefore: prunedBefore, prunedBefore, events: 0, held: [] };
  // The oldest event that must stay, over every type's own horizon.
  const listed = Object.keys(policy.types);
  const candidates: (number | null)[] = [];
  for (const [type, ms] of Object.entries(policy.types)) {
    const row = await db.selectFrom('audit_events').select(({ fn }) => fn.min('seq').as('seq')).where('type', '=', type).where('time', '>=', now - ms).executeTakeFirst();
    candidates.push(row?.seq ?? null);
  }
  let others = db.selectFrom('audit_events').select(({ fn }) => fn.min('seq').as('seq'));
  if (listed.length) others = others.where('type', 'not in', listed);
  if (policy.default !== undefined) others = others.where('time', '>=', now - policy.default);
  candidates.push((await others.executeTakeFirst())?.seq ?? null);
  // A firm's events kept longer (lei:LEI=PERIOD): one more horizon of the same prefix rule.
  const actor = eventMember(db, '$.actor');
  for (const [lei, ms] of Object.entries(policy.entities ?? {})) {
    const parties = policy.parties?.[lei] ?? [];
    for (let i = 0; i < parties.length; i += 500) {
      const chunk = parties.slice(i, i + 500);
      const row = await db
        .selectFrom('audit_events')
        .select(({ fn }) => fn.min('seq').as('seq'))
        .where('time', '>=', now - ms)
        .where((eb) => eb.or([eb('client', 'in', chunk), eb('subject', 'in', chunk), eb(actor, 'in', chunk)]))
        .executeTakeFirst();
      candidates.push(row?.seq ?? null);
    }
    // Events whose details name the firm (an address-book destination's, a client's owner, an external producer).
    const named = await db
      .selectFrom('audit_events')
      .select(({ fn }) => fn.min('seq').as('seq'))
      .where('time', '>=', now - ms)
      .where((eb) => eb.or(leiDetails.map((member) => eb(eventMember(db, `$.details.${member}`), '=', lei))))
      .executeTakeFirst();
    candidates.push(named?.seq ?? null);
  }
  const keep = candidates.filter((s): s is number => s !== null);
  let limit = latest.treeSize;
  if (keep.length) {
    const leaf = await db.selectFrom('audit_leaves').select('leaf_index').where('event_seq', '=', Math.min(...keep)).executeTakeFirst();
    if (leaf) limit = Math.min(limit, leaf.leaf_index);
  }
  // A legal hold keeps every event it covers: the prefix stops before the first of them.
  const held: { hold: Hold; leaf: number }[] = [];
  for (const { hold, seq } of await heldFrom(db)) {
    const leaf = await db.selectFrom('audit_leaves').select('leaf_index').where('event_seq', '=', seq).executeTakeFirst();
    if (leaf && Number(leaf.leaf_index) < limit) held.push({ hold, leaf: Number(leaf.leaf_index) });
  }
  if (held.length) limit = Math.min(...held.map((h) => h.leaf));
  const pruneBefore = Math.max(prunedBefore, Math.floor(limit / tileWidth) * tileWidth);
  return { pruneBefore, prunedBefore, events: pruneBefore - prunedBefore, held };
}

export interface PruneResult extends PrunePlan {
  /** The tree root of the removed prefix, as signed in the pruning record. */
  rootHash?: string;
}

/**
 * Prunes what `policy` allows: writes the signed pruning record and deletes the prefix's events,
 * leaves and checkpoints in one transaction. Refuses when the stored hashes are not consistent
 * with the latest signed checkpoint (run `clearance audit verify`).
 */
export async function prune(db: Kysely<Database>, policy: RetentionPolicy, key: AuditSigningKey, now: number): Promise<PruneResult> {
  return db.transaction().execute(async (trx) => {
    const plan = await planPrune(trx, policy, now);
    if (plan.pruneBefore <= plan.prunedBefore) return plan;
    const P = plan.pruneBefore;
    const latest = (await storedCheckpoint(trx))!;
    const hasher = new StoreHasher(trx);
    // The frontier at P: one perfect subtree per set bit of P, largest first (RFC 9162 §2.1.1).
    const frontier: Buffer[] = [];
    for (let start = 0, bit = 2 ** Math.floor(Math.log2(P)); bit >= 1; bit /= 2) {
      if (Math.floor(P / bit) % 2 === 1) {
        frontier.push(await hasher.subtreeRoot(start, start + bit));
        start += bit;
      }
    }
    const root = CompactMerkleTree.restore(P, frontier).root();
    const proof = await consistencyProofFromStore(hasher, P, latest.treeSize);
    // RFC 9162 §2.1.4.2: what we are about to sign must be a prefix of the signed log.
    if (!verifyConsistency(P, latest.treeSize, root, Buffer.from(latest.rootHash, 'base64'), proof)) {
      throw new RetentionError('the stored tree is not consistent with the latest checkpoint; run `clearance audit verify`');
    }
    const record: PruningRecord = {
      origin: key.origin,
      treeSize: P,
      rootHash: root.toString('base64'),
      frontier: encodeFrontier(frontier),
      time: now,
      policy: signedPolicy(policy),
    };
    await trx.insertInto('audit_prunings').values({ tree_size: P, origin: record.origin, root_hash: record.rootHash, frontier: record.frontier, time: now, policy: record.policy, key_id: key.keyId, signature: await signPruning(record, key.signer) }).execute();
    // Leaves follow seq, so the prefix's events are exactly those up to the last pruned leaf's.
    const last = await trx.selectFrom('audit_leaves').select('event_seq').where('leaf_index', '=', P - 1).executeTakeFirstOrThrow();
    await trx.deleteFrom('audit_events').where('seq', '<=', last.event_seq).execute();
    await trx.deleteFrom('audit_index').where('seq', '<=', last.event_seq).execute();
    await trx.deleteFrom('audit_leaves').where('leaf_index', '<', P).execute();
    await trx.deleteFrom('audit_checkpoints').where('tree_size', '<', P).execute();
    return { ...plan, rootHash: record.rootHash };
  });
}
