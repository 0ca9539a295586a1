/**
 * HTML built from tagged templates that escape every interpolated value unless it is already
 * `SafeHtml` (made by this template). There is no other way to put text into a page, so a value
 * cannot be forgotten unescaped:
 *
 *   html`<p>Signed in as ${user.name}</p>`          // user.name is escaped
 *   html`<ul>${lines.map((l) => html`<li>${l}</li>`)}</ul>`
 */
export class SafeHtml {
  readonly #text: string;
  constructor(text: string) {
    this.#text = text;
  }
  toString(): string {
    return this.#text;
  }
}

export type HtmlValue = SafeHtml | string | number | boolean | null | undefined | readonly HtmlValue[];

const escapes: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

/**
 * Escapes text for an HTML text node or a quoted attribute value (HTML §13.1.2.3 and §13.5):
 * & < > " ' and `. Attribute values in our templates are always double-quoted.
 */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => escapes[c]!);
}

function render(value: HtmlValue): string {
  if (value instanceof SafeHtml) return value.toString();
  if (Array.isArray(value)) return value.map(render).join('');
  // null, undefined and false render nothing, so `${cond && html`...`}` works.
  if (value === null || value === undefined || value === false) return '';
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): SafeHtml {
  let out = strings[0]!;
  values.forEach((value, i) => {
    out += render(value) + strings[i + 1]!;
  });
  return new SafeHtml(out);
}
