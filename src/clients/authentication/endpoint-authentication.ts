import type { Context } from '../../context.ts';
import { OAuthError } from '../../oauth-error.ts';
import { authenticateClient } from './index.ts';
import type { AuthenticatedClient, ClientAuthInput } from './types.ts';

/**
 * Client authentication as the token, introspection and revocation endpoints use it: the
 * protocol check plus its audit trail. Every refusal (bad credentials, throttling) is a
 * `client.auth_failed` or `client.throttled` event naming the claimed client and the address.
 */
export async function authenticate(ctx: Context, input: ClientAuthInput): Promise<AuthenticatedClient> {
  try {
    return await authenticateClient(input, ctx.clientAuthentication);
  } catch (error) {
    if (error instanceof OAuthError) {
      await ctx.audit.record({
        type: error.status === 429 ? 'client.throttled' : 'client.auth_failed',
        requestId: input.requestId,
        ...(claimedClientId(input) ? { client: claimedClientId(input) } : {}),
        decision: { allow: false, reasons: [error.detail ?? error.error] },
        details: { source_address: input.sourceAddress },
      });
    }
    throw error;
  }
}

/** The client_id the request claims (unverified; for the audit trail only). */
function claimedClientId(input: ClientAuthInput): string | undefined {
  const id = input.form.get('client_id');
  return id && id.length <= 128 ? id : undefined;
}
