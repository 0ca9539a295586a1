import type { Context } from '../context.ts';
import { findUser } from '../identity/users.ts';
import { OAuthError } from '../oauth-error.ts';
import { versionCovers } from './coverage.ts';
import { currentVersionIn, type MandateVersion } from './store.ts';
import { mandateIdPattern, type Party } from './terms.ts';
import { attributeNames, inSpan, spanNames, tracingOn } from '../telemetry/spans.ts';

/** A token request made under a mandate, resolved: the version the token names and its scopes. */
export interface IssuingMandate {
  version: MandateVersion;
  scopes: string[];
}

/**
 * Resolves the `mandate` parameter of a token request (docs/mandates.md): the mandate's current
 * version must be in force now, name one of `grantees` (the client or its owner's LEI; the person
 * or their firms' LEIs) as its grantee, and grant every scope of the token. Without an explicit
 * `scope`, the token gets the scopes both the target offers and the mandate grants. Refusals:
 * a scope the mandate does not grant → invalid_scope; anything else (unknown mandate, another
 * grantee, not accepted, revoked, superseded, expired, outside its dates) → invalid_grant, with
 * the reason. An unknown mandate and one granted to someone else read alike, so the parameter is
 * no oracle for other parties' mandates. Traced as `clearance.mandate_check` (the mandate's id
 * once resolved: the parameter as sent is only what the caller sent).
 */
export function resolveIssuingMandate(
  ctx: Pick<Context, 'storage' | 'clock' | 'audit'>,
  id: string,
  request: { grantees: Party[]; offeredScopes: readonly string[]; scopeRequested: boolean },
): Promise<IssuingMandate> {
  if (!tracingOn) return resolve(ctx, id, request);
  return inSpan(
    spanNames.mandateCheck,
    async (span) => {
      const resolved = await resolve(ctx, id, request);
      span!.setAttributes({ [attributeNames.mandateId]: resolved.version.id });
      return resolved;
    },
    { decides: true },
  );
}

async function resolve(ctx: Pick<Context, 'storage' | 'clock' | 'audit'>, id: string, request: { grantees: Party[]; offeredScopes: readonly string[]; scopeRequested: boolean }): Promise<IssuingMandate> {
  if (!mandateIdPattern.test(id)) throw new OAuthError('invalid_request', 'mandate is not a mandate identifier');
  const current = await currentVersionIn(ctx.storage.db, id);
  const notYours = new OAuthError('invalid_grant', `mandate ${id} does not exist or is not granted to this party`);
  if (!current) throw notYours;
  const { grantee } = current.terms;
  if (!request.grantees.some((p) => p.kind === grantee.kind && p.id === grantee.id)) throw notYours;
  let scopes: string[];
  if (request.scopeRequested) {
    const missing = request.offeredScopes.filter((s) => !current.terms.scopes.includes(s));
    if (missing.length > 0) throw new OAuthError('invalid_scope', `mandate ${id} v${current.version} does not grant ${missing.join(' ')}`);
    scopes = [...request.offeredScopes];
  } else {
    scopes = request.offeredScopes.filter((s) => current.terms.scopes.includes(s));
    if (scopes.length === 0) throw new OAuthError('invalid_scope', `mandate ${id} v${current.version} grants none of the scopes of this resource`);
  }
  const coverage = await versionCovers(ctx, current, { scopes, at: new Date(ctx.clock.now()) });
  if (!coverage.ok) throw new OAuthError('invalid_grant', coverage.reason);
  return { version: current, scopes };
}

/** The parties a person acts as, for a mandate's grantee: themself and the legal entities of their desks. */
export async function userParties(ctx: Pick<Context, 'storage' | 'entities'>, userId: string): Promise<Party[]> {
  const user = await findUser(ctx, userId);
  const snapshot = await ctx.entities.snapshot();
  const leis = new Set((user?.desks ?? []).flatMap((d) => snapshot.desks.get(d)?.lei ?? []));
  return [{ kind: 'user', id: userId }, ...[...leis].map((id) => ({ kind: 'lei' as const, id }))];
}

/** The parties a client acts as, for a mandate's grantee: itself and its owning legal entity. */
export function clientParties(clientId: string, ownerLei: string | undefined): Party[] {
  return [{ kind: 'client', id: clientId }, ...(ownerLei ? [{ kind: 'lei' as const, id: ownerLei }] : [])];
}
