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
}
