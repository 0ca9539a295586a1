/**
 * The issuance and evaluation signals (src/risk/signals), each on its own: when it fires, when it
 * stays quiet, and what it remembers — with an injected clock, on every dialect (the sightings are
 * in the database).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Context } from '../../src/context.ts';
import type { SignalHit } from '../../src/risk/assessment.ts';
import { assessRisk, observeRisk, type RiskFacts, type RiskSignal } from '../../src/risk/engine.ts';
import { defaultRiskSettings, type RiskSettings } from '../../src/risk/settings.ts';
import { concurrentNetworks, notePresentation } from '../../src/risk/signals/concurrent-networks.ts';
import { deepChain } from '../../src/risk/signals/deep-chain.ts';
import { exchangeBurst } from '../../src/risk/signals/exchange-burst.ts';
import { newActor } from '../../src/risk/signals/new-actor.ts';
import { newAudience } from '../../src/risk/signals/new-audience.ts';
import { newNetwork } from '../../src/risk/signals/new-network.ts';
import { newResource } from '../../src/risk/signals/new-resource.ts';
import { newScope } from '../../src/risk/signals/new-scope.ts';
import { offHours } from '../../src/risk/signals/off-hours.ts';
import { withinTradingHours } from '../../src/risk/trading-hours.ts';
import { noteClientAuthenticationFailure, recentFailures } from '../../src/risk/signals/recent-failures.ts';
import { applyDocument, userId } from '../policy/fixture.ts';
import { testContext, testDialects } from '../helpers/storage.ts';

const dayMs = 86_400_000;

/** The hits of one signal for these facts (the engine's weights applied). */
async function hits(ctx: Context, signal: RiskSignal, facts: RiskFacts): Promise<SignalHit[]> {
  return (await assessRisk(ctx, facts, [signal])).signals;
}

/** Whether the signal fired, and with what reason. */
async function fired(ctx: Context, signal: RiskSignal, facts: RiskFacts): Promise<string | undefined> {
  const found = await hits(ctx, signal, facts);
  return found.length === 0 ? undefined : (found[0]!.detail ?? '');
}

/** The context's settings replaced by `changes` over the defaults. */
function withSettings(ctx: Context, changes: Partial<RiskSettings>): void {
  ctx.risk.settings = { get: async () => ({ ...defaultRiskSettings, ...changes }) };
}

const client = (id: string, extra: Partial<RiskFacts> = {}): RiskFacts => ({ moment: 'issuance', principal: { type: 'Client', id }, clientId: id, ...extra });

describe('trading hours', () => {
  test('run from start to end on the listed weekdays, past midnight when the end is before the start', () => {
    const day = { start: 7 * 60, end: 18 * 60, weekdays: [1, 2, 3, 4, 5] };
    assert.equal(withinTradingHours(day, { minutes: 7 * 60, weekday: 1 }), true);
    assert.equal(withinTradingHours(day, { minutes: 18 * 60, weekday: 1 }), false, 'the end is exclusive');
    assert.equal(withinTradingHours(day, { minutes: 12 * 60, weekday: 6 }), false, 'not on a Saturday');
    const night = { start: 22 * 60, end: 6 * 60, weekdays: [1, 2, 3, 4, 5, 6, 7] };
    assert.equal(withinTradingHours(night, { minutes: 23 * 60, weekday: 3 }), true);
    assert.equal(withinTradingHours(night, { minutes: 2 * 60, weekday: 3 }), true);
    assert.equal(withinTradingHours(night, { minutes: 12 * 60, weekday: 3 }), false);
  });
});

for (const dialect of testDialects()) {
  describe(`the issuance and evaluation signals on ${dialect.name}`, () => {
    test('new_network: quiet on a client first network and on a known one, fires on another, and again once one is forgotten', async (t) => {
      const { ctx, clock } = await testContext({ t, dialect });
      const at = (address: string) => client('svc', { address });
      assert.equal(await fired(ctx, newNetwork, at('198.51.100.7')), undefined, 'the first network sets the baseline');
      await observeRisk(ctx, at('198.51.100.7'), [newNetwork]);
      assert.equal(await fired(ctx, newNetwork, at('198.51.100.99')), undefined, 'the same /24');
      assert.equal(await fired(ctx, newNetwork, at('203.0.113.5')), 'network 203.0.113.0/24 never seen for this client');
      assert.deepEqual(await hits(ctx, newNetwork, at('203.0.113.5')), [{ signal: 'new_network', points: 15, detail: 'network 203.0.113.0/24 never seen for this client' }]);
      await observeRisk(ctx, at('203.0.113.5'), [newNetwork]);
      assert.equal(await fired(ctx, newNetwork, at('203.0.113.5')), undefined, 'known after it was seen');
      assert.equal(await fired(ctx, newNetwork, at('2001:db8:1::1')), 'network 2001:db8:1::/48 never seen for this client');
      clock.advance(31 * dayMs);
      await observeRisk(ctx, at('203.0.113.5'), [newNetwork]);
      assert.equal(await fired(ctx, newNetwork, at('198.51.100.7')), 'network 198.51.100.0/24 not seen for this client in 30 days');
      assert.equal(await fired(ctx, newNetwork, { ...at('192.0.2.1'), moment: 'evaluation' }), undefined, 'never at an evaluation');
      assert.equal(await fired(ctx, newNetwork, client('svc')), undefined, 'no address, nothing to assess');
    });

    test('recent_failures: fires at the threshold of failures from the token request\'s own address, and forgets them after the window', async (t) => {
      const { ctx, clock } = await testContext({ t, dialect });
      const svcAt = (address: string) => client('svc', { address });
      noteClientAuthenticationFailure(ctx, 'svc', '198.51.100.1');
      noteClientAuthenticationFailure(ctx, 'svc', '198.51.100.1');
      assert.equal(await fired(ctx, recentFailures, svcAt('198.51.100.1')), undefined, 'two, below three');
      noteClientAuthenticationFailure(ctx, 'svc', '198.51.100.1');
      assert.equal(await fired(ctx, recentFailures, svcAt('198.51.100.1')), 'failed client authentications in the last 900 s from this address: 3, 3 naming this client');
      // Failing as other clients from there counts too: the address is the caller.
      for (const id of ['a', 'b', 'c']) noteClientAuthenticationFailure(ctx, id, '203.0.113.9');
      noteClientAuthenticationFailure(ctx, undefined, '203.0.113.9');
      assert.equal(await fired(ctx, recentFailures, client('other', { address: '203.0.113.9' })), 'failed client authentications in the last 900 s from this address: 4, 0 naming this client');
      clock.advance(901_000);
      assert.equal(await fired(ctx, recentFailures, svcAt('198.51.100.1')), undefined, 'the window has passed');
      assert.equal(await fired(ctx, recentFailures, client('other', { address: '203.0.113.9' })), undefined, 'the window has passed');
    });

    test('recent_failures: failures naming a client from a stranger\'s address do not raise the client\'s own tokens (review M3)', async (t) => {
      const { ctx } = await testContext({ t, dialect });
      // Anyone can claim a client_id; ten wrong secrets from three addresses of someone else's.
      for (const address of ['203.0.113.66', '203.0.113.67', '2001:db8:66::1']) for (let i = 0; i < 10; i++) noteClientAuthenticationFailure(ctx, 'svc', address);
      assert.equal(await fired(ctx, recentFailures, client('svc', { address: '198.51.100.20' })), undefined, 'the genuine client, from its own address');
      assert.equal(await fired(ctx, recentFailures, client('svc', { address: '2001:db8:77::1' })), undefined, 'nor from another IPv6 /64');
      assert.equal(await fired(ctx, recentFailures, { ...client('svc'), moment: 'evaluation' }), undefined, 'no address, nothing counted');
      // The guesser's own token, once a guess succeeds, does carry the signal (an IPv6 address counts by its /64).
      assert.match((await fired(ctx, recentFailures, client('svc', { address: '2001:db8:66::2' })))!, /from this address: 10, 10 naming this client$/);
    });

    test('off_hours: a person outside trading hours at their desk, in its time zone or else UTC; never a client or a person on no desk', async (t) => {
      const { ctx, clock } = await testContext({ t, dialect });
      await applyDocument(ctx, {
        regions: [{ id: 'jp', name: 'Japan' }],
        instrument_classes: [{ id: 'fx', name: 'FX' }],
        legal_entities: [
          {
            lei: '5493001KJTIIGC8Y1R12',
            name: 'Example Broker KK',
            jurisdiction: 'JP',
            home_region: 'jp',
            roles: ['broker'],
            desks: [
              { id: 'tokyo-fx', product_classes: ['fx'], time_zone: 'Asia/Tokyo' },
              { id: 'unzoned', product_classes: ['fx'] },
            ],
          },
        ],
        users: [
          { username: 'kenji', desks: ['tokyo-fx'] },
          { username: 'uma', desks: ['unzoned'] },
          { username: 'nadia', desks: [] },
        ],
      });
      const person = async (username: string): Promise<RiskFacts> => ({ moment: 'issuance', principal: { type: 'User', id: await userId(ctx, username) }, clientId: 'ui' });
      // Wednesday 7 January 2026, 02:00 UTC: 11:00 in Tokyo.
      clock.set(Date.UTC(2026, 0, 7, 2, 0));
      assert.equal(await fired(ctx, offHours, await person('kenji')), undefined, 'in hours in Tokyo');
      assert.equal(await fired(ctx, offHours, await person('uma')), '02:00 on ISO weekday 3 (UTC: no desk time zone)');
      assert.equal(await fired(ctx, offHours, await person('nadia')), undefined, 'no desk, no trading hours');
      assert.equal(await fired(ctx, offHours, client('ui')), undefined, 'clients trade around the clock');
      // 12:00 UTC: 21:00 in Tokyo.
      clock.set(Date.UTC(2026, 0, 7, 12, 0));
      assert.equal(await fired(ctx, offHours, await person('kenji')), '21:00 on ISO weekday 3 at desk tokyo-fx');
      assert.equal(await fired(ctx, offHours, { ...(await person('kenji')), moment: 'evaluation' }), '21:00 on ISO weekday 3 at desk tokyo-fx');
      assert.equal(await fired(ctx, offHours, await person('uma')), undefined, 'in hours in UTC');
      // Saturday 10 January, 03:00 UTC: noon in Tokyo, but not a trading day.
      clock.set(Date.UTC(2026, 0, 10, 3, 0));
      assert.equal(await fired(ctx, offHours, await person('kenji')), '12:00 on ISO weekday 6 at desk tokyo-fx');
    });

    test('new_scope, new_audience and new_resource: quiet for a client first token, fire on what a client with history never had, quiet once seen', async (t) => {
      const { ctx } = await testContext({ t, dialect });
      const signals = [newScope, newAudience, newResource];
      const first = client('svc', { scopes: ['order:create'], audience: 'https://orders.example.com', resources: ['Instrument:EURUSD'] });
      assert.deepEqual((await assessRisk(ctx, first, signals)).signals, [], 'the first token sets the baseline');
      await observeRisk(ctx, first, signals);
      assert.deepEqual((await assessRisk(ctx, first, signals)).signals, []);
      const wider = client('svc', { scopes: ['order:create', 'order:cancel'], audience: 'https://clearing.example.com', resources: ['Instrument:EURUSD', 'Account:GB-FX-001'] });
      assert.deepEqual((await assessRisk(ctx, wider, signals)).signals, [
        { signal: 'new_scope', points: 10, detail: 'never seen for this client: order:cancel' },
        { signal: 'new_audience', points: 15, detail: 'never seen for this client: https://clearing.example.com' },
        { signal: 'new_resource', points: 10, detail: 'never seen for this client: Account:GB-FX-001' },
      ]);
      await observeRisk(ctx, wider, signals);
      assert.deepEqual((await assessRisk(ctx, wider, signals)).signals, [], 'seen now');
      // At an AuthZEN evaluation, the client is the subject, the action its scope.
      const evaluation: RiskFacts = { moment: 'evaluation', principal: { type: 'Client', id: 'svc' }, scopes: ['order:amend'], resources: ['Instrument:EURUSD'] };
      assert.deepEqual((await assessRisk(ctx, evaluation, signals)).signals, [{ signal: 'new_scope', points: 10, detail: 'never seen for this client: order:amend' }]);
      // A person evaluated at the AuthZEN API names no client: nothing to compare.
      assert.deepEqual((await assessRisk(ctx, { ...evaluation, principal: { type: 'User', id: 'u1' } }, signals)).signals, []);
    });

    test('concurrent_networks: fires when the presented token was used from two networks within the window, by its holder or as reported by introspection', async (t) => {
      const { ctx, clock } = await testContext({ t, dialect });
      const refresh = (address: string) => client('app', { address, presented: { token: 'refresh:family-1', byHolder: true } });
      assert.equal(await fired(ctx, concurrentNetworks, refresh('198.51.100.7')), undefined);
      await observeRisk(ctx, refresh('198.51.100.7'), [concurrentNetworks]);
      clock.advance(10_000);
      assert.equal(await fired(ctx, concurrentNetworks, refresh('198.51.100.8')), undefined, 'the same network');
      assert.equal(await fired(ctx, concurrentNetworks, refresh('203.0.113.5')), 'the presented token was used from 2 networks within 300 s');
      clock.advance(300_000);
      assert.equal(await fired(ctx, concurrentNetworks, refresh('203.0.113.5')), undefined, 'not at once: the first use is older than the window');

      // An access token its holder got from one network, presented to a resource server from
      // another (introspection's client_address), then exchanged by that resource server.
      const issued = client('holder', { address: '198.51.100.7', issued: 'jti:token-1' });
      await observeRisk(ctx, issued, [concurrentNetworks]);
      const exchange = client('resource-server', { address: '192.0.2.50', presented: { token: 'jti:token-1', byHolder: false } });
      assert.equal(await fired(ctx, concurrentNetworks, exchange), undefined, "the exchanging client's own address is not the holder's");
      notePresentation(ctx, 'token-1', '198.51.100.99');
      assert.equal(await fired(ctx, concurrentNetworks, exchange), undefined, 'presented from where it was issued');
      notePresentation(ctx, 'token-1', '2001:db8:9::1');
      assert.equal(await fired(ctx, concurrentNetworks, exchange), 'the presented token was used from 2 networks within 300 s');
      assert.equal(await fired(ctx, concurrentNetworks, client('holder', { address: '203.0.113.1' })), undefined, 'nothing presented, nothing to compare');
    });

    test("new_actor and deep_chain: quiet on a subject's first chain, fire on an actor or a depth never seen for the subject", async (t) => {
      const { ctx } = await testContext({ t, dialect });
      const signals = [newActor, deepChain];
      const chain = (...actors: string[]): RiskFacts => ({ moment: 'issuance', principal: { type: 'User', id: 'u1' }, clientId: actors[0]!, subject: 'u1', actors });
      assert.deepEqual((await assessRisk(ctx, chain('gateway'), signals)).signals, [], 'the first chain sets the baseline');
      await observeRisk(ctx, chain('gateway'), signals);
      assert.deepEqual((await assessRisk(ctx, chain('gateway'), signals)).signals, []);
      assert.deepEqual((await assessRisk(ctx, chain('settlement', 'gateway'), signals)).signals, [
        { signal: 'new_actor', points: 20, detail: 'never acted for this subject: settlement' },
        { signal: 'deep_chain', points: 20, detail: 'a chain of 2 actors, deeper than any seen for this subject' },
      ]);
      await observeRisk(ctx, chain('settlement', 'gateway'), signals);
      assert.deepEqual((await assessRisk(ctx, chain('settlement', 'gateway'), signals)).signals, []);
      assert.deepEqual((await assessRisk(ctx, chain('settlement'), signals)).signals, [], 'shallower than seen');
      assert.deepEqual((await assessRisk(ctx, chain('custody', 'settlement', 'gateway'), signals)).signals.map((s) => s.signal), ['new_actor', 'deep_chain']);
      assert.deepEqual((await assessRisk(ctx, { ...chain('gateway'), principal: { type: 'User', id: 'u2' } }, signals)).signals, [], "another subject's first chain");
    });

    test('exchange_burst: fires at the count of exchanges for one subject within the window, per subject', async (t) => {
      const { ctx, clock } = await testContext({ t, dialect });
      withSettings(ctx, { exchangeBurstCount: 3, exchangeBurstWindowSeconds: 60 });
      const exchange = (subject: string): RiskFacts => ({ moment: 'issuance', principal: { type: 'User', id: subject }, clientId: 'gateway', subject, actors: ['gateway'] });
      for (let i = 0; i < 2; i++) {
        assert.equal(await fired(ctx, exchangeBurst, exchange('u1')), undefined, `exchange ${i + 1}`);
        await observeRisk(ctx, exchange('u1'), [exchangeBurst]);
        clock.advance(1000);
      }
      assert.equal(await fired(ctx, exchangeBurst, exchange('u1')), '3 exchanges for this subject within 60 s');
      assert.equal(await fired(ctx, exchangeBurst, exchange('u2')), undefined, 'another subject');
      assert.equal(await fired(ctx, exchangeBurst, client('gateway', { address: '192.0.2.1' })), undefined, 'not an exchange');
      clock.advance(60_000);
      assert.equal(await fired(ctx, exchangeBurst, exchange('u1')), undefined, 'the window has passed');
    });
  });
}
