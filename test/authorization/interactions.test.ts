import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { findActiveGrant } from '../../src/authorization/consent.ts';
import { decideConsent, loadInteraction, nextStep, recordAuthentication } from '../../src/authorization/interactions.ts';
import { codeFlowFixture } from './fixture.ts';

function interactionId(location: URL | undefined): string {
  assert.ok(location?.pathname.startsWith('/interaction/'), `to the people side: ${location?.href}`);
  return location!.pathname.split('/').pop()!;
}

describe('interactions read once per request', () => {
  test('refuses a decision when someone logged in after the interaction was read in this request, and writes nothing', async (t) => {
    const f = await codeFlowFixture(t);
    const alice = await f.signIn('alice');
    const bob = await f.signIn('bob');
    const id = interactionId((await f.authorize(f.request('web-app'))).location);
    const read = (await loadInteraction(f.ctx, id))!;
    assert.equal(read.authentication, undefined);
    // Another tab signs Alice in on the same interaction after this request read it.
    assert.equal(await recordAuthentication(f.ctx, id, alice.authentication), true);
    await assert.rejects(decideConsent(f.ctx, read, bob.authentication, true), /unknown, expired or already completed/);
    assert.equal(await findActiveGrant(f.ctx, bob.userId, 'web-app'), undefined, 'the grant rolled back with the decision');
    assert.equal((await f.auditEvents('consent.granted')).length, 0);
  });

  test('uses the grant read with the interaction for the person who logged in during it', async (t) => {
    const f = await codeFlowFixture(t);
    const { person } = await f.authorizeAndApprove({});
    const id = interactionId((await f.authorize(f.request('web-app', { prompt: 'login' }))).location);
    assert.equal(await recordAuthentication(f.ctx, id, person.authentication), true);
    const read = (await loadInteraction(f.ctx, id))!;
    assert.deepEqual(await nextStep(f.ctx, read, undefined), { step: 'done' }, 'the existing grant covers the request, without a session');
  });

  test('records no login on an interaction that ended, and says so', async (t) => {
    const f = await codeFlowFixture(t);
    const alice = await f.signIn('alice');
    const id = interactionId((await f.authorize(f.request('web-app'))).location);
    f.clock.advance(601_000);
    assert.equal(await recordAuthentication(f.ctx, id, alice.authentication), false);
  });
});
