import type { Transaction } from 'kysely';
import type { Database } from '../storage/schema.ts';
import { AuditGuardError, assertNoSecrets } from '../audit/guard.ts';
import type { Context } from '../context.ts';
import { readClientMetadata, type ClientMetadata } from '../clients/metadata.ts';
import { planTrustAnchors } from '../clients/trust-anchors/plan.ts';
import { checkSectorIdentifier } from '../clients/sector-identifier.ts';
import { builtinResourceServers } from '../resource-servers/builtins.ts';
import { readResourceServer, type ResourceServer } from '../resource-servers/definition.ts';
import { Validator, controlCharacterProblems, type Problem } from '../validation.ts';
import { decidePassword, readUserEntry, upsertUser, type PasswordDecision, type UserEntry } from '../identity/users.ts';
import type { AuditEvent } from '../audit/events.ts';
import { executeMandate, planMandates, type PlannedMandate } from '../mandates/apply.ts';
import { readMandateEntry } from '../mandates/terms.ts';
import { entitySections, executeEntities, planEntities, type EntityChange, type EntityPlan } from '../entities/apply-sections.ts';
import { executePolicies, planPolicies } from '../policy/apply-section.ts';
import type { PolicyEntry } from '../policy/store.ts';
import { executePartners, planPartners } from '../federation/apply-section.ts';
import type { Partner } from '../federation/definition.ts';
import { invalidateRoleMinimums, readAuthenticationSection, upsertRoleMinimums } from '../identity/role-requirements.ts';
import type { Acr } from '../identity/acr.ts';
import { readRecoverySection, upsertRecoverySettings, type RecoverySection } from '../identity/recovery/settings.ts';
import { executeBreakGlass, invalidateBreakGlassAccounts, planBreakGlass, planEmergencyClients, type BreakGlassAccount } from '../approvals/break-glass/accounts.ts';
import { executeWebhooks, planAlerts, type WebhookEntry } from '../signals/webhooks.ts';
import { readRiskSection, upsertRiskSettings, type RiskSection } from '../risk/settings-section.ts';
import { readAnomalySection, upsertAnomalySettings, type AnomalySection } from '../risk/anomalies/settings.ts';
import { readRateLimitSection, upsertRateLimits, type RateLimitSection } from '../risk/limits/settings.ts';
import { readTransferControlsSection, transferControls, upsertTransferControls, type TransferControls } from '../transfers/controls.ts';
import { executeTransferDestinations, openDeclaredRequests, planTransferDestinations, type TransferDestinationsSection } from '../transfers/apply-section.ts';
import { executeKycProviders, planKycProviders, type KycProviderEntry } from '../risk/kyc/providers.ts';
import { executeKycDeclarations, type KycDeclaration } from '../risk/kyc/apply.ts';
import { lockKycPrincipals } from '../risk/kyc/changes.ts';
import type { KycPrincipal } from '../risk/kyc/record.ts';
import { screenLegalEntity, screenPerson } from '../risk/screening/screen.ts';
import { executeCertificateProfiles, planCertificateProfiles } from '../pki/apply-section.ts';
import type { CertificateProfile } from '../pki/profiles.ts';
import { executeAgents, planAgents, type AgentPlan } from '../agents/apply-section.ts';
import { publishRevocations } from '../agents/revocation.ts';
import { consoleClientId } from '../console/client.ts';
import { executeIdentityProviders, planIdentityProviders } from '../federation/upstream/providers.ts';
import type { IdentityProviderEntry } from '../federation/upstream/definition.ts';
import { forgetProviderDirectory } from '../federation/upstream/directory.ts';
import { executePersonCertificates, forgetPersonCertificates, planPersonCertificates, type PersonCertificatesSection } from '../identity/certificates/settings.ts';
import { forgetConfiguration } from '../federation/upstream/oidc.ts';
import { findPruneTargets, pruneIn, pruneRefusals, pruneRefused, prunableSections, type DeclaredIds, type PruneCandidates, type PruneRefusal } from '../lifecycle/prune.ts';
import { readManagedState, type ManagedState, type StateScope } from '../lifecycle/state.ts';
import { entryFieldChanges, type PlannedChange } from '../lifecycle/plan.ts';
import { recordMoves, type PersonMove } from '../lifecycle/mover.ts';
import { heldPasswordProblems } from '../lifecycle/credential-hold.ts';

/** Sections an apply document may hold today. */
const sections = ['clients', 'resource_servers', 'users', 'mandates', ...entitySections, 'policies', 'partners', 'authentication', 'recovery', 'break_glass', 'alerts', 'risk', 'anomalies', 'rate_limits', 'transfer_controls', 'transfer_destinations', 'kyc', 'certificate_profiles', 'pipelines', 'agents', 'identity_providers', 'person_certificates'] as const;
/** Sections that later versions add; named so the error says "not yet" rather than "unknown". */
const laterSections: string[] = [];

export interface ApplyPlan {
  /**
   * The sections prune governs (src/lifecycle/prune.ts) that the document has, with the ids it
   * declares in each: with `--prune`, what else of those kinds is in service is disabled.
   */
  declared: DeclaredIds;
  clients: ClientMetadata[];
  resourceServers: ResourceServer[];
  /** People, by username; a plain `password` is hashed when the plan is executed. */
  users: UserEntry[];
  /** Mandates by id (src/mandates/apply.ts): created, accepted or amended (a new version) when executed. */
  mandates: PlannedMandate[];
  /** The entity model (src/entities): reference lists and legal entities with desks and accounts. */
  entities: EntityPlan;
  /** Policy set versions (src/policy), validated against the Cedar schema; one may be activated. */
  policies: PolicyEntry[];
  /** Partner trust profiles (src/federation), by id. */
  partners: Partner[];
  /** `authentication.role_minimums`: role → the least authentication level it asks (src/identity/role-requirements.ts). */
  roleMinimums: Record<string, Acr>;
  /** `recovery`: the settings of lost-authenticator recovery it names (src/identity/recovery/settings.ts). */
  recovery?: RecoverySection;
  /** Emergency accounts (src/approvals/break-glass/accounts.ts): created or updated. */
  breakGlass?: BreakGlassAccount[];
  /** `alerts.webhooks` (src/signals/webhooks.ts): when present, the whole list of alert endpoints. */
  alertWebhooks?: WebhookEntry[];
  /** `risk`: the risk engine's settings it names (src/risk/settings-section.ts), by stored name (`weights.new_network`). */
  risk?: RiskSection;
  /** `anomalies` (src/risk/anomalies/settings.ts): the window, history, baseline span and reactions it names. */
  anomalies?: AnomalySection;

  /** `rate_limits` (src/risk/limits/settings.ts): the limits it names. */
  rateLimits?: RateLimitSection;
  /** `transfer_controls` (src/transfers/controls.ts): when present, the whole of the transfer thresholds and daily limits. */
  transferControls?: TransferControls;
  /** `transfer_destinations` (src/transfers/apply-section.ts): per-entity cool-downs, and destinations that enter change control (pending, never approved by apply). */
  transferDestinations?: TransferDestinationsSection;

  /** `kyc.providers` (src/risk/kyc/providers.ts): when present, the whole list of KYC providers. */
  kycProviders?: KycProviderEntry[];
  /** `certificate_profiles` (src/pki/profiles.ts): created or updated, never removed. */
  certificateProfiles: CertificateProfile[];
  /** `pipelines` and `agents` (src/agents): created or updated. */
  agents?: AgentPlan;
  /** `identity_providers` (src/federation/upstream): upstream identity providers, created or updated (a client secret stays write-only). */
  identityProviders?: IdentityProviderEntry[];
  /** `person_certificates` (src/identity/certificates/settings.ts): when present, the whole list of authorities that sign people in with a certificate. */
  personCertificates?: PersonCertificatesSection;
}

export interface ApplyResult {
  changes: {
    kind: 'client' | 'resource_server' | 'user' | 'mandate' | EntityChange['kind'] | 'policy_set' | 'partner' | 'role_minimum' | 'recovery_setting' | 'break_glass_account' | 'alert_webhook' | 'risk_setting' | 'anomaly_setting' | 'rate_limit' | 'transfer_controls' | 'transfer_destination' | 'transfer_cooldown' | 'kyc_provider' | 'certificate_profile' | 'agent' | 'pipeline' | 'identity_provider' | 'person_certificate_authority';

    id: string;
    outcome: 'created' | 'updated' | 'unchanged' | 'removed' | 'disabled';
  }[];
  /** Secrets generated by this apply, by client_id: printed once, never stored in clear. */
  secrets: Record<string, string>;
}

/**
 * Validates a whole document, entry by entry and across entries, returning every problem with
 * its path. Nothing is written.
 */
export async function planApply(ctx: Context, document: unknown): Promise<{ plan?: ApplyPlan; problems: Problem[] }> {
  const v = new Validator();
  const root = v.object('', document);
  if (!root) return { problems: v.problems };
  // Issue 20 item 4: no control character in any key or string of the document (src/parameters.ts),
  // each one a problem at its path; the document is refused before anything else reads it.
  const controls = controlCharacterProblems(root);
  if (controls.length > 0) return { problems: controls };
  for (const key of Object.keys(root)) {
    if ((sections as readonly string[]).includes(key)) continue;
    v.fail(key, laterSections.includes(key) ? 'is not supported by this version of Clearance yet' : 'is not a recognised section');
  }
  // The valid entries of a section with their index in the document: the checks across entries
  // below still run when some entries are invalid (every problem in one pass), at exact paths.
  const list = <T>(key: string, read: (path: string, item: unknown) => T | undefined): { item: T; at: number }[] => {
    if (root[key] === undefined) return [];
    if (!Array.isArray(root[key])) {
      v.fail(key, 'must be an array');
      return [];
    }
    return (root[key] as unknown[]).flatMap((value, at) => {
      const item = read(`${key}[${at}]`, value);
      return item === undefined ? [] : [{ item, at }];
    });
  };
  const serverEntries = list('resource_servers', (p, x) => readResourceServer(v, p, x));
  const clientEntries = list('clients', (p, x) => readClientMetadata(v, p, x, { serverProfile: ctx.config.profile, mode: ctx.config.mode, institutional: ctx.config.institutional }));
  const userEntries = list('users', (p, x) => readUserEntry(v, p, x));
  const mandateEntries = list('mandates', (p, x) => readMandateEntry(v, p, x));
  const resourceServers = serverEntries.map((e) => e.item);
  const clients = clientEntries.map((e) => e.item);

  duplicates(v, 'resource_servers', serverEntries.map((e) => [e.item.identifier, e.at]), 'identifier');
  duplicates(v, 'clients', clientEntries.map((e) => [e.item.client_id, e.at]), 'client_id');
  duplicates(v, 'users', userEntries.map((e) => [e.item.username, e.at]), 'username');
  duplicates(v, 'mandates', mandateEntries.map((e) => [e.item.id, e.at]), 'id');
  // A leaver's credentials are on hold until an approved recovery (src/lifecycle/credential-hold.ts):
  // no document gives them a password — a plan problem here, refused again inside the write.
  await heldPasswordProblems(ctx.storage.db, v, userEntries);
  const reserved = new Set(builtinResourceServers(ctx.config.issuer).map((r) => r.identifier));
  serverEntries.forEach(({ item: r, at }) => {
    if (reserved.has(r.identifier)) v.fail(`resource_servers[${at}].identifier`, 'is reserved for Clearance itself');
  });
  // The console's client is Clearance's own, registered at every start (src/console/client.ts).
  clientEntries.forEach(({ item: c, at }) => {
    if (c.client_id === consoleClientId) v.fail(`clients[${at}].client_id`, 'is reserved for Clearance itself (the console)');
  });
  // The config.applied event names every changed id; one the audit guard refuses (shaped like a
  // JWT or a private key) would be written but never audited, so it is refused before anything is.
  serverEntries.forEach(({ item: r, at }) => refuseUnauditable(v, `resource_servers[${at}].identifier`, r.identifier));
  clientEntries.forEach(({ item: c, at }) => refuseUnauditable(v, `clients[${at}].client_id`, c.client_id));

  // OIDC Registration §5: a pairwise client's sector identifier document lists its redirect_uris.
  // Fetched when the client is registered or changed (docs/privacy.md): a client stored with the
  // same sector_identifier_uri and redirect_uris was checked then, and a sector host that is down
  // now must not fail an unrelated apply. The ones to fetch are fetched together.
  for (const { at, problem } of await sectorProblems(ctx, clientEntries)) v.fail(`clients[${at}].sector_identifier_uri`, problem);
  const certificateProfiles = planCertificateProfiles(v, list, duplicates);
  // A client may only be allowed scopes that some resource server accepts (the CA's issuance
  // scopes of the profiles this document declares included).
  const offered = new Set([...(await ctx.resourceServers.list()), ...resourceServers].flatMap((r) => r.scopes).concat(certificateProfiles.scopes));
  clientEntries.forEach(({ item: c, at }) => {
    for (const scope of c.scope?.split(' ') ?? []) {
      if (scope === 'openid' || scope === 'offline_access') continue;
      if (!offered.has(scope)) v.fail(`clients[${at}].scope`, `"${scope}" is not offered by any resource server`);
    }
  });
  const entities = await planEntities(ctx, v, list, duplicates);
  const mandates = await planMandates(ctx, v, mandateEntries, {
    resourceServers,
    clientIds: clients.map((c) => c.client_id),
    usernames: userEntries.map((e) => e.item.username),
    instrumentClasses: entities.instrumentClasses.map((c) => c.id),
  });
  // Data residency: a resource server's region is one the entity model declares.
  const declaredRegions = new Set([...(await ctx.entities.snapshot()).regions.keys(), ...entities.regions.map((r) => r.id)]);
  serverEntries.forEach(({ item: r, at }) => {
    if (r.region !== undefined && !declaredRegions.has(r.region)) v.fail(`resource_servers[${at}].region`, `"${r.region}" is not a declared region (add it under regions)`);
  });
  // The firm that runs a resource server (owner_lei) is a declared legal entity: it makes that firm a
  // party to the trades the API takes (src/evidence/external.ts firmTakesPart).
  const declaredLeis = new Set([...(await ctx.entities.snapshot()).legalEntities.keys(), ...entities.legalEntities.map((e) => e.lei)]);
  serverEntries.forEach(({ item: r, at }) => {
    if (r.owner_lei !== undefined && !declaredLeis.has(r.owner_lei)) v.fail(`resource_servers[${at}].owner_lei`, `"${r.owner_lei}" is not a declared legal entity (add it under legal_entities)`);
  });
  const policies = await planPolicies(ctx, v, list, duplicates);
  const agents = await planAgents(ctx, v, list, duplicates, clients, certificateProfiles.profiles.map((p) => p.name));
  const identityProviders = await planIdentityProviders(ctx, v, list, duplicates, entities.legalEntities);
  const partnerEntries = await planPartners(ctx, v, list, duplicates, { resourceServers, clientIds: clients.map((c) => c.client_id) });
  partnerEntries.forEach(({ item: p, at }) => refuseUnauditable(v, `partners[${at}].id`, p.id));
  // tls_client_auth_trust_anchor names a declared anchor; partners' anchors are valid and chain (src/clients/trust-anchors/plan.ts).
  await planTrustAnchors(ctx, v, clientEntries, partnerEntries);
  const partners = partnerEntries.map((e) => e.item);
  const breakGlass = await planBreakGlass(ctx, v, list, duplicates, { clients, resourceServers, users: userEntries.map((e) => e.item) });
  await planEmergencyClients(ctx.storage.db, v, clientEntries, breakGlass);
  const alertWebhooks = root.alerts === undefined ? undefined : await planAlerts(ctx.storage.db, v, root.alerts, ctx.config);
  const kycProviders = root.kyc === undefined ? undefined : await planKycProviders(ctx.storage.db, v, root.kyc);
  const roleMinimums = root.authentication === undefined ? new Map<string, Acr>() : readAuthenticationSection(v, 'authentication', root.authentication);
  const recovery = root.recovery === undefined ? undefined : readRecoverySection(v, 'recovery', root.recovery);
  const risk = root.risk === undefined ? undefined : readRiskSection(v, 'risk', root.risk, await ctx.risk.settings.get());
  const anomalies = root.anomalies === undefined ? undefined : readAnomalySection(v, 'anomalies', root.anomalies);

  const rateLimits = root.rate_limits === undefined ? undefined : readRateLimitSection(v, 'rate_limits', root.rate_limits);
  const transferControlSection = root.transfer_controls === undefined ? undefined : readTransferControlsSection(v, 'transfer_controls', root.transfer_controls);
  const transferDestinations = root.transfer_destinations === undefined ? undefined : await planTransferDestinations(ctx, v, 'transfer_destinations', root.transfer_destinations, entities.legalEntities);
  const personCertificates = root.person_certificates === undefined ? undefined : await planPersonCertificates(ctx, v, 'person_certificates', root.person_certificates, certificateProfiles.profiles);
  return v.ok
    ? {
        plan: {
          declared: declaredIds(root, { clients, resourceServers, partners, users: userEntries.map((e) => e.item), agents, mandates }),
          clients,
          resourceServers,
          users: userEntries.map((e) => e.item),
          mandates,
          entities,
          policies,
          partners,
          certificateProfiles: certificateProfiles.profiles,
          agents,
          ...(identityProviders.length > 0 ? { identityProviders } : {}),
          roleMinimums: Object.fromEntries(roleMinimums ?? []),
          ...(recovery ? { recovery } : {}),
          breakGlass,
          ...(alertWebhooks ? { alertWebhooks } : {}),
          ...(risk ? { risk } : {}),
          ...(anomalies ? { anomalies } : {}),

          ...(rateLimits ? { rateLimits } : {}),
          ...(transferControlSection ? { transferControls: transferControlSection } : {}),
          ...(transferDestinations ? { transferDestinations } : {}),

          ...(kycProviders ? { kycProviders } : {}),
          ...(personCertificates ? { personCertificates } : {}),
        },
        problems: [],
      }
    : { problems: v.problems };
}

/**
 * OIDC Registration §5 for the clients of a document whose sector identifier document must be
 * fetched: those with a `sector_identifier_uri` that are new, or whose `sector_identifier_uri` or
 * `redirect_uris` differ from the stored client's (the stored one was checked when it was
 * registered or changed). At most 8 fetches at a time, each within checkSectorIdentifier's 3 s.
 */
async function sectorProblems(ctx: Context, entries: { item: ClientMetadata; at: number }[]): Promise<{ at: number; problem: string }[]> {
  const due: { item: ClientMetadata; at: number }[] = [];
  for (const entry of entries) {
    if (entry.item.sector_identifier_uri === undefined) continue;
    const stored = (await ctx.clients.get(entry.item.client_id))?.metadata;
    const unchanged = stored?.sector_identifier_uri === entry.item.sector_identifier_uri && sameList(stored.redirect_uris, entry.item.redirect_uris);
    if (!unchanged) due.push(entry);
  }
  const problems: { at: number; problem: string }[] = [];
  for (let i = 0; i < due.length; i += 8) {
    const checked = await Promise.all(due.slice(i, i + 8).map(async ({ item, at }) => ({ at, problem: await checkSectorIdentifier(ctx, item) })));
    for (const { at, problem } of checked) if (problem !== undefined) problems.push({ at, problem });
  }
  return problems;
}

/** The same URIs, in any order (what the sector document must list does not depend on it; absent: none). */
function sameList(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  const x = new Set(a ?? []);
  const y = new Set(b ?? []);
  return x.size === y.size && [...x].every((u) => y.has(u));
}

function refuseUnauditable(v: Validator, path: string, id: string): void {
  try {
    assertNoSecrets(id);
  } catch (error) {
    if (!(error instanceof AuditGuardError)) throw error;
    v.fail(path, 'looks like a token or a key, which the audit log never records');
  }
}

/** `ids` are [id, index in the document] pairs. */
function duplicates(v: Validator, section: string, ids: [string, number][], field: string): void {
  const first = new Map<string, number>();
  for (const [id, i] of ids) {
    if (first.has(id)) v.fail(`${section}[${i}].${field}`, `"${id}" is also defined at ${section}[${first.get(id)}]`);
    else first.set(id, i);
  }
}

/** Who asked for a change, for the `config.applied` audit event. */
export interface ApplySource {
  actor: string;
  via: 'cli' | 'admin-api';
  /**
   * An admin-API apply made with a token that is not the client's own — a person's (the console
   * posts with the signed-in person's token) or a delegate's: its `sub`. Such an apply changes no
   * transfer destination (`DestinationChangeByPerson`): a person asks for one at POST
   * /admin/transfer-destinations, stepped up, reviewed from a new device, and never one of its
   * approvers (docs/transfers.md "In apply"). A password such an apply sets is recorded as set
   * by them (`users.password_set_by`; else by the client, `actor`: src/identity/users.ts).
   */
  person?: string;
  /**
   * With `person`: they signed in as a change of what Clearance trusts asks (src/endpoints/admin/
   * step-up.ts `trustChangeSignIn`: a passkey, in the last 5 minutes). Without it, an apply that
   * adds or changes a trust item (`trustChanges`) is refused whole: `TrustChangeByPerson`.
   */
  personMayChangeTrust?: boolean;
}

/** How a document is applied. */
export interface ApplyOptions {
  /**
   * The SHA-256 digest of the document's bytes (src/lifecycle/plan.ts documentDigest). Given, every
   * change is also its own `config.changed` event carrying it, with the names of the fields changed.
   */
  digest?: string;
  /** Make the document authoritative for the prunable kinds it declares (src/lifecycle/prune.ts). */
  prune?: boolean;
  /** Prune past the safety rule's share. */
  force?: boolean;
}

/**
 * An apply refused as a whole, nothing written: the caller answers 409 (admin API) or exits failed
 * (CLI), never a server error. A section throws it when the stored state changed under it (another
 * apply or an approval between plan and write).
 */
export class ApplyRefusedError extends Error {}

/**
 * A transfer destination change declared in an apply made with a person's token (`ApplySource.person`):
 * refused whole, nothing written — the admin API answers 403 access_denied.
 */
export class DestinationChangeByPerson extends ApplyRefusedError {}

/**
 * A policy set activation (`active: true` on a version not active now) declared in an apply made
 * through the admin API: refused whole, nothing written — the admin API answers 403 access_denied.
 * The document's `approver` is only text its sender wrote, so one caller would be author and
 * approver at once; through the admin API the approver is the person whose token activates it
 * (POST /admin/policies/{version}/activate, docs/policy.md "Four eyes").
 */
export class PolicyActivationThroughApply extends ApplyRefusedError {}

/**
 * A trust item added or changed (`trustChanges`) by an apply made with a person's token
 * (`ApplySource.person`) whose sign-in is not the one a trust change asks
 * (`ApplySource.personMayChangeTrust`): refused whole, nothing written — the admin API records it
 * and answers as a partner's re-approval is answered (401 insufficient_user_authentication, or 403
 * for a delegate's token). Thrown once the write has run, so it names exactly what would change.
 */
export class TrustChangeByPerson extends ApplyRefusedError {
  readonly changes: ApplyResult['changes'];
  constructor(changes: ApplyResult['changes']) {
    super(`${describeTrustChanges(changes)}: a change of what Clearance trusts, applied with a person's token, needs a passkey sign-in of the last 5 minutes; nothing was applied`);
    this.changes = changes;
  }
}

/**
 * The kinds of change that alter what Clearance trusts: the outside parties whose keys,
 * certificates or signatures it takes as proof — a partner's trust profile (its issuer, keys,
 * trust anchors for mutual TLS, the acr it may assert: what POST /admin/partners/{id}/approve
 * guards), an upstream identity provider (it signs people in), an authority that signs people in
 * with a certificate, a pipeline's attestation keys (they vouch for agents), a KYC provider's
 * signing keys (its webhooks change KYC records). A policy set's activation is not here: through
 * the admin API an apply activates none, whatever the token (`PolicyActivationThroughApply`); a
 * stored version never changes and an inactive one decides nothing.
 */
export const trustChangeKinds: readonly ApplyResult['changes'][number]['kind'][] = ['partner', 'identity_provider', 'person_certificate_authority', 'pipeline', 'kyc_provider'];

/**
 * The trust items a write adds or changes. Removing or disabling one (a pruned partner, an
 * authority left out of `person_certificates`) takes trust away, and is not counted.
 */
export function trustChanges(changes: ApplyResult['changes']): ApplyResult['changes'] {
  return changes.filter((c) => trustChangeKinds.includes(c.kind) && (c.outcome === 'created' || c.outcome === 'updated'));
}

/** "partner acme, identity_provider fund-x and 3 more": short, for an error description. */
export function describeTrustChanges(changes: ApplyResult['changes']): string {
  const named = changes.slice(0, 3).map((c) => `${c.kind} ${c.id}`).join(', ');
  return changes.length > 3 ? `${named} and ${changes.length - 3} more` : named;
}

/**
 * A person given a guarded role (src/identity/roles.ts `guardedRoles`: a created person holding
 * one, or a person not holding it now) by a write through the admin API — a PUT or PATCH of
 * /admin/users/{username} or a POST /admin/apply document: refused whole, nothing written — the
 * admin API answers 403 access_denied. One administrator could otherwise make people they control
 * into both halves of a four-eyes rule; a guarded role is asked for at POST
 * /admin/users/{username}/role-grants and given when a second person approves (docs/approvals.md
 * `role_grant`). Removing one, and keeping the roles a person holds, pass.
 */
export class RoleGrantThroughApi extends ApplyRefusedError {
  readonly username: string;
  readonly userId: string | undefined;
  readonly role: string;
  constructor(username: string, userId: string | undefined, role: string) {
    super(`users: ${username}: the role ${role} is given only with a second person's approval: ask at POST /admin/users/${username}/role-grants (docs/approvals.md); nothing was applied`);
    this.username = username;
    this.userId = userId;
    this.role = role;
  }
}

/**
 * A password named for a person who holds a guarded role, or for whom a grant of one waits
 * (`reason` guarded_role / role_grant_waiting), by a write through the admin API — a PUT or PATCH
 * of /admin/users/{username} or a POST /admin/apply document, the dry run too
 * (src/identity/users.ts `upsertUser`): refused whole, nothing written — the admin API answers 403
 * access_denied and records `user.password_reset_refused`. Whoever set it could sign in as them and
 * enrol a passkey of their own; their credentials are reset through a recovery, which two people
 * carry out (docs/recovery.md). The CLI sets it as before.
 */
export class PasswordSetThroughApi extends ApplyRefusedError {
  readonly username: string;
  readonly userId: string;
  readonly reason: 'guarded_role' | 'role_grant_waiting';
  readonly role: string;
  constructor(username: string, userId: string, reason: 'guarded_role' | 'role_grant_waiting', role: string) {
    const why = reason === 'guarded_role' ? `${username} holds ${role}` : `a grant of ${role} to ${username} waits for approval`;
    super(`users: ${username}: ${why}: their password is not set through the admin API; their credentials are reset through a recovery (POST /admin/users/${username}/recovery, docs/recovery.md); nothing was applied`);
    this.username = username;
    this.userId = userId;
    this.reason = reason;
    this.role = role;
  }
}

/** Prune would disable more of a kind than the safety rule allows; nothing was written. */
export class PruneRefusedError extends ApplyRefusedError {
  readonly refusals: PruneRefusal[];
  constructor(refusals: PruneRefusal[]) {
    super(`prune refused: ${refusals.map(describeRefusal).join('; ')}; nothing was applied`);
    this.refusals = refusals;
  }
}

/** One refusal of prune's safety rules, in words. */
export function describeRefusal(r: PruneRefusal): string {
  return r.lastAdministrators
    ? `it would disable every client that can administer Clearance (admin:write: ${r.lastAdministrators.join(', ')}); declare one in the document (--force does not override this)`
    : `${r.pruned} of ${r.inService} ${r.kind}(s) in service (at most ${r.allowed} without --force)`;
}

/** What applying would do, from a transaction that was rolled back: nothing was written. */
export interface ApplyPreview {
  changes: PlannedChange[];
  unchanged: number;
  /** Client ids a new secret would be generated for (shown once when applied). */
  newSecrets: string[];
  /** With prune: the kinds the safety rule would refuse (apply then writes nothing without force). */
  refusals: PruneRefusal[];
}

/** Everything one write of a plan touches, shared by executeApply and previewApply. */
interface Writing {
  result: ApplyResult;
  passwords: PasswordDecision[];
  /** The audit events name people by id, not username: the log is permanent, usernames are personal data. */
  userIds: Map<string, string>;
  moves: PersonMove[];
  events: AuditEvent[];
}

/** Writes a validated plan in one transaction: all of it or none of it; audited when it changed anything. */
export async function executeApply(ctx: Context, plan: ApplyPlan, source: ApplySource, options: ApplyOptions = {}): Promise<ApplyResult> {
  const writing = await startWriting(ctx, plan);
  const { result, userIds, moves } = writing;
  // One transaction with the mandates' lifecycle events (recordWith): they commit with the writes.
  await ctx.audit.recordWith(async (trx) => {
    const now = ctx.clock.now();
    const candidates = options.prune ? await findPruneTargets(trx, ctx.config.issuer, plan.declared) : undefined;
    if (candidates) {
      const refusals = pruneRefusals(candidates, ctx.config.pruneMaxPercent / 100);
      if (pruneRefused(refusals, options.force ?? false)) throw new PruneRefusedError(refusals);
    }
    const scope = options.digest ? stateScope(plan, candidates) : undefined;
    const before = scope ? await readManagedState(trx, scope) : undefined;
    await writePlan(ctx, trx, now, plan, source, writing);
    refuseTrustChangeByPerson(result, source);
    if (candidates) await prune(ctx, trx, now, candidates, source, options.digest ?? 'none', writing);
    if (before) writing.events.push(...changeEvents(result, before, await readManagedState(trx, scope!), userIds, source, options.digest!));
    return { value: undefined, events: writing.events };
  }).catch((error: unknown) => {
    // Refused once written (a trust change by a person, a section's refusal): rolled back, but a
    // cache may have been read inside the transaction, as a preview's may.
    invalidateAfterApply(ctx, plan);
    throw error;
  });
  invalidateAfterApply(ctx, plan);
  // A disabled agent's certificates were revoked with it: the CRLs say so now (src/agents/revocation.ts).
  await publishRevocations(ctx, writing.events);
  const changed = result.changes.filter((c) => c.outcome !== 'unchanged');
  if (changed.length > 0) {
    await ctx.audit.record({
      type: 'config.applied',
      actor: source.actor,
      details: {
        via: source.via,
        ...(options.digest ? { document_digest: options.digest } : {}),
        ...(options.prune ? { prune: true } : {}),
        changes: changed.map(({ kind, id, outcome }) => ({ kind, id: kind === 'user' ? userIds.get(id)! : id, outcome })),
      },
    });
  }
  // Sanctions/PEP screening at apply time (src/risk/screening): every person and legal entity the
  // document names; a hit freezes them, in its own transaction, once the apply has committed.
  for (const user of plan.users) await screenPerson(ctx, { id: userIds.get(user.username)!, name: user.name ?? null, attributes: user.attributes ?? {} }, 'apply');
  await recordMoves(ctx, moves, source);
  for (const entity of plan.entities.legalEntities) await screenLegalEntity(ctx, entity, 'apply');
  // Declared destinations wait for their four-eyes approval: the requests open once the apply committed.
  if (plan.transferDestinations?.destinations.length) await openDeclaredRequests(ctx);
  return result;
}


/**
 * What applying `plan` would do (apply --plan, POST /admin/apply?dry_run=true): the plan is written
 * in a transaction that is then rolled back, so the answer is exactly what applying would store,
 * field by field, and nothing is written (no audit event either).
 */
export async function previewApply(ctx: Context, plan: ApplyPlan, source: ApplySource, options: Pick<ApplyOptions, 'prune'> = {}): Promise<ApplyPreview> {
  const writing = await startWriting(ctx, plan);
  let preview: ApplyPreview | undefined;
  try {
    await ctx.storage.db.transaction().execute(async (trx) => {
      const now = ctx.clock.now();
      const candidates = options.prune ? await findPruneTargets(trx, ctx.config.issuer, plan.declared) : undefined;
      const scope = stateScope(plan, candidates);
      const before = await readManagedState(trx, scope);
      await writePlan(ctx, trx, now, plan, source, writing);
      if (candidates) await prune(ctx, trx, now, candidates, source, 'preview', writing);
      const after = await readManagedState(trx, scope);
      const changes: PlannedChange[] = writing.result.changes.flatMap((change) => {
        if (change.outcome === 'unchanged') return [];
        const fields = change.outcome === 'updated' ? entryFieldChanges(change.kind, change.id, before, after) : undefined;
        return [{ kind: change.kind, id: change.id, outcome: change.outcome, ...(fields ? { fields } : {}) }];
      });
      preview = {
        changes,
        unchanged: writing.result.changes.length - changes.length,
        newSecrets: Object.keys(writing.result.secrets),
        refusals: candidates ? pruneRefusals(candidates, ctx.config.pruneMaxPercent / 100) : [],
      };
      throw rollback;
    });
  } catch (error) {
    if (error !== rollback) throw error;
  } finally {
    // Nothing was committed, but a cache may have been read inside the transaction.
    invalidateAfterApply(ctx, plan);
  }
  return preview!;
}

/** Thrown to end a preview's transaction: everything it wrote is rolled back. */
const rollback = Symbol('apply preview rollback');

/** Decides the passwords before any transaction: hashing takes ~70 ms each and holds no lock. */
async function startWriting(ctx: Context, plan: ApplyPlan): Promise<Writing> {
  const passwords: PasswordDecision[] = [];
  for (const user of plan.users) passwords.push(await decidePassword(ctx.storage.db, user));
  return { result: { changes: [], secrets: {} }, passwords, userIds: new Map(), moves: [], events: [] };
}

/** Writes every section of the plan inside `trx`, in dependency order. */
async function writePlan(ctx: Context, trx: Transaction<Database>, now: number, plan: ApplyPlan, source: ApplySource, writing: Writing): Promise<void> {
  const { result, passwords, userIds, moves, events } = writing;
    await lockDeclaredKycPrincipals(trx, plan);
    for (const server of plan.resourceServers) {
      const outcome = await ctx.resourceServers.upsert(trx, server);
      result.changes.push({ kind: 'resource_server', id: server.identifier, outcome });
    }
    for (const client of plan.clients) {
      const { outcome, secret } = await ctx.clients.upsert(trx, client);
      result.changes.push({ kind: 'client', id: client.client_id, outcome });
      if (secret) result.secrets[client.client_id] = secret;
    }
    for (const [i, user] of plan.users.entries()) {
      // A lock, disable or password reset ends the person's tokens; its event commits with it.
      const upserted = await upsertUser(trx, now, user, passwords[i]!, source);
      if (upserted.moved) moves.push(upserted.moved);
      userIds.set(user.username, upserted.id);
      result.changes.push({ kind: 'user', id: user.username, outcome: upserted.outcome });
      events.push(...upserted.events);
    }
    for (const planned of plan.mandates) {
      const outcome = await executeMandate(trx, now, planned, userIds, { actor: source.actor }, events);
      result.changes.push({ kind: 'mandate', id: planned.entry.id, outcome });
    }
    result.changes.push(...(await executeEntities(ctx, trx, plan.entities)));
    await refuseActivationThroughApi(trx, plan.policies, source);
    const policies = await executePolicies(ctx, trx, plan.policies, source.actor);
    result.changes.push(...policies.changes);
    events.push(...policies.events);
    result.changes.push(...(await executePartners(ctx, trx, plan.partners)));
    result.changes.push(...(await executeCertificateProfiles(ctx, trx, plan.certificateProfiles ?? [])));
    if (plan.agents) result.changes.push(...(await executeAgents(ctx, trx, plan.agents, { actor: source.actor, events })));
    if (plan.personCertificates) result.changes.push(...(await executePersonCertificates(trx, now, plan.personCertificates)));
    if (plan.identityProviders) result.changes.push(...(await executeIdentityProviders(trx, now, ctx.identity.factorKeys.master, plan.identityProviders, events, source.actor)));
    result.changes.push(...(await upsertRoleMinimums(trx, now, new Map(Object.entries(plan.roleMinimums ?? {})))));
    if (plan.recovery) result.changes.push(...(await upsertRecoverySettings(trx, now, plan.recovery)));
    result.changes.push(...(await executeBreakGlass(trx, now, plan.breakGlass ?? [])));
    if (plan.alertWebhooks) result.changes.push(...(await executeWebhooks(trx, now, ctx.identity.factorKeys.master, plan.alertWebhooks)));
    if (plan.risk) result.changes.push(...(await upsertRiskSettings(trx, now, plan.risk)));
    if (plan.anomalies) result.changes.push(...(await upsertAnomalySettings(trx, now, plan.anomalies)));
    if (plan.rateLimits) result.changes.push(...(await upsertRateLimits(trx, now, plan.rateLimits)));
    if (plan.transferControls) result.changes.push(...(await upsertTransferControls(trx, now, plan.transferControls)));
    // After the legal entities and accounts they belong to; a destination only enters change control.
    if (plan.transferDestinations) result.changes.push(...(await executeTransferDestinations(ctx, trx, now, plan.transferDestinations, source)));
    if (plan.kycProviders) result.changes.push(...(await executeKycProviders(trx, now, ctx.identity.factorKeys.master, plan.kycProviders)));
    // KYC records after the people and legal entities they belong to; a changed record is a
    // change of its person or legal entity.
    const kyc = await executeKycDeclarations(trx, ctx.clock, kycDeclarations(plan, userIds), source.actor);
    for (const principal of kyc.changed) {
      const id = principal.type === 'User' ? [...userIds].find(([, userId]) => userId === principal.id)![0] : principal.id;
      const change = result.changes.find((c) => c.kind === (principal.type === 'User' ? 'user' : 'legal_entity') && c.id === id);
      if (change?.outcome === 'unchanged') change.outcome = 'updated';
    }
    events.push(...kyc.events);
}

/**
 * Takes the KYC lock of every principal the document's `kyc` declarations name
 * (src/risk/kyc/changes.ts lockKycPrincipals: all at once, sorted), before anything is written. A
 * freeze takes its principal's lock first and then writes what the principal owns: a person's row
 * (their cut-off), a legal entity's clients and the `clients` generation. Were the locks taken
 * only when the declarations are written (`executeKycDeclarations`, after the clients and people),
 * an apply would hold those while it waited for a lock a freeze holds: PostgreSQL aborts one of the
 * two (40P01). A person this apply creates has no id anyone else could lock yet.
 */
async function lockDeclaredKycPrincipals(trx: Transaction<Database>, plan: ApplyPlan): Promise<void> {
  const usernames = plan.users.filter((u) => u.kyc).map((u) => u.username);
  const people: KycPrincipal[] = [];
  for (let i = 0; i < usernames.length; i += 500) {
    const rows = await trx.selectFrom('users').select('id').where('username', 'in', usernames.slice(i, i + 500)).execute();
    people.push(...rows.map((row) => ({ type: 'User' as const, id: row.id })));
  }
  const firms = plan.entities.legalEntities.flatMap((e) => (e.kyc ? [{ type: 'LegalEntity' as const, id: e.lei }] : []));
  await lockKycPrincipals(trx, [...people, ...firms]);
}

/**
 * Four eyes on a policy set (docs/policy.md): through the admin API a document stores versions but
 * activates none — naming the version already active changes nothing and passes. Checked inside the
 * write, so the plan (a dry run) and the apply refuse alike.
 */
async function refuseActivationThroughApi(trx: Transaction<Database>, policies: readonly PolicyEntry[], source: ApplySource): Promise<void> {
  if (source.via !== 'admin-api') return;
  const activating = policies.filter((p) => p.active === true);
  if (activating.length === 0) return;
  const current = await trx.selectFrom('policy_sets').select('version').where('active', '=', 1).executeTakeFirst();
  const version = activating.find((p) => p.version !== current?.version)?.version;
  if (version !== undefined) {
    throw new PolicyActivationThroughApply(`policies: version ${version} is activated by a second person at POST /admin/policies/${version}/activate, not by an apply document (its approver is only text); nothing was applied`);
  }
}

/**
 * A person's apply changes what Clearance trusts only when they signed in as such a change asks
 * (`ApplySource.personMayChangeTrust`). Checked once written, inside the transaction, so the
 * outcome is exactly what would be stored (a trust item declared as stored passes); throwing
 * rolls it all back. The plan (a dry run) is not refused: it shows the change, and writes nothing.
 */
function refuseTrustChangeByPerson(result: ApplyResult, source: ApplySource): void {
  if (source.person === undefined || source.personMayChangeTrust === true) return;
  const changes = trustChanges(result.changes);
  if (changes.length > 0) throw new TrustChangeByPerson(changes);
}

/** Disables what the document no longer declares (src/lifecycle/prune.ts), one change each. */
async function prune(ctx: Context, trx: Transaction<Database>, now: number, candidates: PruneCandidates, source: ApplySource, digest: string, writing: Writing): Promise<void> {
  const pruned = await pruneIn(ctx, trx, now, candidates.targets, { actor: source.actor, digest }, writing.events);
  for (const entry of pruned) {
    writing.result.changes.push({ kind: entry.kind, id: entry.id, outcome: 'disabled' });
    const target = candidates.targets.find((t) => t.kind === entry.kind && t.id === entry.id);
    if (target?.userId) writing.userIds.set(entry.id, target.userId);
  }
}

/** The entries a plan (and a prune) names, per kind whose fields a plan reads. */
function stateScope(plan: ApplyPlan, candidates: PruneCandidates | undefined): StateScope {
  const pruned = (kind: string) => candidates?.targets.filter((t) => t.kind === kind).map((t) => t.id) ?? [];
  return {
    client: new Set([...plan.clients.map((c) => c.client_id), ...pruned('client')]),
    resource_server: new Set([...plan.resourceServers.map((r) => r.identifier), ...pruned('resource_server')]),
    partner: new Set([...plan.partners.map((p) => p.id), ...pruned('partner')]),
    user: new Set([...plan.users.map((u) => u.username), ...pruned('user')]),
    agent: new Set([...(plan.agents?.agents ?? []).map((a) => a.id), ...pruned('agent')]),
    mandate: new Set([...plan.mandates.map((m) => m.entry.id), ...pruned('mandate')]),
    identity_provider: new Set((plan.identityProviders ?? []).map((p) => p.provider.id)),
  };
}

/**
 * One `config.changed` event per change (issue 23 item 1): kind, id (a person by user id), outcome,
 * the names of the fields it changed — never their values, which may be personal data or secret —
 * and the digest of the document, so each change is traced to the commit that asked for it.
 */
function changeEvents(result: ApplyResult, before: ManagedState, after: ManagedState, userIds: ReadonlyMap<string, string>, source: ApplySource, digest: string): AuditEvent[] {
  return result.changes.flatMap((change) => {
    if (change.outcome === 'unchanged') return [];
    const fields = change.outcome === 'updated' ? entryFieldChanges(change.kind, change.id, before, after) : undefined;
    const id = change.kind === 'user' ? userIds.get(change.id)! : change.id;
    return [
      {
        type: 'config.changed' as const,
        actor: source.actor,
        ...(change.kind === 'user' ? { subject: id } : change.kind === 'client' ? { client: id } : {}),
        details: { via: source.via, kind: change.kind, id, outcome: change.outcome, ...(fields ? { fields: fields.map((f) => f.field) } : {}), document_digest: digest },
      },
    ];
  });
}

/** Every cache an apply may have changed, dropped on this node (the others follow their generations). */
function invalidateAfterApply(ctx: Context, plan: ApplyPlan): void {
  ctx.resourceServers.invalidate();
  ctx.clients.invalidate();
  ctx.entities.invalidate();
  ctx.policies.invalidate();
  ctx.partners.invalidate();
  ctx.pki.invalidateProfiles();
  ctx.agents.invalidate();
  forgetProviderDirectory(ctx.storage.db);
  forgetPersonCertificates(ctx.storage.db);
  for (const entry of plan.identityProviders ?? []) forgetConfiguration(entry.provider.id);
  invalidateRoleMinimums(ctx);
  invalidateBreakGlassAccounts(ctx);
  ctx.risk.settings.invalidate?.();
  ctx.risk.anomalySettings.invalidate();
  ctx.risk.limits.limiter.invalidate();
  transferControls(ctx).invalidate();
  ctx.risk.kyc.invalidate();
}

/** The prunable sections a document has, each with the ids it declares. */
function declaredIds(
  root: Record<string, unknown>,
  declared: { clients: ClientMetadata[]; resourceServers: ResourceServer[]; partners: Partner[]; users: UserEntry[]; agents: AgentPlan | undefined; mandates: PlannedMandate[] },
): DeclaredIds {
  const ids: Record<keyof typeof prunableSections, () => string[]> = {
    clients: () => declared.clients.map((c) => c.client_id),
    resource_servers: () => declared.resourceServers.map((r) => r.identifier),
    partners: () => declared.partners.map((p) => p.id),
    users: () => declared.users.map((u) => u.username),
    agents: () => (declared.agents?.agents ?? []).map((a) => a.id),
    mandates: () => declared.mandates.map((m) => m.entry.id),
  };
  return Object.fromEntries(
    (Object.keys(prunableSections) as (keyof typeof prunableSections)[]).filter((section) => root[section] !== undefined).map((section) => [section, new Set(ids[section]())]),
  );
}

/** The document's KYC declarations, people by the ids apply gave them. */
function kycDeclarations(plan: ApplyPlan, userIds: ReadonlyMap<string, string>): KycDeclaration[] {
  return [
    ...plan.users.flatMap((u) => (u.kyc ? [{ principal: { type: 'User' as const, id: userIds.get(u.username)! }, fields: u.kyc }] : [])),
    ...plan.entities.legalEntities.flatMap((e) => (e.kyc ? [{ principal: { type: 'LegalEntity' as const, id: e.lei }, fields: e.kyc }] : [])),
  ];
}
