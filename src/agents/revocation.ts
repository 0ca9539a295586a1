import type { Transaction } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { publishCrl } from '../pki/crl.ts';
import { revocationReasons } from '../pki/revocation.ts';
import { revocationsGeneration } from '../pki/status.ts';
import { bumpGeneration } from '../storage/generations.ts';
import type { Database } from '../storage/schema.ts';

/**
 * RFC 5280 §5.3.1: a disabled agent's certificate is no longer needed for its purpose, and nothing
 * says its key was compromised (a key compromise is revoked as such, POST /pki/certificates/revoke).
 */
const disabledReason = 'cessationOfOperation';

/**
 * Revokes, inside the transaction that disables agent `agentId` (apply's kill switch,
 * src/agents/apply-section.ts; apply's prune, src/lifecycle/prune.ts), every certificate attested
 * for it that is still valid: Clearance's token endpoint refuses a disabled agent anyway, but a
 * relying party that accepts the certificate itself (mTLS to a venue, a gateway of its own) asks
 * OCSP or the CRL, which then say revoked. Revocation is final, as every revocation here
 * (src/pki/revocation.ts): an agent enabled again attests a new key. The answer is one
 * `pki.certificate_revoked` per certificate — the event src/pki/revocation.ts records — for the
 * caller to record in the same transaction; after the commit, `publishRevocations`.
 */
export async function revokeAgentCertificatesIn(trx: Transaction<Database>, now: number, agentId: string, actor: string): Promise<AuditEvent[]> {
  const valid = await trx
    .selectFrom('agent_credentials')
    .innerJoin('pki_certificates', 'pki_certificates.serial', 'agent_credentials.serial')
    .select(['pki_certificates.serial', 'pki_certificates.profile', 'pki_certificates.authority_id'])
    .where('agent_credentials.agent_id', '=', agentId)
    .where('pki_certificates.status', '=', 'valid')
    .execute();
  if (valid.length === 0) return [];
  const code = revocationReasons[disabledReason]!;
  await trx
    .updateTable('pki_certificates')
    .set({ status: 'revoked', revoked_at: now, revocation_reason: code, revoked_by: actor })
    .where('serial', 'in', valid.map((c) => c.serial))
    .where('status', '=', 'valid')
    .execute();
  // Every node's status cache (mTLS, OCSP) reloads within a second (src/pki/status.ts).
  await bumpGeneration(trx, revocationsGeneration);
  return valid.map((c) => ({
    type: 'pki.certificate_revoked',
    actor,
    subject: agentId,
    details: { control: 'financial', serial: c.serial, profile: c.profile, authority: c.authority_id, reason: disabledReason, reason_code: code, revoked_at: now, cause: 'agent_disabled' },
  }));
}

/**
 * Once the transaction that recorded `events` committed: when it revoked certificates, this node's
 * status cache forgets at once and each issuing authority's CRL is published anew (as
 * src/pki/revocation.ts does after one revocation). A CRL not published is logged: the
 * revocations stand (OCSP and mTLS see them), and the stored CRL is made anew within half its
 * validity (src/pki/crl.ts).
 */
export async function publishRevocations(ctx: Context, events: readonly AuditEvent[]): Promise<void> {
  const authorities = new Set(events.filter((e) => e.type === 'pki.certificate_revoked').map((e) => String(e.details?.authority)));
  if (authorities.size === 0) return;
  ctx.pki.status.invalidate();
  for (const authority of authorities) {
    try {
      await publishCrl(ctx, authority, { force: true });
    } catch (error) {
      ctx.log.error({ err: { message: (error as Error).message } }, 'CRL not published after an agent was disabled');
    }
  }
}
