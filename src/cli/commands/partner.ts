import { readFileSync } from 'node:fs';
import type { Context } from '../../context.ts';
import { checkPartnerProfile, type CheckLine } from '../../federation/check.ts';
import { approvePartner, PartnerApprovalRefused } from '../../federation/drift/approve.ts';
import { driftView } from '../../federation/drift/view.ts';
import { assessAdminAction, cliAdmin } from '../../risk/intrusion.ts';
import { explainPartnerToken, partnerAudiences, partnerTokenTypeUris, type PartnerTokenKind } from '../../federation/verify.ts';
import { decodeJwsHeader, mediaType } from '../../jose/index.ts';
import { exit, type Output } from '../output.ts';
import type { Rule } from '../usage.ts';

export const partnerHelp = `Usage: clearance partner check ID [--assertion FILE [--kind access_token|id_token|jwt]]
       clearance partner list
       clearance partner status ID
       clearance partner approve ID

check    checks partner ID's trust profile (the partners section of clearance apply) against the
         world, one pass/fail line per rule: the issuer is well formed; the partner's metadata
         ({issuer}/.well-known/openid-configuration or oauth-authorization-server), when it has
         any, names the same issuer (no metadata is only a note; another issuer fails); its keys
         (inline or jwks_uri, fetched with the SSRF rules) are reachable, public and usable; every
         allowed algorithm has a key of its type; every allowed audience is one of our resource
         servers accepting the allowed scopes; every listed client exists.
         --assertion FILE also verifies the JWT in FILE against the profile, rule by rule
         (format, issuer, algorithm, key, signature, expiry, lifetime, audience, required claims,
         claim mapping, ...), with our issuer and token endpoint as acceptable audiences. Its kind
         is --kind, else access_token for typ at+jwt and jwt otherwise. Its jti is not recorded.
         Exit 0 when every rule passes, 1 otherwise.
list     every partner: id, issuer, keys, allowed audiences, drift status (active, suspended,
         unchecked).
status   partner ID's drift baseline: its status (a suspension says since when and why), the
         key thumbprints, kids and algorithms, the metadata issuer, the last successful check,
         an outage in progress and the next check. The scheduled check (every
         drift_check_interval, default 900 s, minimum 60 s) compares the partner's live keys and
         metadata with it: a key added or removed, a key's algorithms or the metadata's issuer
         changed is partner.drifted, keys or metadata unreachable past unreachable_grace
         (default 3600 s) partner.unreachable, each with an alert; with on_drift: suspend the
         partner's tokens are refused until it is re-approved.
approve  re-approves partner ID: fetches its keys and metadata now and records them as the new
         baseline, ending a suspension (audited partner.reapproved). Refused, changing nothing,
         when the keys cannot be read or the metadata names another issuer than the profile's.

See docs/federation.md.`;

/** What each action takes (src/cli/usage.ts); the usage lines above say the same. */
export const partnerUsage = {
  actions: {
    check: { options: ['assertion', 'kind'], args: ['ID'] },
    list: { options: [], args: [] },
    status: { options: [], args: ['ID'] },
    approve: { options: [], args: ['ID'] },
  },
} as const satisfies Rule;

const kinds = Object.keys(partnerTokenTypeUris) as PartnerTokenKind[];

export async function partnerCommand(
  ctx: Context,
  args: { action?: string; id?: string; assertion?: string; kind?: string },
  output: Output,
): Promise<number> {
  if (args.action === 'list') {
    for (const p of await ctx.partners.list()) {
      const status = (await driftView(ctx, p.id))?.status ?? 'unchecked';
      output.out(`${p.id}  ${p.issuer}  ${p.jwks_uri ?? `inline jwks (${p.jwks?.keys.length ?? 0})`}  [${p.allowed_audiences.join(', ')}]  ${status}`);
    }
    return exit.ok;
  }
  if ((args.action === 'status' || args.action === 'approve') && args.id) return driftCommand(ctx, args.action, args.id, output);
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

async function driftCommand(ctx: Context, action: 'status' | 'approve', id: string, output: Output): Promise<number> {
  if (action === 'approve') {
    try {
      const approved = await approvePartner(ctx, id, { actor: cliAdmin() });
      await assessAdminAction(ctx, { admin: cliAdmin(), action: `partner.approve ${id}` });
      output.out(`partner ${id} re-approved (was ${approved.previous_status}); baseline: ${approved.keys.map((k) => `${k.kid ?? '(no kid)'} ${k.thumbprint}`).join(', ') || 'no keys'}`);
    } catch (error) {
      if (!(error instanceof PartnerApprovalRefused)) throw error;
      output.err(error.notFound ? `${error.message} (see: clearance partner list)` : `not re-approved: ${error.message}`);
      return exit.failed;
    }
  }
  const view = await driftView(ctx, id);
  if (!view) {
    output.err(`no partner "${id}" (see: clearance partner list)`);
    return exit.failed;
  }
  output.out(`partner ${id}: ${view.status}${view.suspended_at ? ` since ${view.suspended_at} (${view.suspended_reason})` : ''}`);
  for (const key of view.keys ?? []) output.out(`key  ${key.kid ?? '(no kid)'}  ${key.thumbprint}  ${key.algorithms.join(' ')}`);
  if (view.metadata_issuer !== undefined) output.out(`metadata issuer: ${view.metadata_issuer ?? '(no metadata)'}`);
  if (view.last_success_at !== undefined) output.out(`last successful check: ${view.last_success_at ?? 'never'}`);
  if (view.unreachable_since) output.out(`unreachable since: ${view.unreachable_since}`);
  if (view.next_check_at) output.out(`next check: ${view.next_check_at}`);
  return exit.ok;
}

function print(output: Output, line: CheckLine): void {
  output.out(`${line.status.padEnd(4)}  ${line.rule}: ${line.detail}`);
}

/** access_token for a token typed at+jwt (RFC 9068), jwt otherwise. */
function inferKind(token: string): PartnerTokenKind {
  return mediaType(decodeJwsHeader(token)?.typ) === 'at+jwt' ? 'access_token' : 'jwt';
}
