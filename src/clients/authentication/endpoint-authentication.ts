import { AuditGuardError } from '../../audit/guard.ts';
import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { OAuthError } from '../../oauth-error.ts';
import { fapiAuthMethods, isFapi2 } from '../profile.ts';
import { gateEmergencyClient } from '../../approvals/break-glass/activations.ts';
import { invalidClient, refusalDetails } from './errors.ts';
import { noteUncheckedRevocation } from '../trust-anchors/audit.ts';
import { notePreviousSecretUse } from '../credentials.ts';
import { enforce } from '../../risk/limits/refusal.ts';
import { authenticateClient, basicChallenge, claimedClientId } from './index.ts';
import type { AuthenticatedClient, ClientAuthInput } from './types.ts';
import { noteClientAuthenticationFailure } from '../../risk/signals/recent-failures.ts';
import { rateLimitRejections } from '../../risk/limits/metrics.ts';
import { attributeNames, inSpan, spanNames, tracingOn } from '../../telemetry/spans.ts';

/**
 * Client authentication as the token, introspection and revocation endpoints use it: the
 * protocol check plus its audit trail. Every refusal (bad credentials, throttling) is a
 * `client.auth_failed` or `client.throttled` event naming the claimed client and the address, and is
 * counted for the risk engine's `recent_failures` signal.
 * Under the FAPI 2.0 profile (server-wide or the client's), a client that authenticated with a
 * secret, or as a public client, is refused too (FAPI 2.0 SP §5.3.2.1): a client registered before
 * the switch was turned on cannot keep using its secret. An emergency account (break-glass,
 * src/approvals/break-glass) authenticates only while an activation is in force. Last, the
 * client's rate limit (src/risk/limits): over it, 429.
 * Traced as `clearance.client_authentication` (docs/observability.md): the client and its method
 * once authenticated; a refusal is `deny` with its code, naming no client (the claimed one is only
 * what the caller sent).
 */
export function authenticate(ctx: Context, input: ClientAuthInput): Promise<AuthenticatedClient> {
  if (!tracingOn) return authenticateLimited(ctx, input);
  return inSpan(
    spanNames.clientAuthentication,
    async (span) => {
      const authenticated = await authenticateLimited(ctx, input);
      span!.setAttributes({ [attributeNames.clientId]: authenticated.client.metadata.client_id, [attributeNames.authMethod]: authenticated.method });
      return authenticated;
    },
    { decides: true },
  );
}

async function authenticateLimited(ctx: Context, input: ClientAuthInput): Promise<AuthenticatedClient> {
  const authenticated = await authenticateAudited(ctx, input);
  // The client's rate limit (docs/risk.md "Rate limits"), once it is known who is asking: a 429
  // `temporarily_unavailable`, not an authentication failure (nothing counted, nothing audited).
  await enforce(ctx.risk.limits.limiter.client(authenticated.client.metadata.client_id));
  return authenticated;
}

async function authenticateAudited(ctx: Context, input: ClientAuthInput): Promise<AuthenticatedClient> {
  try {
    const authenticated = await authenticateClient(input, ctx.clientAuthentication);
    if (isFapi2(ctx.config, authenticated.client) && !fapiAuthMethods.includes(authenticated.method)) {
      const refused = invalidClient(
        `client ${authenticated.client.metadata.client_id} authenticated with ${authenticated.method}, which the FAPI 2.0 profile does not allow`,
        `client authentication must be ${fapiAuthMethods.join(', ')} (FAPI 2.0)`,
      );
      // RFC 6749 §5.2: a 401 after the Authorization header carries the challenge.
      throw input.authorization === undefined
        ? refused
        : new OAuthError(refused.error, refused.description, { status: 401, detail: refused.detail!, headers: { 'www-authenticate': basicChallenge } });
    }
    const gated = await gateEmergencyClient(ctx, authenticated);
    // A rotation's rollover window: the replaced secret still works, and the operator hears who uses it.
    if (gated.previousSecret) await notePreviousSecretUse(ctx, gated, input.requestId);
    // A partner CA's certificate let in without a revocation answer (soft fail) is on the record.
    await noteUncheckedRevocation(ctx, gated, input);
    return gated;
  } catch (error) {
    if (error instanceof OAuthError) {
      // The risk engine's `recent_failures` (src/risk): counted per address, and per claimed client at that address.
      noteClientAuthenticationFailure(ctx, claimedClientId(input), input.sourceAddress);
      if (error.status === 429) rateLimitRejections.labels('client_auth_failures').inc();
      const event: AuditEvent = {
        type: error.status === 429 ? 'client.throttled' : 'client.auth_failed',
        requestId: input.requestId,
        ...withClaimedClient(input),
        decision: { allow: false, reasons: [error.detail ?? error.error] },
        details: { source_address: input.sourceAddress, ...refusalDetails(error) },
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
