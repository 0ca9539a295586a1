import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { acr } from '../../../src/identity/acr.ts';
import { verifyCertificateLogin } from '../../../src/identity/certificates/login.ts';
import type { SignInRisk } from '../../../src/identity/login-risk.ts';
import { upsertUser } from '../../../src/identity/users.ts';
import type { RiskAssessment } from '../../../src/risk/assessment.ts';
import { hardwarePolicy, makePersonPki, softwarePolicy } from '../../helpers/person-pki.ts';
import { testContext } from '../../helpers/storage.ts';
import { applyPersonCertificates, lastEvent } from './fixture.ts';

// verifyCertificateLogin and the sign-in's risk (docs/certificate-sign-in.md "Levels"): a risk
// step-up asks for a second factor, which a smart card is (the card and its PIN) and a software
// certificate is not; a denial refuses either.

async function harness(t: TestContext) {
  const { ctx } = await testContext({ t });
  const pki = await makePersonPki(t);
  await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), { username: 'alice', email: 'alice@broker.example.com' }, { keep: true }));
  await applyPersonCertificates(ctx, {
    authorities: [{ name: 'broker-smartcards', certificates: pki.caPem, hardware_policy_oids: [hardwarePolicy], revocation: { method: 'crl', allow_private_network: true }, mapping: [{ certificate: 'san_email', person: 'email' }] }],
  });
  const card = new X509Certificate(pki.issue('card', { san: 'email:alice@broker.example.com', policies: [hardwarePolicy] }).cert);
  const soft = new X509Certificate(pki.issue('soft', { san: 'email:alice@broker.example.com', policies: [softwarePolicy] }).cert);
  /** A sign-in with `certificate`, its risk assessed as `outcome`. */
  const signIn = (certificate: X509Certificate, outcome: RiskAssessment['outcome']) => {
    const observed: string[] = [];
    const risk: SignInRisk = {
      address: '192.0.2.10',
      assess: async () => ({ score: outcome === 'allow' ? 0 : outcome === 'step_up' ? 50 : 90, level: outcome === 'allow' ? 'low' : 'high', outcome, signals: [{ signal: 'new_device', points: 50 }] }) as RiskAssessment,
      observe: async (userId) => (observed.push(userId), { landed: Promise.resolve() }),
      setDeviceCookie: undefined,
    };
    const attempt = verifyCertificateLogin(ctx, { presented: { kind: 'certificate', certificate, via: 'tls' }, sourceAddress: '192.0.2.10', risk }, () => 'the session');
    return attempt.then((outcome) => ({ outcome, observed }));
  };
  return { ctx, signIn, card, soft };
}

test('a risk step-up is met by a smart card, whose sign-in carries the assessment', async (t) => {
  const { ctx, signIn, card } = await harness(t);
  const { outcome, observed } = await signIn(card, 'step_up');
  assert.ok(outcome.ok);
  assert.equal(outcome.acr, acr.phishingResistantHardware);
  assert.equal(outcome.value, 'the session');
  assert.equal(observed.length, 1, 'the signals remember this sign-in');
  assert.equal(((await lastEvent(ctx, 'user.login_succeeded')).details.risk as { outcome: string }).outcome, 'step_up');
});

test('a risk step-up refuses a software certificate, and a risk denial refuses a smart card too', async (t) => {
  const { ctx, signIn, card, soft } = await harness(t);
  const stepped = await signIn(soft, 'step_up');
  assert.deepEqual(stepped.outcome, { ok: false, reason: 'risk_step_up_unavailable' });
  assert.deepEqual(stepped.observed, [], 'nothing remembered of a refusal');
  const denied = await signIn(card, 'deny');
  assert.deepEqual(denied.outcome, { ok: false, reason: 'risk_denied' });
  const event = await lastEvent(ctx, 'user.login_failed');
  assert.deepEqual(event.decision?.reasons, ['risk_denied']);
  assert.equal((event.details.risk as { outcome: string }).outcome, 'deny');
  assert.ok(event.subject, 'the person is named once the certificate mapped to them');
  // As for a password or a passkey: `risk.denied`, and its alert, with the refusal.
  const riskDenied = await lastEvent(ctx, 'risk.denied');
  assert.deepEqual([riskDenied.subject, riskDenied.details.method], [event.subject, 'certificate']);
  const alerts = await ctx.storage.db.selectFrom('alerts').select(['type']).where('type', '=', 'risk.denied').execute();
  assert.equal(alerts.length, 2, 'one alert for each refusal (the step-up one and the denial)');
});
