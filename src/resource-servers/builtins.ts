import type { Context } from '../context.ts';
import type { ResourceServer } from './definition.ts';
import { isUniqueViolation } from '../storage/faults.ts';

/**
 * Scopes of Clearance's own admin API. `recovery:request`: open a recovery of a person's lost
 * authenticator (POST /admin/users/{username}/recovery), only with a help-desk person's token
 * (src/endpoints/admin/recovery.ts) — narrower than admin:write, which a help-desk app need not hold.
 * `approvals:decide`: list and decide the requests a second person approves
 * (src/endpoints/admin/approvals.ts), with a PERSON's token only — never a client's.
 * `audit:hold`: place legal holds on the audit log and ask for their two-person release
 * (src/endpoints/admin/holds.ts); reading them is `audit:read`.
 * `metrics:read`: GET /metrics (src/endpoints/metrics), for a Prometheus scraper's client — it
 * opens nothing else.
 * `reviews:close`: close the review of a break-glass activation (src/endpoints/break-glass), with a
 * PERSON's token holding the compliance role — so compliance closes reviews without holding
 * admin:write, which would let it change everything else.
 * `screening:decide`: confirm or clear a sanctions/PEP screening match (src/endpoints/admin/kyc.ts),
 * with a PERSON's token holding the compliance role — the same reasoning as `reviews:close`.
 */
export const adminScopes = ['admin:read', 'admin:write', 'audit:read', 'audit:hold', 'recovery:request', 'approvals:decide', 'metrics:read', 'reviews:close', 'screening:decide'] as const;

/**
 * The admin scopes a service's own token can use (`clearance init`'s client): all but those only a
 * person's token uses (`recovery:request`, `approvals:decide`, `reviews:close`, `screening:decide`).
 */
export const personOnlyAdminScopes: readonly string[] = ['approvals:decide', 'recovery:request', 'reviews:close', 'screening:decide'];
export const serviceAdminScopes: readonly string[] = adminScopes.filter((scope) => !personOnlyAdminScopes.includes(scope));

/** The scope a policy enforcement point needs to ask the AuthZEN access evaluation API (src/endpoints/access). */
export const accessEvaluateScope = 'access:evaluate';

/** The audience of Clearance's policy decision API (a Bearer token for it carries access:evaluate). */
export function accessAudience(issuer: string): string {
  return `${issuer}/access`;
}

/** The scope a Shared Signals receiver needs to manage its streams and poll them (src/endpoints/ssf). */
export const ssfManageScope = 'ssf:manage';

/** The audience of Clearance's Shared Signals stream management API (docs/signals.md). */
export function ssfAudience(issuer: string): string {
  return `${issuer}/ssf`;
}

/** The scope of a registered evidence producer (a resource server's guard): POST /evidence. */
export const evidenceWriteScope = 'evidence:write';

/**
 * The scope of an external evidence producer (an OMS, a venue gateway, a settlement or custody
 * system): POST /audit/evidence appends its typed events under a txn (docs/evidence.md). Its own
 * scope, apart from evidence:write: asserting business events is another authority than reporting
 * signed requests Clearance verifies itself.
 */
export const evidenceAppendScope = 'evidence:append';

/**
 * The scope of a counterparty fetching the evidence of a trade it took part in (GET
 * /evidence/transactions/{txn}, docs/evidence.md "Evidence for counterparties"): reading the
 * hops it took part in and the chain before them, never the whole log (that is audit:read).
 */
export const evidenceCounterpartyScope = 'evidence:counterparty';

/** The audience of Clearance's evidence API (docs/transaction-signing.md). */
export function evidenceAudience(issuer: string): string {
  return `${issuer}/evidence`;
}

/** The scopes of Clearance's SCIM 2.0 API (src/endpoints/scim): reading people and desks, and changing them. */
export const scimReadScope = 'scim:read';
export const scimWriteScope = 'scim:write';

/** The audience of Clearance's SCIM 2.0 API for HR and identity-management systems (docs/lifecycle.md "SCIM 2.0"). */
export function scimAudience(issuer: string): string {
  return `${issuer}/scim`;
}

/** The scope that revokes certificates of Clearance's CA (POST /pki/certificates/{serial}/revoke). */
export const pkiRevokeScope = 'pki:revoke';

/** The audience of Clearance's CA API (docs/pki.md); issuance scopes are `pki:issue:<profile>`. */
export function pkiAudience(issuer: string): string {
  return `${issuer}/pki`;
}

/** The CA API's resource server: revocation, and one issuance scope per certificate profile. */
export function pkiResourceServer(issuer: string, profiles: readonly string[]): ResourceServer {
  return {
    identifier: pkiAudience(issuer),
    name: 'Clearance certificate authority',
    scopes: [pkiRevokeScope, ...[...profiles].sort().map((profile) => `pki:issue:${profile}`)],
    access_token_ttl: 300,
    require_sender_constraint: false,
  };
}

/** The resource servers Clearance itself provides; their identifiers are reserved. */
export function builtinResourceServers(issuer: string, pkiProfiles: readonly string[] = []): ResourceServer[] {
  return [
    {
      identifier: `${issuer}/admin`,
      name: 'Clearance administration',
      scopes: [...adminScopes],
      access_token_ttl: 300,
      require_sender_constraint: false,
    },
    {
      identifier: accessAudience(issuer),
      name: 'Clearance policy decisions (AuthZEN)',
      scopes: [accessEvaluateScope],
      access_token_ttl: 300,
      require_sender_constraint: false,
    },
    {
      identifier: ssfAudience(issuer),
      name: 'Clearance Shared Signals streams',
      scopes: [ssfManageScope],
      access_token_ttl: 300,
      require_sender_constraint: false,
    },
    {
      identifier: scimAudience(issuer),
      name: 'Clearance SCIM 2.0 provisioning',
      scopes: [scimReadScope, scimWriteScope],
      access_token_ttl: 300,
      require_sender_constraint: false,
    },
    pkiResourceServer(issuer, pkiProfiles),
    {
      identifier: evidenceAudience(issuer),
      name: 'Clearance signing evidence',
      scopes: [evidenceWriteScope, evidenceAppendScope, evidenceCounterpartyScope],
      access_token_ttl: 300,
      require_sender_constraint: false,
    },
  ];
}

/** Whether `identifier` names one of Clearance's own built-in resource servers (the admin API, the AuthZEN API, the Shared Signals API, the CA API). */
export function isBuiltinResourceServer(issuer: string, identifier: string): boolean {
  return builtinResourceServers(issuer).some((server) => server.identifier === identifier);
}

/** Creates or refreshes the built-in resource servers (on every start; a no-op when current). */
export async function seedBuiltins(ctx: Context): Promise<void> {
  const seed = () =>
    ctx.storage.db.transaction().execute(async (trx) => {
      const profiles = (await trx.selectFrom('pki_profiles').select('name').execute()).map((p) => p.name);
      for (const server of builtinResourceServers(ctx.config.issuer, profiles)) await ctx.resourceServers.upsert(trx, server);
    });
  try {
    await seed();
  } catch (error) {
    // Two nodes starting at once on a fresh database both insert them (each read none): the one
    // refused by the unique key finds them on a second try, and updates what differs.
    if (!isUniqueViolation(error)) throw error;
    await seed();
  }
}
