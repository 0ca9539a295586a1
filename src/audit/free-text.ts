import { AuditGuardError, assertNoSecrets } from './guard.ts';

/**
 * Free text a person types that goes into the audit log, an alert and an approver's page as given
 * — a break-glass activation's reason, a review's note, a recovery's evidence reference. Refused
 * before anything is written (400 invalid_request, never a 5xx): a control character (a forged
 * line on a page or in an export), or a value the audit log would refuse (./guard.ts: a token or
 * key, never recorded).
 */
const controlCharacters = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029]/;
/** The same, with tabs and line breaks: for a one-line value (a reference). */
const controlCharactersOnOneLine = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/**
 * Why this text cannot be recorded, or undefined. Line breaks and tabs are text, unless `oneLine`
 * (a reference, a name).
 */
export function unrecordableText(value: string, options: { oneLine?: boolean } = {}): string | undefined {
  if ((options.oneLine ? controlCharactersOnOneLine : controlCharacters).test(value)) return 'must not contain control characters';
  try {
    assertNoSecrets(value);
  } catch (error) {
    if (error instanceof AuditGuardError) return 'looks like a token or a key, which the audit log never records';
    throw error;
  }
  return undefined;
}
