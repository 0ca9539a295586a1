import type { Context } from '../context.ts';
import { bumpGeneration } from '../storage/generations.ts';
import { publishCrl } from './crl.ts';
import { revocationsGeneration } from './status.ts';

/**
 * RFC 5280 §5.3.1 reason codes a revocation may give. `certificateHold` is not offered: a
 * revocation here is final (a held trading identity is suspended at its client, not its certificate).
 */
export const revocationReasons: Record<string, number> = {
  unspecified: 0,
  keyCompromise: 1,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  privilegeWithdrawn: 9,
};

export class RevocationError extends Error {
  override name = 'RevocationError';
  readonly code: 'unknown_certificate' | 'already_revoked' | 'bad_reason';
  constructor(code: RevocationError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

/**
 * Revokes a certificate: one conditional update (a second revocation finds it revoked) with the
 * generation every node's status cache watches and `pki.certificate_revoked`, in one transaction;
 * then this node's cache forgets at once and the issuing CA's CRL is published anew. Clearance's
 * own mTLS refuses the certificate on this node at once, on every other within a second
 * (src/pki/status.ts); OCSP answers `revoked` from the same cache.
 */
export async function revokeCertificate(
  ctx: Context,
  input: { serial: string; reason: string; actor: string; requestId?: string },
): Promise<{ serial: string; revokedAt: number; reason: string }> {
  const code = Object.hasOwn(revocationReasons, input.reason) ? revocationReasons[input.reason]! : undefined;
  if (code === undefined) throw new RevocationError('bad_reason', `reason must be one of ${Object.keys(revocationReasons).join(', ')}`);
  const serial = input.serial.toLowerCase();
  const now = ctx.clock.now();
  const authorityId = await ctx.audit.recordWith(async (trx) => {
    const row = await trx.selectFrom('pki_certificates').select(['authority_id', 'status', 'holder', 'profile']).where('serial', '=', serial).executeTakeFirst();
    if (!row) throw new RevocationError('unknown_certificate', `no certificate ${serial}`);
    const updated = await trx
      .updateTable('pki_certificates')
      .set({ status: 'revoked', revoked_at: now, revocation_reason: code, revoked_by: input.actor })
      .where('serial', '=', serial)
      .where('status', '=', 'valid')
      .executeTakeFirst();
    if (Number(updated.numUpdatedRows) !== 1) throw new RevocationError('already_revoked', `certificate ${serial} is revoked already`);
    await bumpGeneration(trx, revocationsGeneration);
    return {
      value: row.authority_id,
      events: [
        {
          type: 'pki.certificate_revoked',
          actor: input.actor,
          subject: row.holder,
          ...(input.requestId !== undefined ? { requestId: input.requestId } : {}),
          details: { control: 'financial', serial, profile: row.profile, authority: row.authority_id, reason: input.reason, reason_code: code, revoked_at: now },
        },
      ],
    };
  });
  ctx.pki.status.invalidate();
  try {
    await publishCrl(ctx, authorityId, { force: true });
  } catch (error) {
    // The revocation stands (OCSP and mTLS see it); the CRL is made on its next request.
    ctx.log.error({ err: { message: (error as Error).message } }, 'CRL not published after a revocation');
  }
  return { serial, revokedAt: now, reason: input.reason };
}
