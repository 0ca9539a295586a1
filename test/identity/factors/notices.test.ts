import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { acr, amr } from '../../../src/identity/acr.ts';
import { certificateLevel } from '../../../src/identity/certificates/login.ts';
import { marksNoticesSeen } from '../../../src/identity/factors/notices.ts';

// A notice (a recovery code was used to sign in as the person) is marked seen only by a session
// the person made with their own authenticator app or passkey — not a smart card's, which a
// certificate authority issues and revokes (src/identity/factor-changes.ts rule 5).

describe('account notices', () => {
  test('are marked seen by a session made with the authenticator app or a passkey', () => {
    assert.equal(marksNoticesSeen({ acr: acr.multiFactor, amr: [amr.password, amr.oneTimePassword, amr.multiFactor] }), true);
    assert.equal(marksNoticesSeen({ acr: acr.phishingResistant, amr: [amr.hardwareKey, amr.user, amr.multiFactor] }), true);
  });

  test('are kept by a session made with a password alone, a recovery code, or through an upstream identity provider at any level', () => {
    assert.equal(marksNoticesSeen({ acr: acr.password, amr: [amr.password] }), false);
    assert.equal(marksNoticesSeen({ acr: acr.multiFactor, amr: [amr.password, amr.multiFactor, amr.recoveryCode] }), false);
    // The upstream's own amr is passed on when its declaration trusts it (src/federation/upstream/assurance.ts).
    assert.equal(marksNoticesSeen({ acr: acr.phishingResistant, amr: [amr.hardwareKey, amr.user, amr.multiFactor, amr.upstream] }), false);
    assert.equal(marksNoticesSeen({ acr: acr.multiFactor, amr: [amr.oneTimePassword, amr.multiFactor], assurance: { provider: 'fund-a', source: 'https://idp.fund-a.example' } }), false);
  });

  test('are kept by a session made with a smart card, though it reaches the hardware phishing-resistant level', () => {
    const card = certificateLevel(true);
    assert.equal(card.acr, acr.phishingResistantHardware);
    assert.equal(marksNoticesSeen(card), false);
  });
});
