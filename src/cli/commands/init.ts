import { readFileSync } from 'node:fs';
import { executeApply, planApply } from '../../apply/index.ts';
import type { Context } from '../../context.ts';
import { adminScopes, serviceAdminScopes } from '../../resource-servers/builtins.ts';
import { formatProblem } from '../../validation.ts';
import { exit, type Output } from '../output.ts';
import type { Rule } from '../usage.ts';

export const initHelp = `Usage: clearance init [--client-id ID] [--jwks FILE]

Creates the first admin client: a service client allowed the client_credentials grant for the
built-in resource <issuer>/admin with scopes ${serviceAdminScopes.join(', ')}.
Without --jwks it authenticates with client_secret_basic and the secret is printed once (store it
now; only its hash is kept). With --jwks FILE (a JWK Set of public keys) it authenticates with
private_key_jwt and no secret exists. Refused (exit 1) if the client already exists.

Options:
  --client-id ID    the admin client's id (default clearance-admin)
  --jwks FILE       public keys for private_key_jwt instead of a generated secret`;

/** What `init` takes (src/cli/usage.ts). */
export const initUsage = { options: ['client-id', 'jwks'], args: [] } as const satisfies Rule;

export async function initCommand(
  ctx: Context,
  options: { clientId?: string; jwksFile?: string },
  output: Output,
): Promise<number> {
  const clientId = options.clientId ?? 'clearance-admin';
  if (await ctx.clients.get(clientId)) {
    output.err(`client ${clientId} already exists: Clearance is initialised (use the admin API or apply to change it)`);
    return exit.failed;
  }
  let jwks: unknown;
  if (options.jwksFile) {
    try {
      jwks = JSON.parse(readFileSync(options.jwksFile, 'utf8'));
    } catch (error) {
      output.err(`cannot read a JWK Set from ${options.jwksFile}: ${(error as Error).message}`);
      return exit.failed;
    }
  }
  const client = {
    client_id: clientId,
    client_name: 'Clearance administrator',
    kind: 'service',
    grant_types: ['client_credentials'],
    scope: serviceAdminScopes.join(' '),
    ...(jwks ? { token_endpoint_auth_method: 'private_key_jwt', jwks } : { token_endpoint_auth_method: 'client_secret_basic' }),
  };
  const { plan, problems } = await planApply(ctx, { clients: [client] });
  if (!plan) {
    for (const problem of problems) output.err(formatProblem(problem));
    return exit.failed;
  }
  const result = await executeApply(ctx, plan, { actor: 'clearance init', via: 'cli' });
  const secret = result.secrets[clientId];
  output.out(`created admin client ${clientId}`);
  output.out(`  token endpoint: ${ctx.config.issuer}/token`);
  output.out(`  resource:       ${ctx.config.issuer}/admin`);
  output.out(`  scopes:         ${serviceAdminScopes.join(' ')}`);
  if (secret) {
    output.out(`  client_secret:  ${secret}`);
    output.out('The secret is shown once and only its hash is stored: keep it in your secret store now.');
    output.out(
      `Get a token: curl -u ${clientId}:<secret> -d grant_type=client_credentials ` +
        `-d resource=${ctx.config.issuer}/admin ${ctx.config.issuer}/token`,
    );
  } else {
    output.out('  authentication: private_key_jwt with the keys from ' + options.jwksFile);
  }
  return exit.ok;
}
