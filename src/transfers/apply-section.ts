import type { Transaction } from 'kysely';
import type { Context } from '../context.ts';
import type { LegalEntity } from '../entities/definition.ts';
import { isValidLei } from '../entities/lei.ts';
import type { Database } from '../storage/schema.ts';
import { isUniqueViolation } from '../storage/faults.ts';
import { ApplyRefusedError, DestinationChangeByPerson, type ApplySource } from '../apply/index.ts';
import { join, type Validator } from '../validation.ts';
import { expired, findDestinationByKey, minCooldownHours, versionsOf, type DestinationEntry, type DestinationVersion } from './address-book.ts';
import { insertDestinationEntry, newDestinationId, openRequestFor, sameVersion, versionRow } from './change-control.ts';
import { readDestination, type Destination } from './destination-input.ts';
import { destinationKey } from './detail.ts';

/**
 * Apply's `transfer_destinations` section (docs/transfers.md "Destination control", docs/apply.md):
 *
 * ```yaml
 * transfer_destinations:
 *   cooldowns:                 # per legal entity: hours (1 to 720) an approved change waits before first use
 *     - lei: 5493001KJTIIGC8Y1R12
 *       hours: 48
 *   destinations:              # each enters change control: pending, awaiting approval
 *     - lei: 5493001KJTIIGC8Y1R12
 *       account: ACC-1
 *       label: Cold wallet
 *       destination: { kind: blockchain, account: "eip155:1:0xab16a96d359ec26a11e2c2b3d8f8b8942d5bfcdb" }
 * ```
 *
 * Apply never bypasses four-eyes: a declared destination that is not in the book as declared
 * becomes a new `pending` version whose approval request (kind `transfer_destination`) is opened
 * once the apply has committed, and needs two holders of `approver` of the entity (nobody stepped
 * up behind a document), then cools down. A destination already in the book as declared (approved,
 * or waiting) is unchanged; apply never removes one (the admin API's DELETE does, at once).
 */
export interface TransferDestinationsSection {
  cooldowns: { lei: string; hours: number }[];
  destinations: { lei: string; account: string; destination: Destination; label?: string }[];
}

const sectionFields = ['cooldowns', 'destinations'] as const;

/** Reads the section and checks each destination's legal entity and account (in the document or stored) and the waiting changes. */
export async function planTransferDestinations(ctx: Context, v: Validator, path: string, input: unknown, documentEntities: readonly LegalEntity[]): Promise<TransferDestinationsSection | undefined> {
  const o = v.object(path, input);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, sectionFields);
  const snapshot = await ctx.entities.snapshot();
  const accountLei = (account: string) => documentEntities.find((e) => e.accounts.some((a) => a.id === account))?.lei ?? snapshot.accounts.get(account)?.lei;
  const knownLei = (lei: string) => documentEntities.some((e) => e.lei === lei) || snapshot.legalEntities.has(lei);
  const readLei = (p: string, value: unknown) => {
    const lei = v.string(p, value, { pattern: /^[0-9A-Z]{20}$/, patternMessage: 'must be a 20-character LEI (ISO 17442)' });
    if (lei === undefined) return undefined;
    if (!isValidLei(lei)) return v.fail(p, 'must be a valid LEI (ISO 17442: check digits)');
    if (!knownLei(lei)) return v.fail(p, `"${lei}" is not a legal entity (declare it under legal_entities)`);
    return lei;
  };
  const cooldowns = o.cooldowns === undefined ? [] : (v.array(join(path, 'cooldowns'), o.cooldowns, (p, item) => {
    const c = v.object(p, item);
    if (!c) return undefined;
    v.knownKeys(p, c, ['lei', 'hours']);
    const lei = readLei(join(p, 'lei'), c.lei);
    // Never 0 (address-book.ts minCooldownHours): a new destination always cools down before its first use.
    const hours =
      typeof c.hours === 'number' && Number.isInteger(c.hours) && c.hours < minCooldownHours
        ? v.fail(join(p, 'hours'), `must be at least ${minCooldownHours}: a new transfer destination always cools down before its first use (1 to 720 hours)`)
        : v.integer(join(p, 'hours'), c.hours, { min: minCooldownHours, max: 720 });
    return lei !== undefined && hours !== undefined ? { lei, hours } : undefined;
  }) ?? []);
  const seenLei = new Map<string, number>();
  cooldowns.forEach((c, i) => {
    if (seenLei.has(c.lei)) v.fail(`${path}.cooldowns[${i}].lei`, `is also set at ${path}.cooldowns[${seenLei.get(c.lei)}]`);
    seenLei.set(c.lei, i);
  });
  const destinations =
    o.destinations === undefined
      ? []
      : (v.array(join(path, 'destinations'), o.destinations, (p, item) => {
          const d = v.object(p, item);
          if (!d) return undefined;
          const start = v.problems.length;
          v.knownKeys(p, d, ['lei', 'account', 'destination', 'label']);
          const lei = readLei(join(p, 'lei'), d.lei);
          const account = v.string(join(p, 'account'), d.account, { maxLength: 64 });
          if (lei !== undefined && account !== undefined && accountLei(account) !== lei) v.fail(join(p, 'account'), `"${account}" is not an account of legal entity ${lei}`);
          const destination = readDestination(v, join(p, 'destination'), d.destination);
          const label = d.label === undefined ? undefined : v.string(join(p, 'label'), d.label, { maxLength: 140 });
          if (v.problems.length !== start) return undefined;
          return { lei: lei!, account: account!, destination: destination!, ...(label !== undefined ? { label } : {}) };
        }) ?? []);
  const seenKey = new Map<string, number>();
  for (const [i, d] of destinations.entries()) {
    const at = `${path}.destinations[${i}]`;
    const id = `${d.lei} ${d.account} ${destinationKey(d.destination)}`;
    if (seenKey.has(id)) v.fail(`${at}.destination`, `is also declared at ${path}.destinations[${seenKey.get(id)}]`);
    seenKey.set(id, i);
    const planned = await plannedVersion(ctx.storage.db, d, ctx.clock.now());
    if (planned.conflict) v.fail(`${at}.destination`, planned.conflict);
  }
  if (v.problems.length !== before) return undefined;
  return { cooldowns, destinations };
}

type Change = { kind: 'transfer_destination' | 'transfer_cooldown'; id: string; outcome: 'created' | 'updated' | 'unchanged' };

/**
 * Writes the section in apply's transaction: each entity's cool-down, and each declared destination
 * not in the book as declared as a new `pending` version without its approval request yet
 * (`openDeclaredRequests` opens them once the apply committed), requested by the applying client
 * (requester type `client`: two approvers, none of them asked).
 * An apply made with a person's token (`source.person`) changes no destination: refused whole
 * (`DestinationChangeByPerson`) — the version would name the client as its requester, so the
 * person could approve their own change, and it would skip the step-up and the new-device review
 * of POST /admin/transfer-destinations, where a person asks. A destination already in the book as
 * declared is unchanged, whoever applies.
 */
export async function executeTransferDestinations(ctx: Context, trx: Transaction<Database>, now: number, section: TransferDestinationsSection, source: ApplySource): Promise<Change[]> {
  const changes: Change[] = [];
  for (const c of section.cooldowns) {
    const cooldownMs = c.hours * 3600_000;
    const existing = await trx.selectFrom('transfer_destination_settings').select('cooldown_ms').where('lei', '=', c.lei).executeTakeFirst();
    if (existing && Number(existing.cooldown_ms) === cooldownMs) {
      changes.push({ kind: 'transfer_cooldown', id: c.lei, outcome: 'unchanged' });
      continue;
    }
    if (existing) await trx.updateTable('transfer_destination_settings').set({ cooldown_ms: cooldownMs, updated_at: now }).where('lei', '=', c.lei).execute();
    else await trx.insertInto('transfer_destination_settings').values({ lei: c.lei, cooldown_ms: cooldownMs, updated_at: now }).execute();
    changes.push({ kind: 'transfer_cooldown', id: c.lei, outcome: existing ? 'updated' : 'created' });
  }
  for (const [i, declared] of section.destinations.entries()) {
    const planned = await plannedVersion(trx, declared, now);
    // The book changed since the plan (another apply, a request at the admin API): refused whole.
    if (planned.conflict) throw new ApplyRefusedError(`transfer_destinations: ${planned.conflict}; nothing was applied`);
    if (!planned.version) {
      changes.push({ kind: 'transfer_destination', id: planned.entry!.id, outcome: 'unchanged' });
      continue;
    }
    if (source.person !== undefined) {
      throw new DestinationChangeByPerson(
        `transfer_destinations.destinations[${i}]: destination ${destinationKey(declared.destination)} of account ${declared.account} would change, and a person asks for a transfer destination at POST /admin/transfer-destinations (a fresh passkey sign-in, a second person's approval), not in an apply with their token; nothing was applied`,
      );
    }
    const entry = planned.entry ?? { id: newDestinationId(), lei: declared.lei, account: declared.account, key: destinationKey(declared.destination), kind: declared.destination.kind, createdAt: now };
    if (!planned.entry) {
      try {
        await insertDestinationEntry(trx, entry);
      } catch (error) {
        // Another apply wrote the same destination meanwhile (its unique key): refused whole, as above.
        if (isUniqueViolation(error)) throw new ApplyRefusedError(`transfer_destinations: destination ${entry.key} of account ${entry.account} was added meanwhile; apply again`);
        throw error;
      }
    }
    const version: DestinationVersion = {
      destinationId: entry.id,
      version: planned.version,
      destination: declared.destination,
      ...(declared.label !== undefined ? { label: declared.label } : {}),
      status: 'pending',
      requestedBy: source.actor,
      requesterType: 'client',
      requestedAt: now,
      via: 'apply',
    };
    await trx.insertInto('transfer_destination_versions').values(versionRow(version)).execute();
    changes.push({ kind: 'transfer_destination', id: entry.id, outcome: planned.entry ? 'updated' : 'created' });
  }
  return changes;
}

/**
 * After the apply committed: opens the approval request of every version apply wrote that has none
 * (`approval.requested`, `transfer_destination.requested`, txn = the request). A version another
 * node opened meanwhile is skipped. Returns how many were opened.
 */
export async function openDeclaredRequests(ctx: Context): Promise<number> {
  const rows = await ctx.storage.db
    .selectFrom('transfer_destination_versions as v')
    .innerJoin('transfer_destinations as d', 'd.id', 'v.destination_id')
    .select(['v.destination_id', 'v.version', 'd.lei', 'd.account', 'd.destination_key', 'd.kind', 'd.created_at'])
    .where('v.approval_request', 'is', null)
    .where('v.status', '=', 'pending')
    .where('v.via', '=', 'apply')
    .orderBy('v.requested_at')
    .limit(1000)
    .execute();
  let opened = 0;
  for (const row of rows) {
    const version = (await versionsOf(ctx.storage.db, row.destination_id)).find((v) => v.version === Number(row.version));
    if (!version) continue;
    const entry: DestinationEntry = { id: row.destination_id, lei: row.lei, account: row.account, key: row.destination_key, kind: row.kind as Destination['kind'], createdAt: Number(row.created_at) };
    if (await openRequestFor(ctx, version, entry)) opened++;
  }
  return opened;
}

/**
 * What a declared destination asks of the book: nothing (`version` undefined: it is there as
 * declared, approved or waiting), a new version (its number), or a conflict (another change of it waits).
 */
async function plannedVersion(
  db: Parameters<typeof versionsOf>[0],
  declared: TransferDestinationsSection['destinations'][number],
  now: number,
): Promise<{ entry?: DestinationEntry; version?: number; conflict?: string }> {
  const entry = await findDestinationByKey(db, { lei: declared.lei, account: declared.account, key: destinationKey(declared.destination) });
  if (!entry) return { version: 1 };
  const versions = await versionsOf(db, entry.id);
  const waiting = versions.filter((v) => (v.status === 'pending' || v.status === 'held_for_review') && !expired(v, now));
  const same = (v: DestinationVersion) => sameVersion(v, declared.destination, declared.label);
  if (waiting.some(same)) return { entry };
  if (waiting.length > 0) return { entry, conflict: `a change of this destination already waits for approval (version ${waiting.at(-1)!.version}); decide it first` };
  const approved = versions.filter((v) => v.status === 'approved').at(-1);
  if (approved && same(approved)) return { entry };
  return { entry, version: (versions.at(-1)?.version ?? 0) + 1 };
}
