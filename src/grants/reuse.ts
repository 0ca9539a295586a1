import type { AuditEvent } from '../audit/events.ts';
import { revokeGrantIn } from '../authorization/consent.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';

/** A single-use credential of a person's grant presented again: an authorization code or a refresh token. */
export interface Reuse {
  kind: 'code' | 'refresh';
  grantId: string;
  userId: string;
  clientId: string;
  requestId: string;
  /** What identifies the credential in the audit event (its id, family, state). */
  details: Record<string, unknown>;
}

const what = {
  code: { event: 'code.reused', noun: 'authorization code', reason: 'authorization code presented more than once; grant revoked' },
  refresh: { event: 'refresh.reused', noun: 'refresh token', reason: 'refresh token presented after it was used; grant revoked' },
} as const;

/**
 * The one rule for a reused single-use credential of a person's grant: the whole grant is revoked,
 * so every token issued from the first use dies with it (RFC 6749 §4.1.2 "SHOULD revoke"; RFC
 * 9700 §4.5 for codes, §4.14.2 for refresh tokens) — the revocation and the `*.reused` event in
 * one transaction — and the request is refused with invalid_grant.
 */
export async function revokeOnReuse(ctx: Context, reuse: Reuse): Promise<OAuthError> {
  const { event: type, noun, reason } = what[reuse.kind];
  await ctx.audit.recordWith(async (trx) => {
    const revoked = await revokeGrantIn(trx, ctx.clock.now(), reuse.grantId, { actor: 'clearance', reason: `${noun} reused`, requestId: reuse.requestId });
    const event: AuditEvent = {
      type,
      requestId: reuse.requestId,
      actor: reuse.clientId,
      subject: reuse.userId,
      client: reuse.clientId,
      decision: { allow: false, reasons: [reason] },
      details: { ...reuse.details, grant_id: reuse.grantId },
    };
    return { value: undefined, events: [...(revoked ? [revoked] : []), event] };
  });
  return new OAuthError('invalid_grant', `the ${noun} was already used`, { detail: `${noun} reused; its grant was revoked` });
}
