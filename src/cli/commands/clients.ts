import type { Context } from '../../context.ts';
import { clientKinds, grantTypes, type ClientMetadata } from '../../clients/metadata.ts';
import { defaultRegistrationGrantTypes, defaultRegistrationKinds, InitialAccessTokens } from '../../clients/registration/initial-access-tokens.ts';
import { isValidLei } from '../../entities/lei.ts';
import { accessEvaluateScope, adminScopes } from '../../resource-servers/builtins.ts';
import { assessAdminAction, cliAdmin } from '../../risk/intrusion.ts';
import { exit, type Output } from '../output.ts';
import { UsageError, wholeNumber, type WholeNumberOption } from '../numbers.ts';
import type { Rule } from '../usage.ts';
import { defaultRotationOverlapSeconds, maxRotationOverlapSeconds, rotateClientSecret } from '../../clients/credentials.ts';
import { OAuthError } from '../../oauth-error.ts';

export const clientsHelp = `Usage: clearance clients list
       clearance clients token --scope "SCOPE ..." [--owner-lei LEI] [--grant-types "TYPE ..."]
                               [--kinds "KIND ..."] [--uses N] [--ttl SECONDS]
       clearance clients rotate-secret CLIENT_ID [--overlap SECONDS]

list     every registered client: id, kind, firm (owner_lei), authentication method, grant types,
         scopes, and when its secret expires
rotate-secret
         issues a new secret for a client_secret_basic/post client, printed once (only its digest
         is kept). It expires after the profile's maximum secret age
         (CLEARANCE_CLIENT_SECRET_MAX_AGE_DAYS, default 365; under CLEARANCE_INSTITUTIONAL=true
         CLEARANCE_INSTITUTIONAL_CLIENT_SECRET_MAX_AGE_DAYS, default 90). The secret it replaces
         keeps working for --overlap SECONDS (default ${defaultRotationOverlapSeconds}, at most ${maxRotationOverlapSeconds}; 0 ends it at
         once), so the client's instances can move over one by one; each use of it in that window
         is counted and audited (client.previous_secret_used). Audited as client.secret_rotated.
token    issues an initial access token for dynamic client registration (RFC 7591, POST
         <issuer>/register with "Authorization: Bearer TOKEN"). Registration metadata is
         self-asserted and confers no authority (RFC 7591 §5): what a registered client may be
         comes from this token, and an RFC 7592 update cannot change it.
         --scope        the scopes a registered client may be allowed at most (required)
         --owner-lei    the firm (LEI) every client registered with the token belongs to, for
                        mandates, policy and data residency; without it, clients belong to no firm.
                        A registrant sending another owner_lei is refused.
         --grant-types  the grant types a registrant may ask for (default:
                        "${defaultRegistrationGrantTypes.join(' ')}"; token exchange and jwt-bearer only when listed)
         --kinds        the client kinds a registrant may be: service, app, agent (default: "${defaultRegistrationKinds.join(' ')}")
         --uses N       how many registrations the token allows (default 1, at most 1000000)
         --ttl SECONDS  how long it is valid (default 86400, at most 31536000: a year)
         The token is printed once; only its hash is kept. An administrator changes a registered
         client's firm, kind, grant types or scopes with the admin API or \`clearance apply\`.`;

/** `clients rotate-secret --overlap`: how long the replaced secret keeps working. */
export const secretOverlapOption: WholeNumberOption = { flag: '--overlap', min: 0, max: maxRotationOverlapSeconds, unit: 'seconds' };
/** `clients token --uses`: how many registrations the token allows. */
export const usesOption: WholeNumberOption = { flag: '--uses', min: 1, max: 1_000_000 };
/** `clients token --ttl`: how long the token is valid. */
export const ttlOption: WholeNumberOption = { flag: '--ttl', min: 1, max: 365 * 86_400, unit: 'seconds' };

/** What each action takes (src/cli/usage.ts); the usage lines above say the same. */
export const clientsUsage = {
  actions: {
    list: { options: [], args: [] },
    token: { options: ['scope', 'owner-lei', 'grant-types', 'kinds', 'uses', 'ttl'], args: [], numbers: [usesOption, ttlOption] },
    'rotate-secret': { options: ['overlap'], args: ['CLIENT_ID'], numbers: [secretOverlapOption] },
  },
} as const satisfies Rule;

/** Scopes of Clearance itself: a client allowed one administers Clearance, or asks its decision point. */
const privilegedScopes: readonly string[] = [...adminScopes, accessEvaluateScope];

export interface ClientsArgs {
  scope?: string;
  uses?: string;
  ttl?: string;
  ownerLei?: string;
  grantTypes?: string;
  kinds?: string;
  clientId?: string;
  overlap?: string;
}

export async function clientsCommand(
  ctx: Context,
  action: string | undefined,
  args: ClientsArgs,
  output: Output,
): Promise<number> {
  try {
    return await clientsAction(ctx, action, args, output);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    output.err(error.message);
    return exit.usage;
  }
}

async function clientsAction(ctx: Context, action: string | undefined, args: ClientsArgs, output: Output): Promise<number> {
  switch (action) {
    case 'list': {
      for (const { metadata: m, secretHash, secretExpiresAt } of await ctx.clients.list()) {
        const expiry = secretHash ? `  secret expires ${secretExpiresAt === undefined ? 'never' : new Date(secretExpiresAt).toISOString()}` : '';
        output.out(`${m.client_id}  ${m.kind}  ${m.owner_lei ?? '-'}  ${m.token_endpoint_auth_method}  [${m.grant_types.join(', ')}]  ${m.scope ?? ''}${expiry}`);
      }
      return exit.ok;
    }
    case 'rotate-secret': {
      if (!args.clientId) {
        output.err(clientsHelp);
        return exit.usage;
      }
      const overlap = wholeNumber(secretOverlapOption, args.overlap) ?? defaultRotationOverlapSeconds;
      let rotation;
      try {
        rotation = await rotateClientSecret(ctx, args.clientId, { overlapSeconds: overlap, actor: cliAdmin(), via: 'cli' });
      } catch (error) {
        if (!(error instanceof OAuthError)) throw error;
        output.err(error.description ?? error.error);
        return exit.failed;
      }
      await assessAdminAction(ctx, { admin: cliAdmin(), action: 'clients.rotate_secret' });
      output.out(`new client secret for ${args.clientId} (shown once): ${rotation.secret}`);
      output.out(`it expires ${rotation.expiresAt === null ? 'never' : new Date(rotation.expiresAt).toISOString()}`);
      output.out(
        rotation.previousValidUntil === null
          ? 'the previous secret no longer works'
          : `the previous secret works until ${new Date(rotation.previousValidUntil).toISOString()}; move every instance of the client over before then`,
      );
      return exit.ok;
    }
    case 'token': {
      if (!args.scope) {
        output.err(clientsHelp);
        return exit.usage;
      }
      const uses = wholeNumber(usesOption, args.uses) ?? 1;
      const ttl = wholeNumber(ttlOption, args.ttl) ?? 86400;
      const words = (text: string | undefined) => text?.split(' ').filter(Boolean);
      const scopes = words(args.scope)!;
      const offered = new Set((await ctx.resourceServers.list()).flatMap((r) => r.scopes));
      const unknown = scopes.filter((s) => !offered.has(s) && s !== 'openid' && s !== 'offline_access');
      if (unknown.length) {
        output.err(`not offered by any resource server: ${unknown.join(', ')}`);
        return exit.failed;
      }
      if (args.ownerLei !== undefined && !isValidLei(args.ownerLei)) {
        output.err(`--owner-lei ${args.ownerLei} is not a valid LEI (ISO 17442: 20 characters, check digits)`);
        return exit.usage;
      }
      const allowedGrantTypes = words(args.grantTypes);
      const badGrantType = allowedGrantTypes?.find((g) => !(grantTypes as readonly string[]).includes(g));
      if (allowedGrantTypes?.length === 0 || badGrantType !== undefined) {
        output.err(`--grant-types must list some of: ${grantTypes.join(' ')}${badGrantType ? ` (not ${badGrantType})` : ''}`);
        return exit.usage;
      }
      const kinds = words(args.kinds);
      const badKind = kinds?.find((k) => !(clientKinds as readonly string[]).includes(k));
      if (kinds?.length === 0 || badKind !== undefined) {
        output.err(`--kinds must list some of: ${clientKinds.join(' ')}${badKind ? ` (not ${badKind})` : ''}`);
        return exit.usage;
      }
      const token = await new InitialAccessTokens(ctx.storage.db).issue({
        allowedScope: scopes.join(' '),
        ...(args.ownerLei !== undefined ? { ownerLei: args.ownerLei } : {}),
        ...(allowedGrantTypes ? { grantTypes: [...new Set(allowedGrantTypes)] } : {}),
        ...(kinds ? { kinds: [...new Set(kinds)] as ClientMetadata['kind'][] } : {}),
        uses,
        ttlSeconds: ttl,
        createdBy: cliAdmin(),
        now: ctx.clock.now(),
      });
      await assessAdminAction(ctx, { admin: cliAdmin(), action: 'clients.token' });
      output.out(`initial access token (shown once; ${uses} use(s), ${ttl} s): ${token}`);
      output.out(
        `registered clients get: firm ${args.ownerLei ?? 'none'}; scopes at most ${scopes.join(' ')}; ` +
          `grant types at most ${(allowedGrantTypes ?? defaultRegistrationGrantTypes).join(' ')}; kinds ${(kinds ?? defaultRegistrationKinds).join(' ')}`,
      );
      if (args.ownerLei !== undefined && !(await ctx.entities.snapshot()).legalEntities.has(args.ownerLei)) {
        output.out(`note: ${args.ownerLei} is not in the entity model yet (apply legal_entities): policy and data residency know nothing of it`);
      }
      const privileged = scopes.filter((s) => privilegedScopes.includes(s));
      if (privileged.length > 0) output.out(`note: ${privileged.join(', ')} are scopes of Clearance itself; every client registered with this token may hold them`);
      output.out(`register: POST ${ctx.config.issuer}/register with "Authorization: Bearer <token>" and JSON client metadata`);
      return exit.ok;
    }
    default:
      output.err(clientsHelp);
      return exit.usage;
  }
}
