import type { AuditEvent } from '../audit/events.ts';
import { listGrants, revokeGrantIn, type ConsentGrant } from '../authorization/consent.ts';
import type { Context } from '../context.ts';
import type { EntitySnapshot } from '../entities/directory.ts';
import { liveMandatesGrantedTo, revokeMandatesGrantedToIn, type MandateVersion } from '../mandates/store.ts';
import { evaluateDecision, Resolutions, type Decision } from '../policy/decide.ts';
import { isBuiltinResourceServer } from '../resource-servers/builtins.ts';

/**
 * The mover (issue 23, docs/lifecycle.md "Joiners, movers, leavers"): a person whose desks — and
 * with them, possibly, their legal entity (a desk belongs to one firm, src/entities) — changed keeps
 * nothing the new position does not allow. Once the change has committed (apply and the admin
 * API's user writes, src/apply/index.ts), in one transaction with one `user.moved` event:
 *
 * 1. every live consent grant of the person is decided again, scope by scope on each resource
 *    server it names, by the active Cedar policy set for the person as they now are; a grant with
 *    a scope the policy now denies is revoked (`consent.revoked`, reason `person moved`);
 * 2. a grant that names a mandate granted to a legal entity the person no longer belongs to is
 *    revoked: the firm's mandate was never the person's own;
 * 3. every live mandate granted to the person is decided again: a mandate with a scope that no
 *    resource server offering it allows the person any more is revoked (`mandate.revoked`).
 * "Denies" means a clean denial — a forbid, or no permit — for the position: a denial a step-up or
 * an approval would lift, or one that could not be evaluated without a request's own context (an
 * error), is left for issuance to decide, which asks the policy again every time and fails closed.
 * Until an operator activates a policy set, registration decides (the baseline): only rule 2 applies.
 */

/** A person's change of desks, as `upsertUser` reports it. */
export interface PersonMove {
  userId: string;
  before: string[];
  after: string[];
}

/** What a move revoked. */
export interface Moved {
  userId: string;
  desks: { before: string[]; after: string[] };
  legalEntities: { before: string[]; after: string[] };
  /** Consent grants revoked, each with why. */
  grantsRevoked: { id: string; client: string; why: string }[];
  /** Mandates granted to the person, revoked, each with why. */
  mandatesRevoked: { id: string; why: string }[];
  event: AuditEvent;
}

type Deps = Pick<Context, 'policies' | 'entities' | 'clients' | 'resourceServers' | 'storage' | 'clock' | 'audit' | 'risk' | 'config'>;

/**
 * Re-evaluates the grants and mandates of a person who moved, revokes what the new position does
 * not allow, and records `user.moved` with what it revoked, in one transaction. Undefined when the
 * desks did not change (same set) or the person no longer exists.
 */
export async function recordMove(ctx: Deps, move: PersonMove, by: { actor: string; via: string; requestId?: string }): Promise<Moved | undefined> {
  if (sameSet(move.before, move.after)) return undefined;
  const snapshot = await ctx.entities.snapshot();
  const now = ctx.clock.now();
  const leis = { before: leisOf(snapshot, move.before), after: leisOf(snapshot, move.after) };
  const grants = await listGrants(ctx, { userId: move.userId, active: true, limit: 1000 });
  const mandates = await liveMandatesGrantedTo(ctx.storage.db, move.userId, now);
  const resolutions = new Resolutions();
  const decide = (scope: string, audience: string) => evaluateDecision(ctx, { principal: { type: 'User', id: move.userId }, action: scope, resource: { type: 'ResourceServer', id: audience } }, { via: 'mover', caller: 'clearance' }, resolutions).then((d) => d.decision);

  const grantsRevoked: Moved['grantsRevoked'] = [];
  for (const grant of grants) {
    const why = (await grantRefusal(ctx, grant, decide)) ?? (await foreignMandate(ctx, grant, leis.after));
    if (why) grantsRevoked.push({ id: grant.id, client: grant.clientId, why });
  }
  const mandatesRevoked: Moved['mandatesRevoked'] = [];
  const servers = (await ctx.resourceServers.list()).filter((s) => !isBuiltinResourceServer(ctx.config.issuer, s.identifier));
  for (const mandate of mandates) {
    const why = await mandateRefusal(mandate, servers, decide);
    if (why) mandatesRevoked.push({ id: mandate.id, why });
  }

  // Read before the transaction: nothing inside it may wait for another connection (one SQLite connection).
  const version = policyVersion(await ctx.policies.active());
  return ctx.audit.recordWith(async (trx) => {
    const person = await trx.selectFrom('users').select('id').where('id', '=', move.userId).executeTakeFirst();
    if (!person) return { value: undefined, events: [] };
    const events: AuditEvent[] = [];
    const at = ctx.clock.now();
    for (const g of grantsRevoked) {
      const revoked = await revokeGrantIn(trx, at, g.id, { actor: by.actor, reason: 'person moved', ...(by.requestId ? { requestId: by.requestId } : {}) });
      if (revoked) events.push(revoked);
    }
    const revokedIds = await revokeMandatesGrantedToIn(
      trx,
      at,
      move.userId,
      { reason: 'grantee moved: the new position does not allow it' },
      { actor: by.actor, ...(by.requestId ? { requestId: by.requestId } : {}) },
      events,
      new Set(mandatesRevoked.map((m) => m.id)),
    );
    const event: AuditEvent = {
      type: 'user.moved',
      ...(by.requestId ? { requestId: by.requestId } : {}),
      actor: by.actor,
      subject: move.userId,
      details: {
        via: by.via,
        desks_before: move.before,
        desks_after: move.after,
        legal_entities_before: leis.before,
        legal_entities_after: leis.after,
        grants_revoked: grantsRevoked.map((g) => ({ grant_id: g.id, client: g.client, why: g.why })),
        mandates_revoked: mandatesRevoked.filter((m) => revokedIds.includes(m.id)).map((m) => ({ mandate_id: m.id, why: m.why })),
        policy_version: version,
      },
    };
    const moved: Moved = { userId: move.userId, desks: { before: move.before, after: move.after }, legalEntities: leis, grantsRevoked, mandatesRevoked: mandatesRevoked.filter((m) => revokedIds.includes(m.id)), event };
    return { value: moved, events: [...events, event] };
  });
}

/** The moves among apply's user writes, each recorded (after the apply committed). */
export async function recordMoves(ctx: Deps, moves: readonly PersonMove[], by: { actor: string; via: string; requestId?: string }): Promise<Moved[]> {
  const done: Moved[] = [];
  for (const move of moves) {
    const moved = await recordMove(ctx, move, by);
    if (moved) done.push(moved);
  }
  return done;
}

type Decide = (scope: string, audience: string) => Promise<Decision>;

/** A denial the position itself makes: no step-up or approval lifts it, and it was evaluated cleanly. */
function deniedForPosition(d: Decision): boolean {
  return !d.allow && d.errors.length === 0 && d.stepUp === undefined && d.approval === undefined;
}

function why(d: Decision, what: string): string {
  return d.reasons.length > 0 ? `${what} is forbidden by ${d.reasons.join(', ')} (policy ${d.policyVersion})` : `no policy permits ${what} (policy ${d.policyVersion})`;
}

/** Rule 1: the first scope of the grant the policy now denies the person, as a reason; else undefined. */
async function grantRefusal(ctx: Deps, grant: ConsentGrant, decide: Decide): Promise<string | undefined> {
  for (const [audience, scopes] of Object.entries(grant.resources)) {
    // Clearance's own APIs are governed by registration, not policy (src/policy/issuance.ts).
    if (isBuiltinResourceServer(ctx.config.issuer, audience)) continue;
    for (const scope of scopes) {
      const d = await decide(scope, audience);
      if (deniedForPosition(d)) return why(d, `${scope} on ${audience}`);
    }
  }
  return undefined;
}

/** Rule 2: a mandate the grant names, granted to a legal entity the person has left. */
async function foreignMandate(ctx: Deps, grant: ConsentGrant, leis: readonly string[]): Promise<string | undefined> {
  for (const id of grant.mandates) {
    const head = await ctx.storage.db.selectFrom('mandates').select('current_version').where('id', '=', id).executeTakeFirst();
    if (!head) continue;
    const v = await ctx.storage.db.selectFrom('mandate_versions').select(['grantee_kind', 'grantee_id']).where('mandate_id', '=', id).where('version', '=', head.current_version).executeTakeFirst();
    if (v && v.grantee_kind === 'lei' && !leis.includes(v.grantee_id)) return `mandate ${id} is granted to ${v.grantee_id}, a legal entity the person no longer belongs to`;
  }
  return undefined;
}

/** Rule 3: a scope of the mandate that no resource server offering it allows the person now. */
async function mandateRefusal(mandate: MandateVersion, servers: readonly { identifier: string; scopes: readonly string[] }[], decide: Decide): Promise<string | undefined> {
  for (const scope of mandate.terms.scopes) {
    const offering = servers.filter((s) => s.scopes.includes(scope));
    if (offering.length === 0) continue;
    const decisions = await Promise.all(offering.map((s) => decide(scope, s.identifier)));
    if (decisions.every(deniedForPosition)) return why(decisions[0]!, scope);
  }
  return undefined;
}

function policyVersion(active: Awaited<ReturnType<Deps['policies']['active']>>): string {
  return active.set ? active.set.version : (active.version ?? 'baseline');
}

function leisOf(snapshot: EntitySnapshot, desks: readonly string[]): string[] {
  return [...new Set(desks.flatMap((d) => snapshot.desks.get(d)?.lei ?? []))].sort();
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');
}
