import type { Transaction } from 'kysely';
import type { AuditEvent } from '../../audit/events.ts';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../storage/schema.ts';
import { changeKycRecord } from './changes.ts';
import { fieldsJson, type KycFields, type KycPrincipal } from './record.ts';
import { readKycRecord } from './store.ts';

/** One `kyc` declaration of an apply document: a person's (`users[].kyc`, or an older `attributes.kyc_status`) or a legal entity's. */
export interface KycDeclaration {
  principal: KycPrincipal;
  fields: KycFields;
}

/**
 * Writes apply's KYC declarations in its transaction. A declaration is the operator's statement of
 * a review, so it is compared with what apply declared LAST for the principal, not with the
 * record: re-applying the same document changes nothing, even after a provider's webhook or
 * compliance changed the record since; a changed declaration (another status, a new review date)
 * is written (../kyc/changes.ts: a frozen record stays frozen, the declared status becoming what it
 * returns to). Each change is `kyc.updated`, attributed to apply's actor. Returns the principals
 * whose record changed (apply reports their person or legal entity as updated).
 */
export async function executeKycDeclarations(
  trx: Transaction<Database>,
  clock: Clock,
  declarations: readonly KycDeclaration[],
  actor: string,
): Promise<{ changed: KycPrincipal[]; events: AuditEvent[] }> {
  const changed: KycPrincipal[] = [];
  const events: AuditEvent[] = [];
  for (const { principal, fields } of declarations) {
    const declared = JSON.stringify(fieldsJson(fields));
    const record = await readKycRecord(trx, principal);
    if (record?.declared === declared) continue;
    const result = await changeKycRecord(trx, clock, { principal, fields, source: 'apply', actor, declared, ...(record ? { expectedVersion: record.version } : {}) });
    if (result.changed) changed.push(principal);
    events.push(...result.events);
  }
  return { changed, events };
}
