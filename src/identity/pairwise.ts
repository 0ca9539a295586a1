import { createHmac } from 'node:crypto';
import { derivedKey } from '../keys/master-key.ts';
import type { Context } from '../context.ts';
import type { ClientMetadata } from '../clients/metadata.ts';

/** CIBA Core §10.1's grant type (src/clients/metadata.ts `cibaGrantType`; repeated here: metadata.ts imports this module). */
const cibaGrantType = 'urn:openid:params:grant-type:ciba';

/**
 * Pairwise subject identifiers (OIDC Core 1.0 §8.1; docs/privacy.md "Regions"). A person has one
 * local id (`users.id`); what a relying party, or another region, sees of it is either that id
 * (`public`) or a pseudonym that differs per sector, so two parties cannot correlate a person by
 * their `sub`:
 *
 *   sub = base64url(HMAC-SHA-256(K, len(sector) ‖ sector ‖ len(local) ‖ local))
 *   K   = HKDF-SHA-256(master key, salt = "", info = "clearance pairwise-subject v1", 32 bytes)
 *
 * K is derived from the master key (CLEARANCE_MASTER_KEY), never stored, so every node computes the
 * same subject, across restarts, with nothing to share but the key every node already has; changing
 * the master key changes every pairwise subject (as it already makes every sealed key unreadable).
 * The lengths (4 bytes, big-endian) keep `("a.b", "c")` and `("a", ".bc")` apart. Not reversible:
 * the home region recomputes a person's pseudonym to find them in a partner's records, never the
 * other way round.
 *
 * A sector is a client's (the host of its sector_identifier_uri, else of its one redirect_uri host:
 * §8.1) or a region's (`region:<id>`, the pseudonym a token carries when it crosses to a resource
 * server of another region: src/grants/token-exchange.ts), or a partner's (`partner:<issuer>`, the
 * subject of a JWT authorization grant aimed at its authorization server:
 * src/grants/exchange/authorization-grant.ts).
 */

/** OIDC Dynamic Client Registration §2 `subject_type` values, as discovery advertises them. */
export const subjectTypes = ['public', 'pairwise'] as const;
export type SubjectType = (typeof subjectTypes)[number];

/** The pairwise key derived from the master key (cached per key buffer). */
export function pairwiseKey(masterKey: Buffer): Buffer {
  return derivedKey(masterKey, 'clearance pairwise-subject v1');
}

/** The pairwise subject of `localSubject` in `sector` (43 base64url characters). */
export function pairwiseSubject(key: Buffer, sector: string, localSubject: string): string {
  const mac = createHmac('sha256', key);
  for (const part of [sector, localSubject]) {
    const bytes = Buffer.from(part, 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    mac.update(length).update(bytes);
  }
  return mac.digest('base64url');
}

/** The sector of a region's pseudonyms: one per region, whichever resource server of it a token goes to. */
export function regionSector(region: string): string {
  return `region:${region}`;
}

/**
 * A client's sector identifier (OIDC Core §8.1): the host of its `sector_identifier_uri` when it
 * registered one, else the host of its redirect_uris — undefined when those name several hosts
 * (registration refuses that for a pairwise client) or none, and for a client with the CIBA grant:
 * it gets ID tokens with no redirect, so its redirect_uri host proves nothing and would let it claim
 * another party's sector (registration requires its sector_identifier_uri: src/clients/metadata.ts).
 */
export function sectorOf(metadata: Pick<ClientMetadata, 'sector_identifier_uri' | 'redirect_uris'> & { grant_types?: readonly string[] | undefined }): string | undefined {
  if (metadata.sector_identifier_uri !== undefined) return new URL(metadata.sector_identifier_uri).host;
  if (metadata.grant_types?.includes(cibaGrantType)) return undefined;
  const hosts = redirectHosts(metadata.redirect_uris ?? []);
  return hosts.length === 1 ? hosts[0] : undefined;
}

/** The distinct hosts of redirect URIs (a private-use scheme URI's host may be empty: it counts as "" then). */
export function redirectHosts(uris: readonly string[]): string[] {
  return [...new Set(uris.map((uri) => new URL(uri).host))];
}

/**
 * The `sub` a client is told for a person (ID token, userinfo): the local id for a `public` client;
 * the pairwise subject in its sector for a `pairwise` one. A pairwise client without a sector cannot
 * be registered; one found anyway (edited storage) gets an error, never the local id: fail closed.
 */
export function subjectForClient(ctx: Pick<Context, 'identity'>, metadata: PairwiseClient, localSubject: string): string {
  if (metadata.subject_type !== 'pairwise') return localSubject;
  const sector = sectorOf(metadata);
  if (sector === undefined) throw new Error(`client ${metadata.client_id} is pairwise but has no sector identifier`);
  return pairwiseSubject(pairwiseKey(ctx.identity.factorKeys.master), sector, localSubject);
}

/** What of a client's metadata decides the subject it is told. */
export type PairwiseClient = Pick<ClientMetadata, 'client_id' | 'subject_type' | 'sector_identifier_uri' | 'redirect_uris'> & { grant_types?: readonly string[] | undefined };

/**
 * Whether a token issued to `metadata` for `sub` must not be readable by the client: a pairwise
 * client's token about anyone but itself (a person, or a partner's subject) is a reference token
 * (src/tokens/issue.ts), so the local subject it stands for never reaches the client — its resource
 * servers learn it by introspection (docs/privacy.md "Regions").
 */
export function holderMustNotRead(metadata: Pick<ClientMetadata, 'client_id' | 'subject_type'>, sub: string): boolean {
  return metadata.subject_type === 'pairwise' && sub !== metadata.client_id;
}

/**
 * What a client may learn, by introspecting a token issued to itself (RFC 7662 §2.2, the holder),
 * of the people the token names: for a pairwise client, the `sub` it was told (OIDC Core §8.1) in
 * place of the local id — and each second approver's too — and nothing else that names a local
 * person or would correlate them across sectors: no `act` chain (its members' `sub` may be local
 * persons), no `origin_person`, no `device_id`. A public client, and a token about the client
 * itself, are answered unchanged.
 */
export function claimsForHolder<T extends { sub: string; client_id: string; act?: unknown; origin_person?: string; device_id?: string; approvals?: readonly { sub: string }[] }>(
  ctx: Pick<Context, 'identity'>,
  metadata: PairwiseClient,
  claims: T,
): T {
  if (!holderMustNotRead(metadata, claims.sub)) return claims;
  const { act: _act, origin_person: _person, device_id: _device, ...rest } = claims;
  return {
    ...rest,
    sub: subjectForClient(ctx, metadata, claims.sub),
    ...(claims.approvals ? { approvals: claims.approvals.map((a) => ({ ...a, sub: subjectForClient(ctx, metadata, a.sub) })) } : {}),
  } as T;
}

/** The same, for a client named by id (a client no longer registered: the local id is never a fallback for a pairwise one it cannot see, so undefined). */
export async function subjectForClientId(ctx: Pick<Context, 'identity' | 'clients'>, clientId: string, localSubject: string): Promise<string | undefined> {
  const client = await ctx.clients.get(clientId);
  if (!client) return undefined;
  return subjectForClient(ctx, client.metadata, localSubject);
}

/** The pseudonym of `localSubject` in `region` (a token crossing to that region). */
export function regionSubject(ctx: Pick<Context, 'identity'>, region: string, localSubject: string): string {
  return pairwiseSubject(pairwiseKey(ctx.identity.factorKeys.master), regionSector(region), localSubject);
}

/**
 * Whether a token for a resource server of `targetRegion` crosses out of this instance's region
 * (CLEARANCE_REGION): only when both are declared and differ.
 */
export function crossesRegion(homeRegion: string | undefined, targetRegion: string | undefined): targetRegion is string {
  return homeRegion !== undefined && targetRegion !== undefined && homeRegion !== targetRegion;
}
