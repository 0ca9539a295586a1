import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assuranceOf } from '../../../src/federation/upstream/assurance.ts';
import { acr } from '../../../src/identity/acr.ts';

// The source of assurance of an upstream sign-in: what its acr stands for, no more than it is
// trusted for, and its amr only when its acr was believed.

const fund = { id: 'fund-a', issuer: 'https://idp.fund-a.example', acr: { map: { 'urn:fund:mfa': acr.multiFactor, 'urn:fund:phr': acr.phishingResistant }, max: acr.multiFactor } };
const upstream = 'urn:clearance:amr:upstream';

test('a declared acr within the trust is believed, with the upstream’s registered amr values', () => {
  const a = assuranceOf(fund, { acr: 'urn:fund:mfa', amr: ['pwd', 'otp', 'made-up'] });
  assert.deepEqual([a.acr, a.amr, a.capped, a.source], [acr.multiFactor, ['pwd', 'otp', upstream], false, fund.issuer]);
});

test('a declared acr above the trust is capped, and none of its amr is passed on', () => {
  const a = assuranceOf(fund, { acr: 'urn:fund:phr', amr: ['hwk', 'user'] });
  assert.deepEqual([a.acr, a.amr, a.capped], [acr.multiFactor, [upstream], true]);
});

test('an undeclared or absent acr is a password’s level, and its amr is not believed either', () => {
  for (const asserted of [{ acr: 'urn:other:mfa', amr: ['mfa', 'hwk'] }, { amr: ['mfa', 'hwk'] }]) {
    const a = assuranceOf(fund, asserted);
    assert.deepEqual([a.acr, a.amr], [acr.password, [upstream]]);
  }
});

test('an acr named like an object’s own property maps to nothing', () => {
  for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
    const a = assuranceOf(fund, { acr: name, amr: ['hwk', 'mfa'] });
    assert.deepEqual([a.acr, a.amr], [acr.password, [upstream]], name);
  }
});

test('what was asserted is kept bounded for the audit event', () => {
  const a = assuranceOf(fund, { acr: 'x'.repeat(5000), amr: Array.from({ length: 50 }, (_, i) => `${i}`.repeat(100)) });
  assert.equal(a.asserted.acr!.length, 200);
  assert.equal(a.asserted.amr.length, 10);
  assert.ok(a.asserted.amr.every((v) => v.length <= 64));
});
