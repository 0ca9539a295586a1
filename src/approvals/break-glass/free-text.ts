import { AuditGuardError, assertNoSecrets } from '../../audit/guard.ts';

/**
 * The free text of break-glass — an activation's reason, a review's note — goes into the audit
 * log, the alert and the approvers' page as given. Refused before anything is written (400
 * invalid_request, never a 5xx): a control character (a forged line on a page or in an export), or
 * a value the audit log would refuse (src/audit/guard.ts: a token or key, never recorded).
 */
const controlCharacters = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029]/;

/** Why this text cannot be recorded, or undefined. Line breaks and tabs are text. */
export function unrecordableText(value: string): string | undefined {
  if (controlCharacters.test(value)) return 'must not contain control characters';
  try {
    assertNoSecrets(value);
  } catch (error) {
    if (error instanceof AuditGuardError) return 'looks like a token or a key, which the audit log never records';
    throw error;
  }
  return undefined;
}
