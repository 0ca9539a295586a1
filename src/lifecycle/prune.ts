import type { Transaction } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import { consoleClientId } from '../console/client.ts';
import { revokeClientRefreshTokens } from '../clients/store.ts';
import type { Context } from '../context.ts';
import { revokeMandateIn } from '../mandates/store.ts';
import type { Database } from '../storage/schema.ts';
import { bumpGeneration } from '../storage/generations.ts';
import { agentsGeneration } from '../agents/registry.ts';
import { revokeAgentCertificatesIn } from '../agents/revocation.ts';
import { offboardPersonIn } from './leaver.ts';
import { isBuiltinResourceServer } from '../resource-servers/builtins.ts';

/**
 * Apply's prune (issue 23 item 1, docs/lifecycle.md "Plan and prune"): a document applied with
 * `--prune` is authoritative for the kinds it declares. An entry of such a kind that is in service
 * but absent from the document is disabled — never deleted: its history and audit events keep naming
 * it — and its tokens end at once:
 * - a client: cannot authenticate or start an authorization; its refresh tokens are revoked, and its
 *   access tokens are dead at introspection and at every resource of ours (the liveness cut-off);
 * - a resource server: no longer an audience; every token for it is dead (the cut-off);
 * - a partner: its issuer is no longer trusted; tokens exchanged from its tokens are dead;
 * - a person: the leaver operation (src/lifecycle/leaver.ts), everything they hold ended;
 * - an agent: disabled (no token, no credential), its tokens dead, its attested certificates revoked;
 * - a mandate: revoked, its tokens dead.
 *
 * What apply does not manage is never pruned: Clearance's own audiences and console client, clients registered
 * dynamically (RFC 7591: their registration manages them), and people provisioned by an identity
 * provider (linked) or through SCIM: their own system manages them.
 */

/** The document sections prune governs, and the kind of entry each holds. */
export const prunableSections = {
  clients: 'client',
  resource_servers: 'resource_server',
  partners: 'partner',
  users: 'user',
  agents: 'agent',
  mandates: 'mandate',
} as const;
export type PrunableSection = keyof typeof prunableSections;
export type PrunableKind = (typeof prunableSections)[PrunableSection];

/** One entry prune would disable. */
export interface PruneTarget {
  kind: PrunableKind;
  /** The id a document names it by (a username for a person). */
  id: string;
  /** A person's user id (the audit log names people by id). */
  userId?: string;
}

/** How many entries of a kind are in service, and which of them the document does not declare. */
export interface PruneCandidates {
  targets: PruneTarget[];
  inService: Partial<Record<PrunableKind, number>>;
  /** The service clients in service that can change Clearance through the admin API (client_credentials with `admin:write`). */
  administrators: string[];
}

/** The ids the document declares, per prunable section it has. */
export type DeclaredIds = Partial<Record<PrunableSection, ReadonlySet<string>>>;

/** Reads, inside `trx`, what prune would disable for the sections `declared` names. */
export async function findPruneTargets(trx: Transaction<Database>, issuer: string, declared: DeclaredIds): Promise<PruneCandidates> {
  const candidates: PruneCandidates = { targets: [], inService: {}, administrators: [] };
  const add = (kind: PrunableKind, inService: { id: string; userId?: string }[], keep: ReadonlySet<string>) => {
    candidates.inService[kind] = inService.length;
    for (const entry of inService) if (!keep.has(entry.id)) candidates.targets.push({ kind, ...entry });
  };
  if (declared.clients) {
    const registered = new Set((await trx.selectFrom('client_registrations').select('client_id').execute()).map((r) => r.client_id));
    const rows = await trx.selectFrom('clients').select(['client_id', 'metadata']).where('disabled_at', 'is', null).orderBy('client_id').execute();
    add('client', rows.filter((r) => r.client_id !== consoleClientId && !registered.has(r.client_id)).map((r) => ({ id: r.client_id })), declared.clients);
    // The clients a service or an operator's tooling administers Clearance with (client_credentials
    // and admin:write, as `clearance init` makes one); the console's client acts only for people.
    candidates.administrators = rows
      .filter((r) => r.client_id !== consoleClientId)
      .filter((r) => {
        const metadata = JSON.parse(r.metadata) as { scope?: string; grant_types?: string[] };
        return (metadata.grant_types ?? []).includes('client_credentials') && (metadata.scope ?? '').split(' ').includes('admin:write');
      })
      .map((r) => r.client_id);
  }
  if (declared.resource_servers) {
    const rows = await trx.selectFrom('resource_servers').select('identifier').where('disabled_at', 'is', null).orderBy('identifier').execute();
    // Clearance's own audiences (the admin API, SCIM, the CA...) are stored too, but are not apply's.
    add('resource_server', rows.filter((r) => !isBuiltinResourceServer(issuer, r.identifier)).map((r) => ({ id: r.identifier })), declared.resource_servers);
  }
  if (declared.partners) {
    const rows = await trx.selectFrom('partners').select('id').where('disabled_at', 'is', null).orderBy('id').execute();
    add('partner', rows.map((r) => ({ id: r.id })), declared.partners);
  }
  if (declared.users) {
    // People an identity provider provisioned (linked) or SCIM did are managed there, not here.
    const elsewhere = new Set([
      ...(await trx.selectFrom('user_links').select('user_id').execute()).map((r) => r.user_id),
      ...(await trx.selectFrom('scim_users').select('user_id').execute()).map((r) => r.user_id),
    ]);
    const rows = await trx.selectFrom('users').select(['id', 'username']).where('offboarded_at', 'is', null).orderBy('username').execute();
    add('user', rows.filter((r) => !elsewhere.has(r.id)).map((r) => ({ id: r.username, userId: r.id })), declared.users);
  }
  if (declared.agents) {
    const rows = await trx.selectFrom('agents').select('id').where('status', '=', 'active').orderBy('id').execute();
    add('agent', rows.map((r) => ({ id: r.id })), declared.agents);
  }
  if (declared.mandates) {
    const rows = await trx
      .selectFrom('mandates')
      .innerJoin('mandate_versions', (join) => join.onRef('mandate_versions.mandate_id', '=', 'mandates.id').onRef('mandate_versions.version', '=', 'mandates.current_version'))
      .select('mandates.id')
      .where('mandate_versions.status', 'in', ['proposed', 'active'])
      .orderBy('mandates.id')
      .execute();
    add('mandate', rows.map((r) => ({ id: r.id })), declared.mandates);
  }
  return candidates;
}

/** A kind prune would cut by more than the safety rule allows, or a prune that would lock the administrators out. */
export interface PruneRefusal {
  kind: PrunableKind;
  pruned: number;
  inService: number;
  allowed: number;
  /**
   * The prune would disable every client in service that can administer Clearance (`admin:write`,
   * such as the one `clearance init` made): refused even with `--force`, since nothing could then
   * change Clearance through its API. Declare the administrator's client in the document.
   */
  lastAdministrators?: string[];
}

/**
 * The safety rules: prune refuses to disable more than `maxShare` of the entries of a kind in
 * service (one is always allowed), so a truncated or wrong document cannot empty a kind (`--force`
 * overrides it); and it refuses, even forced, to disable the last clients that can administer
 * Clearance.
 */
export function pruneRefusals(candidates: PruneCandidates, maxShare: number): PruneRefusal[] {
  const refusals: PruneRefusal[] = [];
  for (const [kind, inService] of Object.entries(candidates.inService) as [PrunableKind, number][]) {
    const pruned = candidates.targets.filter((t) => t.kind === kind).length;
    const allowed = Math.max(1, Math.floor(maxShare * inService));
    if (pruned > allowed) refusals.push({ kind, pruned, inService, allowed });
  }
  const prunedClients = new Set(candidates.targets.filter((t) => t.kind === 'client').map((t) => t.id));
  const lastAdministrators = candidates.administrators.filter((id) => prunedClients.has(id));
  if (lastAdministrators.length > 0 && lastAdministrators.length === candidates.administrators.length) {
    refusals.push({ kind: 'client', pruned: prunedClients.size, inService: candidates.inService.client ?? 0, allowed: 0, lastAdministrators });
  }
  return refusals;
}

/** Whether `refusals` stop a prune: the safety rule's unless forced, a lockout always. */
export function pruneRefused(refusals: readonly PruneRefusal[], force: boolean): boolean {
  return refusals.some((r) => r.lastAdministrators !== undefined || !force);
}

/** What pruning one entry did. */
export interface Pruned {
  kind: PrunableKind;
  id: string;
  /** What it ended, by count or id (a person's are the leaver's: src/lifecycle/leaver.ts). */
  ended: Record<string, unknown>;
}

/**
 * Disables every target inside `trx`, pushing each one's lifecycle events (the leaver's, a
 * mandate's `mandate.revoked`) to `events`. The caller records one `config.changed` per entry.
 */
export async function pruneIn(
  ctx: Pick<Context, 'config' | 'clock' | 'clients' | 'resourceServers' | 'partners'>,
  trx: Transaction<Database>,
  now: number,
  targets: readonly PruneTarget[],
  source: { actor: string; digest: string },
  events: AuditEvent[],
): Promise<Pruned[]> {
  const done: Pruned[] = [];
  for (const target of targets) {
    switch (target.kind) {
      case 'client': {
        if (!(await ctx.clients.disable(trx, target.id, now))) continue;
        // RFC 6749 §10.4 / RFC 9700 §4.14.2: the client's refresh tokens end with it.
        const revoked = await revokeClientRefreshTokens(trx, target.id);
        done.push({ kind: 'client', id: target.id, ended: { refresh_tokens_revoked: revoked, access_tokens: 'dead (cut-off)' } });
        break;
      }
      case 'resource_server':
        if (await ctx.resourceServers.disable(trx, target.id, now)) done.push({ kind: 'resource_server', id: target.id, ended: { access_tokens: 'dead (cut-off)' } });
        break;
      case 'partner':
        if (await ctx.partners.disable(trx, target.id, now)) done.push({ kind: 'partner', id: target.id, ended: { issuer_trusted: false } });
        break;
      case 'user': {
        const offboarded = await offboardPersonIn(ctx, trx, now, target.userId!, { actor: source.actor, via: 'apply-prune', reason: 'absent from an authoritative apply document', details: { document_digest: source.digest } });
        if (!offboarded) continue;
        events.push(...offboarded.events);
        done.push({ kind: 'user', id: target.id, ended: { user_offboarded: offboarded.userId } });
        break;
      }
      case 'agent': {
        const updated = await trx.updateTable('agents').set({ status: 'disabled', updated_at: now }).where('id', '=', target.id).where('status', '=', 'active').executeTakeFirst();
        if (Number(updated.numUpdatedRows) === 0) continue;
        await bumpGeneration(trx, agentsGeneration);
        // Its attested certificates too, for every relying party that checks OCSP or the CRL.
        const revoked = await revokeAgentCertificatesIn(trx, now, target.id, source.actor);
        events.push(...revoked);
        done.push({ kind: 'agent', id: target.id, ended: { access_tokens: 'dead (agent disabled)', certificates_revoked: revoked.length } });
        break;
      }
      case 'mandate': {
        const revoked = await revokeMandateIn(trx, now, target.id, { reason: 'absent from an authoritative apply document' }, { actor: source.actor }, events);
        if (revoked) done.push({ kind: 'mandate', id: target.id, ended: { mandate_revoked: { id: target.id, v: revoked.version } } });
        break;
      }
    }
  }
  return done;
}
