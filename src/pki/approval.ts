import type { Transaction } from 'kysely';
import type { ApprovalRequest } from '../approvals/requests.ts';
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import type { Database } from '../storage/schema.ts';
import { PkiRefusal, prepareIssuance, signAndRecord } from './issuance.ts';

/**
 * In the transaction of the decision that approves a waiting issuance (approval kind
 * `certificate_issue`): the certificate is signed and recorded, with the approval request named in
 * it and in its event. The profile and CSR are checked again as they are now (a profile changed
 * while the request waited applies); a refusal then leaves the request `denied`-like: the
 * pki request is marked `refused` and the event says why. A denial marks it `denied`.
 */
export async function settleCertificateIssue(ctx: Context, trx: Transaction<Database>, request: ApprovalRequest, outcome: 'approved' | 'denied'): Promise<AuditEvent[]> {
  const id = String(request.content.pki_request);
  const row = await trx.selectFrom('pki_requests').selectAll().where('id', '=', id).where('status', '=', 'pending').executeTakeFirst();
  if (!row) return [];
  if (outcome === 'denied') {
    await trx.updateTable('pki_requests').set({ status: 'denied' }).where('id', '=', id).execute();
    return [];
  }
  try {
    const { profile, version, csr, plan } = await prepareIssuance(ctx, row.profile, row.csr, row.holder, Number(row.lifetime_seconds), trx);
    if (csr.keyType !== request.content.key_type) throw new PkiRefusal('invalid_csr', 'the stored request no longer matches what was approved');
    const issued = await signAndRecord(ctx, trx, {
      profile,
      version,
      csr,
      holder: row.holder,
      ...plan,
      requestedBy: row.requested_by,
      renewedFrom: null,
      approvalRequest: request.id,
      txn: request.id,
    });
    await trx.updateTable('pki_requests').set({ status: 'issued', serial: issued.certificate.serial }).where('id', '=', id).execute();
    return [issued.event];
  } catch (error) {
    if (!(error instanceof PkiRefusal)) throw error;
    await trx.updateTable('pki_requests').set({ status: 'refused' }).where('id', '=', id).execute();
    return [{ type: 'pki.issuance_refused', actor: row.requested_by, subject: row.holder, txn: request.id, details: { control: 'financial', profile: row.profile, reason: error.code, pki_request: id } }];
  }
}
