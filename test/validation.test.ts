import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { controlCharacterProblems } from '../src/validation.ts';

// The rule as written in src/validation.ts: a key with any C0 control or DEL, a string value with
// one other than HT, LF, CR. The reference visits every key and string recursively.
const keyRefused = (key: string) => /[\u0000-\u001f\u007f]/.test(key);
const valueRefused = (text: string) => /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(text);
function refusedSomewhere(value: unknown): boolean {
  if (typeof value === 'string') return valueRefused(value);
  if (Array.isArray(value)) return value.some(refusedSomewhere);
  if (typeof value === 'object' && value !== null) return Object.entries(value).some(([key, item]) => keyRefused(key) || refusedSomewhere(item));
  return false;
}

test('finds a control character wherever the rule puts one, and nothing in a document without', () => {
  const text = fc.string({ unit: fc.oneof(fc.constantFrom('\u0000', '\t', '\n', '\r', '\u000b', '\u001f', '\u007f'), fc.string({ minLength: 1, maxLength: 1 })), maxLength: 6 });
  const document = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small' }, text, fc.integer(), fc.boolean(), fc.constant(null), tie('array'), tie('object')),
    array: fc.array(tie('value'), { maxLength: 4 }),
    object: fc.dictionary(text, tie('value'), { maxKeys: 4 }),
  })).value;
  fc.assert(
    fc.property(document, (doc) => {
      assert.equal(controlCharacterProblems(doc).length > 0, refusedSomewhere(doc), JSON.stringify(doc));
    }),
    { numRuns: 3000 },
  );
});

test('names the path of a control character deep in a body, and finds none in a clean body nested 10,000 deep', () => {
  let clean: unknown = 'free text\twith\nlines';
  for (let i = 0; i < 10_000; i++) clean = { next: [clean] };
  assert.deepEqual(controlCharacterProblems(clean), []);
  const body = { order: { legs: [{ note: 'ok' }, { note: 'bad\u0000' }] }, ['k\u0001ey']: 1 };
  assert.deepEqual(controlCharacterProblems(body), [
    { path: '', message: 'has a key that contains a control character' },
    { path: 'order.legs[1].note', message: 'contains a control character' },
  ]);
});
