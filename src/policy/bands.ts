/**
 * The engine remembers Cedar's answer per request (engine.ts `evaluate`). Orders differ in their
 * notional far more often than in anything else, and a policy set reads a notional only against
 * its limits: `context.notional > 1000000`. Two notionals on the same side of every such limit
 * (and equal to the same ones) are alike to those policies: Cedar gives them the same answer, the
 * same reasons and the same errors. So such an attribute is remembered by its band, not its value.
 *
 * An attribute is banded only where the analysis (slicing.ts `bandsOf`) finds that every policy
 * whose scope can match the request's shape reads it in nothing but comparisons (`<`, `<=`, `>`,
 * `>=`, `==`, `!=`) with integer literals or with paths into the context (a mandate's
 * `context.mandate.max_notional`), and no policy reads the context whole; only policies whose
 * scope can match are ever evaluated (Cedar checks the scope first). A path's value stays in the
 * key (its first attribute is never banded), so two requests of one key have the same bounds; where
 * it is an integer it is a bound, and where it is anything else (absent, a string) the comparison
 * errs or is false whatever the banded value. A comparison between Longs cannot err. Only a safe
 * integer is banded: any other value (a string, a fraction, a record) stays in the key as it is,
 * so a value Cedar would refuse is remembered only for itself.
 */

import { isPlainObject, type Band } from './slicing.ts';

/**
 * The memory key of a Cedar call: its JSON, with each banded context attribute that holds a safe
 * integer left out of it and named with its band after it. JSON.stringify escapes every control
 * character, so the NUL that starts each band cannot occur in the JSON before it.
 */
export function bandedKey(call: { context: unknown }, bands: ReadonlyMap<string, Band> | undefined): string {
  if (!bands?.size || !isPlainObject(call.context)) return JSON.stringify(call);
  let context: Record<string, unknown> | undefined;
  let suffix = '';
  for (const [name, band] of bands) {
    const value = call.context[name];
    if (!Number.isSafeInteger(value) || !Object.hasOwn(call.context, name)) continue;
    context ??= { ...call.context };
    // Left out of the JSON (as JSON.stringify leaves out undefined), without `delete`, which
    // would turn the copy into a slow dictionary object.
    context[name] = undefined;
    suffix += `\u0000${name}:${bandOf(value as number, boundsOf(band, call.context))}`;
  }
  return context ? JSON.stringify({ ...call, context }) + suffix : JSON.stringify(call);
}

/** A band's literals, and the integers its paths hold in this context. */
function boundsOf(band: Band, context: Record<string, unknown>): readonly number[] {
  if (!band.paths.length) return band.literals;
  const bounds = [...band.literals];
  for (const path of band.paths) {
    let value: unknown = context;
    for (const name of path) value = isPlainObject(value) && Object.hasOwn(value, name) ? value[name] : undefined;
    if (Number.isSafeInteger(value)) bounds.push(value as number);
  }
  return bounds;
}

/**
 * Which band of `bounds` (in any order) `value` falls in: twice the number of bounds below it, plus
 * one when a bound equals it. Two values of one band have the same bounds below them and the same
 * next bound, which both equal or both are below: they compare alike with every bound (a bound
 * given twice, a path's value equal to a literal, shifts the numbers and not the grouping).
 */
export function bandOf(value: number, bounds: readonly number[]): number {
  let below = 0;
  let equal = 0;
  for (const bound of bounds) {
    if (bound < value) below++;
    else if (bound === value) equal = 1;
  }
  return 2 * below + equal;
}
