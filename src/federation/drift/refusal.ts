import type { Context } from '../../context.ts';

/** At most one `partner.token_refused` per partner and grant per minute on a node; the others are counted into the next. */
const windowMs = 60_000;
const lastByLog = new WeakMap<object, Map<string, { at: number; suppressed: number }>>();

/**
 * Records that a suspended partner's token was refused (token exchange or JWT bearer): which
 * partner, which grant, which client — never the token. A flood of them is one event a minute
 * per partner and grant on each node, carrying how many were refused since the last one.
 */
export async function recordSuspendedRefusal(
  ctx: Pick<Context, 'audit' | 'clock'>,
  refusal: { partner: string; issuer: string; grant: 'token_exchange' | 'jwt_bearer'; client: string; requestId?: string },
): Promise<void> {
  const key = `${refusal.partner} ${refusal.grant}`;
  const now = ctx.clock.now();
  let last = lastByLog.get(ctx.audit);
  if (!last) lastByLog.set(ctx.audit, (last = new Map()));
  const seen = last.get(key);
  if (seen && now - seen.at < windowMs) {
    seen.suppressed++;
    return;
  }
  last.set(key, { at: now, suppressed: 0 });
  await ctx.audit.record({
    type: 'partner.token_refused',
    actor: refusal.client,
    client: refusal.client,
    issuer: refusal.issuer,
    ...(refusal.requestId ? { requestId: refusal.requestId } : {}),
    details: { partner: refusal.partner, grant: refusal.grant, reason: 'partner_suspended', unrecorded_since_last_event: seen?.suppressed ?? 0 },
  });
}
