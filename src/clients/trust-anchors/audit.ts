import type { Context } from '../../context.ts';
import { certificateFacts } from '../../identity/certificates/fields.ts';
import type { AuthenticatedClient, ClientAuthInput } from '../authentication/types.ts';

/**
 * A client let in although its partner CA's revocation status could not be checked (the profile
 * fails soft): a `client.authenticated` event says so and why, so an auditor can find every such
 * authentication (docs/client-authentication.md "Trust anchors and revocation"). Checked and
 * refused certificates need nothing here: a success is in the issued token's event, a refusal in
 * `client.auth_failed`.
 */
export async function noteUncheckedRevocation(ctx: Pick<Context, 'audit'>, authenticated: AuthenticatedClient, input: ClientAuthInput): Promise<void> {
  const anchored = authenticated.anchoredCertificate;
  if (anchored?.revocation !== 'unavailable' || !input.certificate) return;
  const clientId = authenticated.client.metadata.client_id;
  await ctx.audit.record({
    type: 'client.authenticated',
    ...(input.requestId ? { requestId: input.requestId } : {}),
    actor: clientId,
    client: clientId,
    details: {
      method: authenticated.method,
      source_address: input.sourceAddress,
      trust_anchor: anchored.anchor,
      ...(anchored.partner ? { partner: anchored.partner } : {}),
      revocation: 'unavailable',
      revocation_detail: anchored.revocationDetail ?? null,
      certificate: certificateFacts(input.certificate),
    },
  });
}
