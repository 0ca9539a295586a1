import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { executeApply, planApply } from '../../src/apply/index.ts';
import { assignedCountryCount, isValidCountryCode } from '../../src/entities/countries.ts';
import { formatProblem } from '../../src/validation.ts';
import { protocolFixture } from '../endpoints/fixture.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import { applyDocument, exampleEntities } from '../policy/fixture.ts';

describe('the entity model in apply', () => {
  test('applies legal entities with desks and accounts and the reference lists, then reports them unchanged', async (t) => {
    const { ctx } = await testContext({ t });
    const document = exampleEntities();
    const { plan, problems } = await planApply(ctx, document);
    assert.deepEqual(problems.map(formatProblem), []);
    const first = await executeApply(ctx, plan!, { actor: 'test', via: 'cli' });
    assert.deepEqual(
      first.changes.map((c) => `${c.outcome} ${c.kind} ${c.id}`),
      [
        'created region uk',
        'created region us',
        'created region eu',
        'created venue example-derivatives',
        'created instrument_class fx',
        'created instrument_class rates',
        'created instrument_class rates_derivatives',
        'created instrument_class crypto',
        'created instrument_class crypto_derivatives',
        'created legal_entity 5493001KJTIIGC8Y1R12',
        'created legal_entity 254900EXAMPLEUS0AA64',
        'created legal_entity 969500CUBANEXAMPLE21',
      ],
    );
    const again = await executeApply(ctx, (await planApply(ctx, document)).plan!, { actor: 'test', via: 'cli' });
    assert.ok(again.changes.every((c) => c.outcome === 'unchanged'));

    const snapshot = await ctx.entities.snapshot();
    assert.deepEqual(snapshot.desks.get('rates'), { desk: { id: 'rates', name: 'Rates', product_classes: ['rates', 'rates_derivatives'] }, lei: '5493001KJTIIGC8Y1R12' });
    assert.equal(snapshot.accounts.get('GB-FX-001')!.account.desk, 'fx-spot');
    assert.equal(snapshot.instrumentClasses.get('crypto_derivatives')!.complex, true);
    assert.equal(snapshot.instrumentClasses.get('fx')!.complex, false);

    // A changed entity is updated; the event names what changed.
    const changed = structuredClone(document) as { legal_entities: { name: string }[] };
    changed.legal_entities[0]!.name = 'Example Broker Limited';
    const third = await executeApply(ctx, (await planApply(ctx, changed)).plan!, { actor: 'test', via: 'cli' });
    assert.deepEqual(third.changes.filter((c) => c.outcome !== 'unchanged').map((c) => `${c.outcome} ${c.kind} ${c.id}`), ['updated legal_entity 5493001KJTIIGC8Y1R12']);
    assert.equal((await ctx.entities.snapshot()).legalEntities.get('5493001KJTIIGC8Y1R12')!.name, 'Example Broker Limited');
  });

  test('reports every problem with its path and writes nothing', async (t) => {
    const { ctx } = await testContext({ t });
    await applyDocument(ctx, exampleEntities());
    const { plan, problems } = await planApply(ctx, {
      regions: [{ id: 'EU' }, { id: 'apac' }],
      instrument_classes: [{ id: 'equities', complex: 'yes' }],
      venues: [{ id: 'x', mic: 'xlon', region: 'mars' }],
      legal_entities: [
        {
          lei: '5493001KJTIIGC8Y1R13',
          name: 'Bad Check Digits',
          jurisdiction: 'UK',
          home_region: 'apac',
          roles: ['broker', 'bank'],
        },
        {
          lei: '5493001KJTIIGC8Y1R12',
          name: 'Example Broker Ltd',
          jurisdiction: 'GB',
          home_region: 'antarctica',
          roles: [],
          desks: [{ id: 'fx-spot', product_classes: ['fx', 'weather'] }, { id: 'fx-spot' }, { id: 'us-crypto' }],
          accounts: [{ id: 'A-1', desk: 'equities', region: 'uk' }, { id: 'CU-CUST-001', region: 'uk' }, { id: 'A-3' }],
          colour: 'blue',
        },
      ],
    });
    assert.equal(plan, undefined);
    assert.deepEqual(problems.map(formatProblem), [
      'regions[0].id: must be 1–32 lowercase letters, digits and - (e.g. eu, uk, us-east)',
      'venues[0].mic: must be an ISO 10383 MIC: 4 uppercase letters or digits',
      'instrument_classes[0].complex: must be true or false',
      'legal_entities[0].lei: must be a valid LEI (ISO 17442: 20 characters, check digits)',
      'legal_entities[0].jurisdiction: "UK" is not an ISO 3166-1 alpha-2 country code',
      'legal_entities[0].roles[1]: must be one of broker, arranger, clearing, custodian, venue, asset_manager',
      'legal_entities[1].colour: is not a recognised field',
      'legal_entities[1].roles: must not be empty',
      'legal_entities[1].accounts[2].region: must be a non-empty string',
      'legal_entities[1].desks[1].id: "fx-spot" is also defined at legal_entities[1].desks[0]',
      'legal_entities[1].accounts[0].desk: "equities" is not a desk of this legal entity',
    ]);
    // The cross checks against what is stored: a valid document that reuses another entity's ids.
    const second = await planApply(ctx, {
      legal_entities: [
        {
          lei: '5493001KJTIIGC8Y1R12',
          name: 'Example Broker Ltd',
          jurisdiction: 'GB',
          home_region: 'antarctica',
          roles: ['broker'],
          desks: [{ id: 'fx-spot', product_classes: ['fx', 'weather'] }, { id: 'us-crypto' }],
          accounts: [{ id: 'CU-CUST-001', region: 'moon' }],
        },
      ],
    });
    assert.deepEqual(second.problems.map(formatProblem), [
      'legal_entities[0].home_region: "antarctica" is not a declared region (add it under regions)',
      'legal_entities[0].desks[0].product_classes[1]: "weather" is not a declared instrument class (add it under instrument_classes)',
      'legal_entities[0].desks[1].id: "us-crypto" is already a desk of legal entity 254900EXAMPLEUS0AA64',
      'legal_entities[0].accounts[0].id: "CU-CUST-001" is already an account of legal entity 969500CUBANEXAMPLE21',
      'legal_entities[0].accounts[0].region: "moon" is not a declared region (add it under regions)',
    ]);
  });

  test('a desk’s time_zone is an IANA time zone', async (t) => {
    const { ctx } = await testContext({ t });
    const withZone = (time_zone: unknown) => {
      const document = exampleEntities() as { legal_entities: { desks?: Record<string, unknown>[] }[] };
      document.legal_entities[0]!.desks![0]!.time_zone = time_zone;
      return document;
    };
    assert.deepEqual((await planApply(ctx, withZone('Europe/London'))).problems, []);
    for (const bad of ['Mars/Olympus_Mons', 'GMT+1; drop', '', 5]) {
      const { problems } = await planApply(ctx, withZone(bad));
      assert.ok(
        problems.some((p) => /^legal_entities\[0\]\.desks\[0\]\.time_zone: /.test(formatProblem(p))),
        `${String(bad)}: ${problems.map(formatProblem).join('; ')}`,
      );
    }
  });

  test('knows the 249 assigned ISO 3166-1 alpha-2 codes', () => {
    assert.equal(assignedCountryCount, 249);
    assert.equal(isValidCountryCode('GB'), true);
    assert.equal(isValidCountryCode('UK'), false);
    assert.equal(isValidCountryCode('XK'), false);
  });
});

for (const dialect of testDialects()) {
  describe(`instrument classes on ${dialect.name}`, () => {
    test('are the built-in ones on a fresh install, with the derivatives complex', async (t) => {
      const { ctx } = await testContext({ t, dialect });
      const snapshot = await ctx.entities.snapshot();
      assert.equal(snapshot.instrumentClassesDeclared, false);
      assert.deepEqual([...snapshot.instrumentClasses.keys()], ['equity', 'bond', 'fx', 'future', 'option', 'swap', 'etf', 'crypto', 'crypto_derivative']);
      assert.deepEqual(
        [...snapshot.instrumentClasses.values()].filter((c) => c.complex).map((c) => c.id),
        ['future', 'option', 'swap', 'crypto_derivative'],
      );
      // A desk may name them before any are declared.
      await applyDocument(ctx, { regions: [{ id: 'uk' }], legal_entities: [broker(['fx', 'bond'])] });
    });

    test('are replaced entirely by the first ones declared, and then grow by declaration', async (t) => {
      const { ctx } = await testContext({ t, dialect });
      await applyDocument(ctx, { instrument_classes: [{ id: 'fx' }, { id: 'rates_derivatives', complex: true }] });
      let snapshot = await ctx.entities.snapshot();
      assert.equal(snapshot.instrumentClassesDeclared, true);
      assert.deepEqual([...snapshot.instrumentClasses.keys()].sort(), ['fx', 'rates_derivatives']);
      assert.equal(snapshot.instrumentClasses.get('fx')!.complex, false, 'as declared, not as built in');
      const { problems } = await planApply(ctx, { regions: [{ id: 'uk' }], legal_entities: [broker(['fx', 'bond'])] });
      assert.deepEqual(problems.map(formatProblem), [
        'legal_entities[0].desks[0].product_classes[1]: "bond" is not a declared instrument class (add it under instrument_classes)',
      ]);
      await applyDocument(ctx, { instrument_classes: [{ id: 'bond' }] });
      snapshot = await ctx.entities.snapshot();
      assert.deepEqual([...snapshot.instrumentClasses.keys()].sort(), ['bond', 'fx', 'rates_derivatives']);
    });

    test('refuses first declarations that would leave a stored desk naming a built-in class no longer declared', async (t) => {
      const { ctx } = await testContext({ t, dialect });
      await applyDocument(ctx, { regions: [{ id: 'uk' }], legal_entities: [broker(['fx', 'bond'])] });
      const { problems } = await planApply(ctx, { instrument_classes: [{ id: 'fx' }] });
      assert.deepEqual(problems.map(formatProblem), [
        'instrument_classes: declared instrument classes replace the built-in ones, but desk trading of legal entity 5493001KJTIIGC8Y1R12 names "bond": declare it too',
      ]);
      assert.equal((await ctx.entities.snapshot()).instrumentClassesDeclared, false, 'nothing written');
      await applyDocument(ctx, { instrument_classes: [{ id: 'fx' }, { id: 'bond' }] });
    });
  });
}

/** A legal entity with one desk trading `classes`. */
function broker(classes: string[]) {
  return {
    lei: '5493001KJTIIGC8Y1R12',
    name: 'Example Broker Ltd',
    jurisdiction: 'GB',
    home_region: 'uk',
    roles: ['broker'],
    desks: [{ id: 'trading', product_classes: classes }],
    accounts: [],
  };
}

describe('the entities admin API', () => {
  test('lists legal entities and reference lists, and reads one legal entity, with admin:read', async (t) => {
    const f = await protocolFixture(t);
    await f.apply(exampleEntities());
    const token = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
    const all = await f.inject({ method: 'GET', url: '/admin/entities', headers: { authorization: `Bearer ${token}` } });
    assert.equal(all.statusCode, 200, all.body);
    const body = all.json();
    assert.deepEqual(body.legal_entities.map((e: { lei: string }) => e.lei), ['254900EXAMPLEUS0AA64', '5493001KJTIIGC8Y1R12', '969500CUBANEXAMPLE21']);
    assert.deepEqual(body.regions.map((r: { id: string }) => r.id), ['eu', 'uk', 'us']);
    assert.equal(body.instrument_classes.length, 5);
    const one = await f.inject({ method: 'GET', url: '/admin/entities/5493001KJTIIGC8Y1R12', headers: { authorization: `Bearer ${token}` } });
    assert.equal(one.statusCode, 200);
    assert.equal(one.json().desks.length, 3);
    const missing = await f.inject({ method: 'GET', url: '/admin/entities/5493001KJTIIGC8Y1R13', headers: { authorization: `Bearer ${token}` } });
    assert.equal(missing.statusCode, 404);
    const anonymous = await f.inject({ method: 'GET', url: '/admin/entities' });
    assert.equal(anonymous.statusCode, 401);
  });

  test('lists policy set versions and reads one with its text', async (t) => {
    const f = await protocolFixture(t);
    await f.apply({ policies: [{ version: 'v1', text: '@id("all") permit (principal, action, resource);', change_ref: 'CHG-1', author: 'alice', approver: 'bob', active: true }] });
    const token = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
    const list = await f.inject({ method: 'GET', url: '/admin/policies', headers: { authorization: `Bearer ${token}` } });
    assert.equal(list.statusCode, 200, list.body);
    const [v1] = list.json().policies;
    assert.equal(v1.version, 'v1');
    assert.equal(v1.active, true);
    assert.equal(v1.approver, 'bob');
    assert.equal(v1.text, undefined);
    const one = await f.inject({ method: 'GET', url: '/admin/policies/v1', headers: { authorization: `Bearer ${token}` } });
    assert.match(one.json().text, /permit/);
  });
});
