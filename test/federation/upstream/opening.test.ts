import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Authentication } from '../../../src/authorization/contract.ts';
import { upstreamOpening } from '../../../src/federation/upstream/opening.ts';
import { acr } from '../../../src/identity/acr.ts';

const signedIn = (level: string): Authentication => ({ userId: 'u-1', sessionId: 's-1', authTime: 1_800_000_000, acr: level, amr: ['pwd'] });

test('a first sign-in goes through an upstream, asked what the request asks and nothing more', () => {
  assert.deepEqual(upstreamOpening({ step: 'login', reason: 'no_session' }, undefined, undefined), { ok: true, ask: undefined });
  assert.deepEqual(upstreamOpening({ step: 'login', reason: 'no_session', acr: acr.multiFactor }, undefined, { maxAge: 300 }), { ok: true, ask: { maxAge: 300 } });
  assert.deepEqual(upstreamOpening({ step: 'login', reason: 'prompt_login' }, signedIn(acr.password), { login: true }), { ok: true, ask: { login: true } });
});

test('a step-up never goes through an upstream; nor does a request with nothing to sign in for', () => {
  assert.deepEqual(upstreamOpening({ step: 'login', reason: 'acr', acr: acr.multiFactor }, signedIn(acr.password), undefined), { ok: false, refused: 'step_up' });
  assert.deepEqual(upstreamOpening({ step: 'login', reason: 'acr', acr: acr.multiFactor, voluntary: true }, signedIn(acr.password), { login: true }), { ok: false, refused: 'step_up' });
  assert.deepEqual(upstreamOpening({ step: 'consent', consent: { clientId: 'c', clientName: 'C', resources: [], authorizationDetails: [], lines: [] } }, signedIn(acr.password), undefined), { ok: false, refused: 'no_sign_in' });
  assert.deepEqual(upstreamOpening({ step: 'done' }, signedIn(acr.password), undefined), { ok: false, refused: 'no_sign_in' });
});

test('a requirement’s max age is asked of the upstream with the request’s, the stricter winning', () => {
  assert.deepEqual(upstreamOpening({ step: 'login', reason: 'max_age', maxAge: 60 }, signedIn(acr.password), undefined), { ok: true, ask: { maxAge: 60 } });
  assert.deepEqual(upstreamOpening({ step: 'login', reason: 'max_age', maxAge: 60 }, signedIn(acr.password), { maxAge: 600 }), { ok: true, ask: { maxAge: 60 } });
  assert.deepEqual(upstreamOpening({ step: 'login', reason: 'max_age', maxAge: 600 }, signedIn(acr.password), { maxAge: 30, login: true }), { ok: true, ask: { maxAge: 30, login: true } });
});

test('a person present below the level a re-authentication asks is lifted through an upstream only by a renewed authentication there', () => {
  assert.deepEqual(upstreamOpening({ step: 'login', reason: 'max_age', acr: acr.multiFactor }, signedIn(acr.password), { maxAge: 100 }), { ok: true, ask: { maxAge: 100, login: true, because: 'step_up' } });
  // prompt=login already asks it: no cause of Clearance's own.
  assert.deepEqual(upstreamOpening({ step: 'login', reason: 'prompt_login', acr: acr.multiFactor }, signedIn(acr.password), { login: true }), { ok: true, ask: { login: true } });
  // At or above the level: nothing more than the request's freshness.
  assert.deepEqual(upstreamOpening({ step: 'login', reason: 'max_age', acr: acr.multiFactor }, signedIn(acr.phishingResistant), { maxAge: 100 }), { ok: true, ask: { maxAge: 100 } });
});
