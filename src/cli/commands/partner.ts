import { readFileSync } from 'node:fs';
import type { Context } from '../../context.ts';
import { checkPartnerProfile, type CheckLine } from '../../federation/check.ts';
import { explainPartnerToken, partnerAudiences, partnerTokenTypeUris, type PartnerTokenKind } from '../../federation/verify.ts';
import { decodeJwsHeader, mediaType } from '../../jose/index.ts';
import { exit, type Output } from '../output.ts';

export const partnerHelp = `Usage: clearance partner check ID [--assertion FILE [--kind access_token|id_token|jwt]]
       clearance partner list

check    checks partner ID's trust profile (the partners section of clearance apply) against the
         world, one pass/fail line per rule: the issuer is well formed; the partner's metadata
         ({issuer}/.well-known/openid-configuration or oauth-authorization-server), when it has
         any, names the same issuer (reported, not required); its keys (inline or jwks_uri, fetched
         with the SSRF rules) are reachable, public and usable; every allowed algorithm has a key
         of its type; every allowed audience is one of our resource servers accepting the allowed
         scopes; every listed client exists.
         --assertion FILE also verifies the JWT in FILE against the profile, rule by rule
         (format, issuer, algorithm, key, signature, expiry, lifetime, audience, required claims,
         claim mapping, ...), with our issuer and token endpoint as acceptable audiences. Its kind
         is --kind, else access_token for typ at+jwt and jwt otherwise. Its jti is not recorded.
         Exit 0 when every rule passes, 1 otherwise.
list     every partner: id, issuer, keys, allowed audiences.

See docs/federation.md.`;

const kinds = Object.keys(partnerTokenTypeUris) as PartnerTokenKind[];

export async function partnerCommand(
  ctx: Context,
  args: { action?: string; id?: string; assertion?: string; kind?: string },
  output: Output,
): Promise<number> {
  if (args.action === 'list') {
    for (const p of await ctx.partners.list()) {
      output.out(`${p.id}  ${p.issuer}  ${p.jwks_uri ?? `inline jwks (${p.jwks?.keys.length ?? 0})`}  [${p.allowed_audiences.join(', ')}]`);
    }
    return exit.ok;
  }
  if (args.action !== 'check' || !args.id || (args.kind !== undefined && !(kinds as string[]).includes(args.kind))) {
    output.err(partnerHelp);
    return exit.usage;
  }
  const partner = await ctx.partners.get(args.id);
  if (!partner) {
    output.err(`no partner "${args.id}" (see: clearance partner list)`);
    return exit.failed;
  }
  let token: string | undefined;
  if (args.assertion) {
    try {
      token = readFileSync(args.assertion, 'utf8').trim();
    } catch (error) {
      output.err(`cannot read ${args.assertion}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      return exit.failed;
    }
  }
  output.out(`partner ${partner.id} (${partner.issuer})`);
  const lines: CheckLine[] = await checkPartnerProfile(ctx, partner);
  for (const line of lines) print(output, line);
  if (token !== undefined) {
    const kind = (args.kind as PartnerTokenKind | undefined) ?? inferKind(token);
    output.out(`assertion ${args.assertion} as ${kind}`);
    const issuer = ctx.config.issuer;
    const reports = await explainPartnerToken(ctx, partner, token, { kind, audiences: partnerAudiences(issuer), singleUse: kind === 'jwt' });
    for (const report of reports) {
      const line: CheckLine = report;
      lines.push(line);
      print(output, line);
    }
  }
  const failed = lines.filter((l) => l.status === 'fail').length;
  output.out(failed === 0 ? 'every rule passes' : `${failed} rule(s) fail`);
  return failed === 0 ? exit.ok : exit.failed;
}

function print(output: Output, line: CheckLine): void {
  output.out(`${line.status.padEnd(4)}  ${line.rule}: ${line.detail}`);
}

/** access_token for a token typed at+jwt (RFC 9068), jwt otherwise. */
function inferKind(token: string): PartnerTokenKind {
  return mediaType(decodeJwsHeader(token)?.typ) === 'at+jwt' ? 'access_token' : 'jwt';
}
