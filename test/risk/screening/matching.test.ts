import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ScreeningListError, parseScreeningList } from '../../../src/risk/screening/list.ts';
import { ScreeningIndex, type ScreeningSubject } from '../../../src/risk/screening/matcher.ts';
import { datesAgree, nameTokens } from '../../../src/risk/screening/normalize.ts';

const example = (name: string) => readFileSync(fileURLToPath(new URL(`../../../examples/screening/${name}`, import.meta.url)));
const index = new ScreeningIndex(parseScreeningList(example('list.csv')));

/**
 * The test set of true and false matches (AMENDMENTS "Risk, limits, KYC/AML"): each subject with
 * the truth — the list entry it really is, or null for someone else — so that what the matcher
 * says can be counted as a true or false positive or negative. The set holds the hard cases on
 * purpose: a namesake without a date of birth, a partial name shared by someone else, a German
 * transliteration and an initial, which the rules (docs/risk.md) do not catch.
 */
const cases: { name: string; subject: ScreeningSubject; truth: string | null }[] = [
  // The same people and entities, written otherwise.
  { name: 'a partial name (middle name left out) with the same date of birth', subject: { type: 'person', name: 'Ivan Petrov', dateOfBirth: '1961-07-14' }, truth: 'SAN-0001' },
  { name: 'reordered and in capitals', subject: { type: 'person', name: 'PETROV Ivan Ivanovich' }, truth: 'SAN-0001' },
  { name: 'an alias', subject: { type: 'person', name: 'Iwan Petroff' }, truth: 'SAN-0001' },
  { name: 'without diacritics or punctuation, a date of birth within the listed month', subject: { type: 'person', name: 'Jose Maria Nunez Garcia', dateOfBirth: '1970-03-02' }, truth: 'SAN-0002' },
  { name: 'diacritics and punctuation moved around', subject: { type: 'person', name: 'José-María NÚÑEZ GARCÍA' }, truth: 'SAN-0002' },
  { name: 'a typographic apostrophe and a diaeresis dropped', subject: { type: 'person', name: 'Zoe O’Connor Smythe', dateOfBirth: '1975-06-01' }, truth: 'PEP-0001' },
  { name: 'full-width letters (NFKC) and a comma', subject: { type: 'person', name: 'ＭÜＬＬＥＲ, Hans Jürgen' }, truth: 'SAN-0004' },
  { name: 'a common name with the same date of birth', subject: { type: 'person', name: 'Li Wei', dateOfBirth: '1980-01-01' }, truth: 'SAN-0003' },
  { name: 'the same common name reordered', subject: { type: 'person', name: 'WEI Li', dateOfBirth: '1980-01-01' }, truth: 'SAN-0003' },
  { name: 'a German transliteration (ue for ü): not caught', subject: { type: 'person', name: 'Hans-Juergen Mueller', dateOfBirth: '1955-11-30' }, truth: 'SAN-0004' },
  { name: 'an initial for the first name: not caught', subject: { type: 'person', name: 'I. Petrov', dateOfBirth: '1961-07-14' }, truth: 'SAN-0001' },
  { name: 'an entity with another legal form spelled out', subject: { type: 'entity', name: 'FICTITIOUS SHIPPING HOLDINGS LIMITED' }, truth: 'SAN-E001' },
  { name: 'an entity by its LEI under another name', subject: { type: 'entity', name: 'FSH Holdings Group', lei: '5299000FICTSHIP00137' }, truth: 'SAN-E001' },
  { name: 'an entity by an alias written with full stops', subject: { type: 'entity', name: 'EETC' }, truth: 'SAN-E002' },
  // The same names disguised: invisible characters inside words, look-alike Cyrillic and Greek letters.
  { name: 'a zero-width space and a soft hyphen inside the words', subject: { type: 'person', name: 'Iv\u200Ban Pe\u00ADtrov', dateOfBirth: '1961-07-14' }, truth: 'SAN-0001' },
  { name: 'a word joiner inside a word and a byte order mark after it', subject: { type: 'entity', name: 'Fictitious Ship\u2060ping Holdings Ltd\uFEFF' }, truth: 'SAN-E001' },
  { name: 'a Cyrillic а for a Latin a', subject: { type: 'entity', name: 'Ex\u0430mple Embargoed Trading LLC' }, truth: 'SAN-E002' },
  { name: 'Cyrillic capitals І, Р and Е for Latin ones', subject: { type: 'person', name: '\u0406VAN \u0420\u0415TROV' }, truth: 'SAN-0001' },
  { name: 'a Greek ο for a Latin o', subject: { type: 'entity', name: 'Fictitious Shipping H\u03BFldings' }, truth: 'SAN-E001' },
  // Someone else.
  { name: 'the same common name with a conflicting date of birth', subject: { type: 'person', name: 'Li Wei', dateOfBirth: '1992-05-05' }, truth: null },
  { name: 'a similar but different surname', subject: { type: 'person', name: 'Ivan Petrovsky' }, truth: null },
  { name: 'similar tokens, another person', subject: { type: 'person', name: 'Petra Ivanova' }, truth: null },
  { name: 'a namesake held apart by the date of birth', subject: { type: 'person', name: 'Hans Müller', dateOfBirth: '1990-02-02' }, truth: null },
  { name: 'a namesake without a date of birth (flagged for a human)', subject: { type: 'person', name: 'Hans Müller' }, truth: null },
  { name: 'a shorter name shared by someone else, without a date of birth', subject: { type: 'person', name: 'Maria Garcia' }, truth: null },
  { name: 'an entity of the same name with a conflicting LEI', subject: { type: 'entity', name: 'Fictitious Shipping Holdings Ltd', lei: '5299000FICTSHIP00234' }, truth: null },
  { name: 'an entity sharing two words of the name', subject: { type: 'entity', name: 'Fictitious Shipping Agency Ltd' }, truth: null },
  { name: 'a person not on the list', subject: { type: 'person', name: 'John Smith', dateOfBirth: '1980-01-01' }, truth: null },
  { name: 'a single listed token never matches a longer name', subject: { type: 'entity', name: 'EETC Logistics' }, truth: null },
];

describe('sanctions and PEP screening: name matching', () => {
  test('the test set of true and false matches has 2 false positives and 2 false negatives, each the known hard case', () => {
    const outcomes = cases.map((c) => {
      const hits = index.match(c.subject).map((h) => h.entry.id);
      const found = c.truth !== null && hits.includes(c.truth);
      const wrong = hits.filter((id) => id !== c.truth);
      return { ...c, hits, kind: c.truth === null ? (wrong.length > 0 ? 'FP' : 'TN') : found ? (wrong.length > 0 ? 'TP+FP' : 'TP') : 'FN' };
    });
    const count = (kind: string) => outcomes.filter((o) => o.kind.includes(kind)).length;
    const summary = { cases: cases.length, truePositives: count('TP'), trueNegatives: count('TN'), falsePositives: count('FP'), falseNegatives: count('FN') };
    // Reported in docs/risk.md: printed so a change of the rules shows its effect.
    console.log(`screening test set: ${JSON.stringify(summary)}`);
    for (const o of outcomes.filter((o) => o.kind !== 'TP' && o.kind !== 'TN')) console.log(`  ${o.kind}: ${o.name} → ${o.hits.join(', ') || 'no hit'}`);
    assert.deepEqual(summary, { cases: 29, truePositives: 17, trueNegatives: 8, falsePositives: 2, falseNegatives: 2 });
    assert.deepEqual(
      outcomes.filter((o) => o.kind === 'FP' || o.kind === 'FN').map((o) => [o.kind, o.name]),
      [
        ['FN', 'a German transliteration (ue for ü): not caught'],
        ['FN', 'an initial for the first name: not caught'],
        ['FP', 'a namesake without a date of birth (flagged for a human)'],
        ['FP', 'a shorter name shared by someone else, without a date of birth'],
      ],
    );
  });

  test('says what matched: the name or an alias, the LEI, and the date of birth when both are known', () => {
    assert.deepEqual(index.match({ type: 'person', name: 'Ivan Petrov', dateOfBirth: '1961-07-14' }).map((h) => [h.entry.id, h.matchedOn]), [['SAN-0001', ['name', 'alias', 'date_of_birth']]]);
    assert.deepEqual(index.match({ type: 'person', name: 'Iwan Petroff' }).map((h) => h.matchedOn), [['alias']]);
    assert.deepEqual(index.match({ type: 'entity', name: 'Fictitious Shipping Holdings', lei: '5299000FICTSHIP00137' }).map((h) => h.matchedOn), [['lei', 'name']]);
    // People are never matched against entities, nor the other way round.
    assert.deepEqual(index.match({ type: 'entity', name: 'Li Wei' }), []);
    assert.deepEqual(index.match({ type: 'person', name: 'Fictitious Shipping Holdings' }), []);
  });

  test('normalises names by NFKC, case folding, diacritics, punctuation and token order', () => {
    assert.deepEqual(nameTokens('Müller, Hans-Jürgen', 'person'), ['hans', 'jurgen', 'muller']);
    assert.deepEqual(nameTokens('ＭＵＬＬＥＲ hans JÜRGEN', 'person'), ['hans', 'jurgen', 'muller']);
    assert.deepEqual(nameTokens('Straße Łukasz Ørsted', 'person'), ['lukasz', 'orsted', 'strasse']);
    assert.deepEqual(nameTokens("O'Brien J.P.", 'person'), ['jp', 'obrien']);
    assert.deepEqual(nameTokens('The Example Trading Company Ltd.', 'entity'), ['example', 'trading']);
    assert.deepEqual(nameTokens('Ltd', 'entity'), ['ltd']);
    // Invisible characters are removed, never a separator: U+200B, U+200D, U+00AD, U+2060, U+FEFF, U+202E.
    assert.deepEqual(nameTokens('Iv\u200Dan Pe\u00ADtr\u200Bov\uFEFF', 'person'), ['ivan', 'petrov']);
    assert.deepEqual(nameTokens('Fictitious Ship\u2060ping \u202EHoldings', 'entity'), ['fictitious', 'holdings', 'shipping']);
    // Look-alike Cyrillic and Greek letters fold to Latin, in either case; Cyrillic spellings still compare alike.
    assert.deepEqual(nameTokens('Ex\u0430mple \u0420\u0415TROV \u0399\u03BFnian', 'person'), ['example', 'ionian', 'petrov']);
    assert.deepEqual(nameTokens('ИВАН ПЁТР', 'person'), nameTokens('Иван Пётр', 'person'));
    assert.deepEqual(nameTokens('İvan Petrov\u00A0Jr', 'person'), ['ivan', 'jr', 'petrov']);
    assert.equal(datesAgree('1970', '1970-03-12'), true);
    assert.equal(datesAgree('1970-03', '1971-03-12'), false);
    assert.equal(datesAgree(undefined, '1971-03-12'), true);
  });
});

describe('the screening list file', () => {
  test('reads the CSV and the JSON example alike, with a version digest of the file and one of each entry', () => {
    const csv = parseScreeningList(example('list.csv'));
    const json = parseScreeningList(example('list.json'));
    assert.equal(csv.entries.length, 7);
    assert.deepEqual(
      csv.entries.map(({ digest, ...e }) => ({ ...e, digest: digest.length })),
      json.entries.map(({ digest, ...e }) => ({ ...e, digest: digest.length })),
    );
    assert.deepEqual(csv.entries.map((e) => e.digest), json.entries.map((e) => e.digest), 'the same entry has the same digest in either format');
    assert.notEqual(csv.digest, json.digest, 'the list version is the file');
    assert.deepEqual(csv.entries[0]!.aliases, ['Petrov, Ivan', 'Iwan Petroff']);
  });

  test('refuses a whole file with an invalid entry, naming the problems (never half-loaded)', () => {
    const bad = Buffer.from('id,type,name,lei,date_of_birth,list\nA,person,Ann Example,,1970-13-01,sanctions\nB,vessel,Boat,,,sanctions\nA,entity,Co,5299000FICTSHIP00138,,sanctions\nC,person,,,,PEP\n');
    assert.throws(() => parseScreeningList(bad), (error: unknown) => {
      assert.ok(error instanceof ScreeningListError);
      assert.match(error.message, /line 2: date_of_birth must be YYYY, YYYY-MM or YYYY-MM-DD/);
      assert.match(error.message, /line 3: type must be person or entity/);
      assert.match(error.message, /line 4: lei must be a valid LEI/);
      return true;
    });
    assert.throws(() => parseScreeningList(Buffer.from('id,name,colour\n')), /unknown column\(s\) colour/);
    assert.throws(() => parseScreeningList(Buffer.from('{"entries": {}}')), /must be a JSON array of entries/);
    assert.throws(() => parseScreeningList(Buffer.from('id,type,name,list\n"A,person,x,sanctions\n')), /unterminated quoted field/);
  });
});
