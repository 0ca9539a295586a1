import { AuditGuardError, assertNoSecrets } from '../../audit/guard.ts';

/**
 * An upstream's words for the audit trail (an error it answered, why its answer failed): at most
 * 300 characters, and nothing the audit guard refuses. An upstream controls these strings — an
 * `error_description` shaped like a JWT would otherwise make the refusal's own event unrecordable
 * (and the request a 500) — so such a detail is replaced by a note that it was left out.
 */
export function auditableDetail(text: string): string {
  const clipped = text.slice(0, 300);
  try {
    assertNoSecrets(clipped);
    return clipped;
  } catch (error) {
    if (!(error instanceof AuditGuardError)) throw error;
    return '(the detail looked like a token or a key, so it was left out)';
  }
}
