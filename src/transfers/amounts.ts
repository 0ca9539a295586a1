/**
 * Transfer amounts as integers of micro-units (10⁻⁶ of the asset's unit), so thresholds and rolling
 * totals are compared exactly (bigint here, integers below 2⁵³ in Redis's Lua, bigint columns in the
 * database) — never as floating point.
 *
 * Six decimals are finer than any currency's minor unit and than any amount a firm sets a limit
 * in; a crypto amount with more decimals (ETH has 18) is rounded UP to the next micro-unit when it
 * is counted, so a total is never understated. A configured limit must fit exactly (at most six
 * decimals) and stay below `maxLimit`, which keeps every sum Redis computes exact.
 */

export const microDecimals = 6;
const scale = 10n ** BigInt(microDecimals);

/** The largest configurable limit: 9,000,000,000 units (9·10¹⁵ micro-units, below 2⁵³). */
export const maxLimit = 9_000_000_000n * scale;

const decimal = /^(\d{1,30})(?:\.(\d{1,60}))?$/;

/**
 * A positive decimal (string, or a JSON number) in micro-units. `exact`: more than six decimals, or
 * above `maxLimit`, is undefined (configuration); `up`: rounded up to the next micro-unit, any size
 * (a transfer's amount). Undefined when it is not a plain non-negative decimal.
 */
export function parseAmount(value: string | number, mode: 'exact' | 'up'): bigint | undefined {
  let text: string;
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) return undefined;
    // A JSON number: at most 20 fraction digits survive toFixed; a transfer amount that small is rounded up below anyway.
    text = value >= 1e21 ? BigInt(Math.round(value)).toString() : value.toFixed(20);
  } else text = value;
  const match = decimal.exec(text);
  if (!match) return undefined;
  const whole = BigInt(match[1]!);
  const fraction = match[2] ?? '';
  const kept = fraction.slice(0, microDecimals).padEnd(microDecimals, '0');
  const dropped = fraction.slice(microDecimals);
  if (mode === 'exact' && /[1-9]/.test(dropped) && typeof value === 'string') return undefined;
  let micro = whole * scale + BigInt(kept);
  if (mode === 'up' && /[1-9]/.test(dropped)) micro += 1n;
  if (mode === 'exact' && micro > maxLimit) return undefined;
  return micro;
}

/** Micro-units as a plain decimal string of the asset's units (`2500`, `0.5`). */
export function formatAmount(micro: bigint): string {
  const whole = micro / scale;
  const fraction = (micro % scale).toString().padStart(microDecimals, '0').replace(/0+$/, '');
  return fraction ? `${whole}.${fraction}` : whole.toString();
}
