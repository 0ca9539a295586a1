import { AuditGuardError } from '../../audit/guard.ts';
import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { OAuthError } from '../../oauth-error.ts';
import { authenticateClient, claimedClientId } from './index.ts';
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
      const event: AuditEvent = {
        type: error.status === 429 ? 'client.throttled' : 'client.auth_failed',
        requestId: input.requestId,
        ...withClaimedClient(input),
        decision: { allow: false, reasons: [error.detail ?? error.error] },
        details: { source_address: input.sourceAddress },
      };
      try {
        await ctx.audit.record(event);
      } catch (refused) {
        // The claimed client_id and the detail quote what the caller sent; a caller can make them
        // look like a token or key, which the audit guard refuses. Record the refusal without them
        // (the refusal itself must still be a 401/429, never a 500).
        if (!(refused instanceof AuditGuardError)) throw refused;
        const { client: _withheld, ...rest } = event;
        await ctx.audit.record({ ...rest, decision: { allow: false, reasons: [`${error.error} (detail withheld: it quoted a secret-shaped value)`] } });
      }
    }
    throw error;
  }
}

/** The client the request claims to be (unverified; recorded as claimed, for the audit trail). */
function withClaimedClient(input: ClientAuthInput): { client?: string } {
  const id = claimedClientId(input);
  return id ? { client: id } : {};
}
