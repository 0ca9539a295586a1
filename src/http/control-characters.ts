import type { FastifyRequest } from 'fastify';
import { OAuthError } from '../oauth-error.ts';
import { hasControlCharacter } from '../parameters.ts';
import { controlCharacterProblems } from '../validation.ts';

/**
 * The boundary rule on control characters for every endpoint (the rules: src/parameters.ts),
 * applied after the body is parsed and before any handler reads the request: path parameters
 * and query strings carry none; a form carries none in a name and none but HT, LF, CR in a value
 * (the OAuth endpoints refuse those too, through `requireForm`); a JSON body follows
 * `controlCharacterProblems`. A refusal is `invalid_request` (400, no-store JSON) that names where,
 * never the text. Nothing reaches the database, so nothing differs by dialect.
 */
export function refuseControlCharacters(request: FastifyRequest): void {
  for (const value of Object.values((request.params ?? {}) as Record<string, unknown>)) {
    if (typeof value === 'string' && hasControlCharacter(value)) throw refused('the request path contains a control character');
  }
  for (const [name, value] of Object.entries((request.query ?? {}) as Record<string, unknown>)) {
    if (hasControlCharacter(name)) throw refused('a query parameter name contains a control character');
    for (const item of Array.isArray(value) ? value : [value]) {
      if (typeof item === 'string' && hasControlCharacter(item)) throw refused(`query parameter ${name} contains a control character`);
    }
  }
  const form = request.form;
  if (form) {
    // Scanned once: the OAuth endpoints' stricter rule (requireForm) reuses what this pass found.
    const problem = form.freeTextControlCharacters();
    if (problem) throw refused(problem);
  } else if (request.body !== undefined && request.body !== null && typeof request.body !== 'string') {
    const [problem] = controlCharacterProblems(request.body, 1);
    if (problem) throw refused(`${problem.path || 'the JSON body'} ${problem.message}`);
  }
}

function refused(description: string): OAuthError {
  return new OAuthError('invalid_request', description);
}
