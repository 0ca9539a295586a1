import { userInfo } from 'node:os';
import type { Context } from '../../context.ts';
import { InitialAccessTokens } from '../../clients/registration/initial-access-tokens.ts';
import { exit, type Output } from '../output.ts';

export const clientsHelp = `Usage: clearance clients list
       clearance clients token --scope "SCOPE ..." [--uses N] [--ttl SECONDS]

list     every registered client: id, kind, authentication method, grant types, scopes
token    issues an initial access token for dynamic client registration (RFC 7591, POST
         <issuer>/register with "Authorization: Bearer TOKEN"). A client registered with it may be
         allowed only the scopes listed in --scope. The token is printed once; only its hash is kept.
         --uses N (default 1) registrations, valid for --ttl seconds (default 86400).`;

export async function clientsCommand(
  ctx: Context,
  action: string | undefined,
  args: { scope?: string; uses?: string; ttl?: string },
  output: Output,
): Promise<number> {
  switch (action) {
    case 'list': {
      for (const { metadata: m } of await ctx.clients.list()) {
        output.out(`${m.client_id}  ${m.kind}  ${m.token_endpoint_auth_method}  [${m.grant_types.join(', ')}]  ${m.scope ?? ''}`);
      }
      return exit.ok;
    }
    case 'token': {
      const uses = Number(args.uses ?? 1);
      const ttl = Number(args.ttl ?? 86400);
      if (!args.scope || !Number.isInteger(uses) || uses < 1 || !Number.isInteger(ttl) || ttl < 1) {
        output.err(clientsHelp);
        return exit.usage;
      }
      const offered = new Set((await ctx.resourceServers.list()).flatMap((r) => r.scopes));
      const unknown = args.scope.split(' ').filter((s) => s && !offered.has(s) && s !== 'openid' && s !== 'offline_access');
      if (unknown.length) {
        output.err(`not offered by any resource server: ${unknown.join(', ')}`);
        return exit.failed;
      }
      const token = await new InitialAccessTokens(ctx.storage.db).issue({
        allowedScope: args.scope,
        uses,
        ttlSeconds: ttl,
        createdBy: `cli:${userInfo().username}`,
        now: ctx.clock.now(),
      });
      output.out(`initial access token (shown once; ${uses} use(s), ${ttl} s): ${token}`);
      output.out(`register: POST ${ctx.config.issuer}/register with "Authorization: Bearer <token>" and JSON client metadata`);
      return exit.ok;
    }
    default:
      output.err(clientsHelp);
      return exit.usage;
  }
}
