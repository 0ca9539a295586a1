/**
 * The one reader of the CLI's whole-number options (`--overlap`, `--workers`, `--root-days`,
 * `--uses`, `--ttl`, `--last`, `--tree-size` ...): digits only, within the option's stated range.
 * `Number()` is not used on its own: it reads '', ' 5', '1e3', '0x10' and '5.0' as numbers, and an
 * operator's typo would then run with a value they never meant.
 */

/** A mistake in the invocation itself (exit 2, wrong usage), said in one line. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A whole-number option and the values it takes. */
export interface WholeNumberOption {
  /** As the operator types it, e.g. `--overlap`. */
  flag: `--${string}`;
  min: number;
  /** At most Number.MAX_SAFE_INTEGER; that maximum is said as "or more". */
  max: number;
  /** What it counts, e.g. `seconds`, `days`. */
  unit?: string;
  /** Said after the range, e.g. `as CLEARANCE_KEY_OVERLAP`. */
  note?: string;
}

/** What the option takes, in words: `a whole number of seconds, 0 to 2592000`. */
export function describeWholeNumber(option: WholeNumberOption): string {
  const range = option.max >= Number.MAX_SAFE_INTEGER ? `${option.min} or more` : `${option.min} to ${option.max}`;
  return `a whole number${option.unit ? ` of ${option.unit}` : ''}, ${range}${option.note ? ` (${option.note})` : ''}`;
}

/**
 * The value of a whole-number option, or undefined when it was not given. Throws UsageError,
 * naming the flag, what it takes and what was given, for anything but ASCII digits within the
 * range: no sign, space, exponent, hexadecimal, fraction or empty string.
 */
export function wholeNumber(option: WholeNumberOption, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const value = /^[0-9]+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < option.min || value > option.max) {
    throw new UsageError(`${option.flag} must be ${describeWholeNumber(option)}, not ${JSON.stringify(raw)}`);
  }
  return value;
}
