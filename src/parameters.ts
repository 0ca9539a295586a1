/**
 * Control characters at the parameter boundary (issue 20 item 4). C0 controls and DEL are never
 * text: PostgreSQL cannot even store NUL in a text column, so one that reached a query was a 500
 * there and an "unknown" on SQLite. The rules, one for every way text enters the server:
 * - OAuth parameters (form bodies of /token, /introspect, /revoke, /par; /authorize's query, form
 *   and request object): no C0 control or DEL at all (RFC 6749 Appendix A: client_id, scope,
 *   state, code, tokens... are VSCHAR/NQCHAR, %x20-7E), except that the JSON-valued parameters
 *   (RFC 9396 `authorization_details`, OIDC `claims`) may carry the JSON whitespace HT, LF and CR
 *   between tokens (RFC 8259 §2) — never NUL or another control;
 * - path parameters and query strings of every endpoint: identifiers and filters, no control at all;
 * - other forms (the people side's pages) and JSON bodies and documents (registration, admin,
 *   AuthZEN, apply): no control other than HT, LF, CR in a value (free text such as a reason may
 *   break a line), none at all in a name or key.
 * Refused with `invalid_request` before any component reads the request.
 */

/** Any C0 control character or DEL (U+0000–U+001F, U+007F). */
const anyControl = /[\u0000-\u001f\u007f]/;
/** A C0 control character or DEL other than the whitespace HT, LF and CR. */
const nonWhitespaceControl = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

/** Whether `text` has any C0 control character or DEL (U+0000–U+001F, U+007F). */
export function hasControlCharacter(text: string): boolean {
  return anyControl.test(text);
}

/** Whether `text` has a C0 control character or DEL other than HT, LF and CR (free text may break lines). */
export function hasNonWhitespaceControl(text: string): boolean {
  return nonWhitespaceControl.test(text);
}

/** OAuth parameters whose values are JSON, where whitespace between tokens is legitimate. */
export const jsonValuedParameters: ReadonlySet<string> = new Set(['authorization_details', 'claims']);

/**
 * The OAuth rule for one parameter (above): what is wrong with it, or undefined. The message
 * names the parameter only when the name itself is clean.
 */
export function parameterTextProblem(name: string, value: string): string | undefined {
  if (hasControlCharacter(name)) return 'a parameter name contains a control character';
  const bad = jsonValuedParameters.has(name) ? hasNonWhitespaceControl(value) : hasControlCharacter(value);
  return bad ? `parameter ${name} contains a control character` : undefined;
}

/**
 * Parsed application/x-www-form-urlencoded parameters that remember repeats, because OAuth
 * endpoints must reject a parameter sent twice (RFC 6749 §3.1, §3.2).
 */
export class FormParameters {
  readonly #entries: Map<string, string[]>;

  constructor(body: string) {
    this.#entries = new Map();
    for (const [name, value] of new URLSearchParams(body)) {
      const values = this.#entries.get(name);
      if (values) values.push(value);
      else this.#entries.set(name, [value]);
    }
  }

  /** The value of a parameter sent once; undefined when absent or empty (RFC 6749 §3.1: empty = omitted). */
  get(name: string): string | undefined {
    const value = this.#entries.get(name)?.[0];
    return value === '' ? undefined : value;
  }

  /** Names of parameters that appear more than once. */
  repeated(): string[] {
    return [...this.#entries].filter(([, values]) => values.length > 1).map(([name]) => name);
  }

  /** Every value of a parameter that may repeat (e.g. `resource`, RFC 8707 §2). */
  all(name: string): string[] {
    return this.#entries.get(name) ?? [];
  }

  names(): string[] {
    return [...this.#entries.keys()];
  }

  /** Whether any name or value holds a control character at all: computed once, since both rules ask it first and a clean form is the usual case. */
  #anyControl: boolean | undefined;

  #hasAnyControl(): boolean {
    this.#anyControl ??= [...this.#entries].some(([name, values]) => hasControlCharacter(name) || values.some(hasControlCharacter));
    return this.#anyControl;
  }

  /** The first parameter that breaks the OAuth rule on control characters (above), or undefined. */
  controlCharacters(): string | undefined {
    if (!this.#hasAnyControl()) return undefined;
    for (const [name, values] of this.#entries) {
      for (const value of values) {
        const problem = parameterTextProblem(name, value);
        if (problem) return problem;
      }
    }
    return undefined;
  }

  /** The first parameter that breaks the free-text rule (above: no control in a name, none but HT, LF, CR in a value), or undefined. */
  freeTextControlCharacters(): string | undefined {
    if (!this.#hasAnyControl()) return undefined;
    for (const [name, values] of this.#entries) {
      if (hasControlCharacter(name)) return 'a form parameter name contains a control character';
      if (values.some(hasNonWhitespaceControl)) return `form parameter ${name} contains a control character`;
    }
    return undefined;
  }
}
