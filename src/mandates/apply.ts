import type { Transaction } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { instrumentClassesAfter } from '../entities/plan.ts';
import { findUser, findUserByUsername } from '../identity/users.ts';
import { builtinResourceServers } from '../resource-servers/builtins.ts';
import type { ResourceServer } from '../resource-servers/definition.ts';
import type { Database } from '../storage/schema.ts';
import { join, type Validator } from '../validation.ts';
import { isoTime } from './instant.ts';
import { applyMandateIn, currentVersionIn, isDue, type Actor, type MandateVersion } from './store.ts';
import { changedFields, type MandateEntry, type MandateTerms, type Party } from './terms.ts';

/** A `mandates[]` entry ready to execute. */
export interface PlannedMandate {
  entry: MandateEntry;
  /**
   * The grantee is a user that the same document creates: its id is known only once the users
   * are written, inside the apply transaction (`resolvePlannedMandate`).
   */
  granteeUsername?: string;
}

/** What the rest of the document declares, for the cross-checks. */
export interface DocumentContext {
  resourceServers: readonly ResourceServer[];
  clientIds: readonly string[];
  usernames: readonly string[];
  /** Instrument classes the document declares (`instrument_classes[].id`). */
  instrumentClasses?: readonly string[];
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

type PlanDeps = Pick<Context, 'storage' | 'clock' | 'resourceServers' | 'clients' | 'config' | 'entities'>;

/**
 * Cross-checks the valid `mandates[]` entries against the document and what is stored, recording
 * problems at their paths (`checkMandateEntry`). Returns the entries that passed.
 */
export async function planMandates(
  ctx: PlanDeps,
  v: Validator,
  entries: readonly { item: MandateEntry; at: number }[],
  document: DocumentContext,
): Promise<PlannedMandate[]> {
  const planned: PlannedMandate[] = [];
  for (const { item, at } of entries) {
    const checked = await checkMandateEntry(ctx, v, `mandates[${at}]`, item, document);
    if (checked) planned.push(checked);
  }
  return planned;
}

/**
 * Cross-checks one entry, recording problems under `path`: scopes offered by a resource server
 * (not Clearance's own), constrained instrument classes declared in the entity model (or by the
 * document), the grantee client or user known, no acceptance in the future; and, with
 * `againstStored` (default), what the stored mandate allows — a revoked one never changes, grantor
 * and grantee never change, an acceptance is not rewritten, amended terms need their own
 * acceptance, a new one must not have ended already. A user grantee given by username is resolved
 * to the user's id. Returns the entry when it passed.
 */
export async function checkMandateEntry(
  ctx: PlanDeps,
  v: Validator,
  path: string,
  item: MandateEntry,
  document: DocumentContext = { resourceServers: [], clientIds: [], usernames: [] },
  options: { againstStored?: boolean } = {},
): Promise<PlannedMandate | undefined> {
  const now = ctx.clock.now();
  const before = v.problems.length;
  const builtin = new Set(builtinResourceServers(ctx.config.issuer).map((r) => r.identifier));
  const offered = new Set([...(await ctx.resourceServers.list()), ...document.resourceServers].filter((r) => !builtin.has(r.identifier)).flatMap((r) => r.scopes));
  for (const scope of item.terms.scopes) {
    if (!offered.has(scope)) v.fail(join(path, 'scopes'), `"${scope}" is not offered by any resource server`);
  }
  // The entity model's instrument classes are the one vocabulary (as for authorization_details).
  const classes = item.terms.constraints.instrument_classes ?? [];
  if (classes.length > 0) {
    const declared = instrumentClassesAfter(await ctx.entities.snapshot(), document.instrumentClasses ?? []);
    for (const c of classes) {
      if (!declared.has(c)) v.fail(join(path, 'constraints.instrument_classes'), `"${c}" is not a declared instrument class (add it under instrument_classes)`);
    }
  }
  const grantee = item.terms.grantee;
  let granteeUsername: string | undefined;
  let terms = item.terms;
  if (grantee.kind === 'client') {
    if (!document.clientIds.includes(grantee.id) && !(await ctx.clients.get(grantee.id))) v.fail(join(path, 'grantee.client_id'), `no client "${grantee.id}"`);
  } else if (grantee.kind === 'user') {
    const user = uuidPattern.test(grantee.id) ? await findUser(ctx, grantee.id) : await findUserByUsername(ctx, grantee.id);
    if (user) terms = { ...terms, grantee: { kind: 'user', id: user.id } };
    else if (document.usernames.includes(grantee.id.toLowerCase())) granteeUsername = grantee.id.toLowerCase();
    else v.fail(join(path, 'grantee.user'), `no user "${grantee.id}"`);
  }
  if (terms.grantedBy !== undefined) {
    // The signatory must be a person Clearance knows (stored by id), so their leaving finds it.
    const signer = uuidPattern.test(terms.grantedBy) ? await findUser(ctx, terms.grantedBy) : await findUserByUsername(ctx, terms.grantedBy);
    if (signer) terms = { ...terms, grantedBy: signer.id };
    else v.fail(join(path, 'granted_by'), `no user "${terms.grantedBy}" (the person who signs for the grantor must exist before the mandate names them)`);
  }
  if (item.acceptance && item.acceptance.at > now) v.fail(join(path, 'accepted_at'), 'is in the future');
  if (options.againstStored ?? true) {
    const stored = await currentVersionIn(ctx.storage.db, item.id);
    if (!stored) {
      if (terms.effectiveTo !== null && terms.effectiveTo <= now) v.fail(join(path, 'effective_to'), 'is in the past');
    } else {
      checkAgainstStored(v, path, { ...item, terms }, granteeUsername !== undefined, stored, now);
    }
  }
  if (v.problems.length !== before) return undefined;
  return { entry: { ...item, terms }, ...(granteeUsername ? { granteeUsername } : {}) };
}

function checkAgainstStored(v: Validator, path: string, entry: MandateEntry, newGrantee: boolean, stored: MandateVersion, now: number): void {
  const name = `mandate ${entry.id}`;
  const same = (a: Party, b: Party) => a.kind === b.kind && a.id === b.id;
  if (!same(entry.terms.grantor, stored.terms.grantor)) v.fail(join(path, 'grantor'), `cannot change (${name} exists); give a new mandate a new id`);
  if (newGrantee || !same(entry.terms.grantee, stored.terms.grantee)) v.fail(join(path, 'grantee'), `cannot change (${name} exists); give a new mandate a new id`);
  const status = isDue(stored, now) ? 'expired' : stored.status;
  const acceptance = entry.acceptance;
  if (changedFields(stored.terms, entry.terms).length === 0) {
    if (!acceptance) return;
    if (stored.acceptance) {
      if (stored.acceptance.by !== acceptance.by || stored.acceptance.at !== acceptance.at) {
        v.fail(join(path, 'accepted_by'), `version ${stored.version} was accepted by ${stored.acceptance.by} at ${isoTime(stored.acceptance.at)}; an acceptance is not rewritten`);
      }
    } else if (status !== 'proposed') {
      v.fail(join(path, 'accepted_by'), `${name} is ${status}; it can no longer be accepted`);
    }
    return;
  }
  if (status === 'revoked') {
    v.fail(path, `${name} was revoked; a revoked mandate never changes (give the new terms a new id)`);
    return;
  }
  if (entry.terms.effectiveTo !== null && entry.terms.effectiveTo <= now) v.fail(join(path, 'effective_to'), 'is in the past');
  if (acceptance && stored.acceptance && stored.acceptance.by === acceptance.by && stored.acceptance.at === acceptance.at) {
    v.fail(join(path, 'accepted_at'), `is the acceptance of version ${stored.version}; the amended terms need their own acceptance (or none: they are then proposed)`);
  }
}

/** The entry with its grantee user's id, once the apply transaction has written the document's users. */
export function resolvePlannedMandate(planned: PlannedMandate, userIds: ReadonlyMap<string, string>): MandateEntry {
  if (planned.granteeUsername === undefined) return planned.entry;
  const id = userIds.get(planned.granteeUsername);
  if (!id) throw new Error(`user ${planned.granteeUsername} was not written by this apply`);
  const terms: MandateTerms = { ...planned.entry.terms, grantee: { kind: 'user', id } };
  return { ...planned.entry, terms };
}

/** Executes one planned entry inside the apply transaction; its events are pushed to `events`. */
export function executeMandate(
  trx: Transaction<Database>,
  now: number,
  planned: PlannedMandate,
  userIds: ReadonlyMap<string, string>,
  by: Actor,
  events: AuditEvent[],
): Promise<'created' | 'updated' | 'unchanged'> {
  return applyMandateIn(trx, now, resolvePlannedMandate(planned, userIds), by, events);
}
