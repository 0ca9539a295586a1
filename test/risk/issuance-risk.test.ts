/**
 * The sign-in's signals carried into an issuance's assessment (src/policy/issuance-risk.ts): merged
 * with the issuance's own by signal name, scored together, and acted on.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../src/clock.ts';
import { OAuthError } from '../../src/oauth-error.ts';
import { mergeSignalHits } from '../../src/risk/assessment.ts';
import { authorizeIssuance, type Issuance } from '../../src/policy/issuance.ts';
import { acr } from '../../src/identity/acr.ts';
import { applyDocument, ordersApi, peopleAndClients, userId } from '../policy/fixture.ts';
import { testContext } from '../helpers/storage.ts';

describe("the sign-in's signals at issuance", () => {
  test('are merged with the issuance own hits, each signal once with its higher points, in first-seen order', () => {
    assert.deepEqual(
      mergeSignalHits(
        [{ signal: 'new_network', points: 15, detail: 'network 203.0.113.0/24 never seen for this client' }, { signal: 'off_hours', points: 20 }],
        [{ signal: 'new_device', points: 25 }, { signal: 'new_network', points: 30, detail: 'at sign-in' }, { signal: 'off_hours', points: 10 }],
      ),
      [{ signal: 'new_network', points: 30, detail: 'at sign-in' }, { signal: 'off_hours', points: 20 }, { signal: 'new_device', points: 25 }],
    );
  });

  test('are scored with the issuance: a risky sign-in stays risky at the token endpoint', async (t) => {
    // A Wednesday at noon UTC: within trading hours, so off_hours stays quiet.
    const { ctx } = await testContext({ t, clock: new ManualClock(Date.UTC(2026, 0, 7, 12, 0)) });
    await applyDocument(ctx, peopleAndClients);
    const issuance: Issuance = {
      subject: { type: 'User', id: await userId(ctx, 'alice') },
      clientId: 'risk-engine',
      audience: ordersApi,
      scopes: ['position:view'],
      authorizationDetails: [],
      acr: acr.password,
      requestId: 'r1',
      grantType: 'refresh_token',
    };
    const calm = await authorizeIssuance(ctx, issuance);
    assert.deepEqual(calm.risk, { score: 0, level: 'low', outcome: 'allow', signals: [] });

    const carried = await authorizeIssuance(ctx, { ...issuance, loginRisk: [{ signal: 'new_device', points: 25, detail: 'device never seen for this account' }] });
    assert.deepEqual(carried.risk, { score: 25, level: 'low', outcome: 'allow', signals: [{ signal: 'new_device', points: 25, detail: 'device never seen for this account' }] });

    const loginRisk = [{ signal: 'new_device' as const, points: 25 }, { signal: 'recent_lockout' as const, points: 30 }];
    await assert.rejects(authorizeIssuance(ctx, { ...issuance, loginRisk }), (error: OAuthError) => {
      assert.equal(error.error, 'insufficient_user_authentication');
      assert.equal(error.members?.acr_values, acr.multiFactor);
      return true;
    });
    const secondFactor = await authorizeIssuance(ctx, { ...issuance, acr: acr.multiFactor, loginRisk });
    assert.equal(secondFactor.risk?.outcome, 'step_up', 'met by the sign-in with a second factor: issued, and recorded as asked');
    await assert.rejects(authorizeIssuance(ctx, { ...issuance, acr: acr.phishingResistant, loginRisk: [...loginRisk, { signal: 'velocity', points: 30 }] }), (error: OAuthError) => error.error === 'invalid_grant');
  });
});
