import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { essentialAcr, readClaimsParameter, voluntaryAcr, weakestKnownAcr } from '../../src/authorization/acr-request.ts';
import { acr } from '../../src/identity/acr.ts';
import { OAuthError } from '../../src/oauth-error.ts';

describe('the acr a request asks', () => {
  test('the weakest value Clearance knows is the level; unknown values are ignored', () => {
    assert.equal(weakestKnownAcr([acr.phishingResistantHardware, acr.multiFactor, 'urn:example:x']), acr.multiFactor);
    assert.equal(weakestKnownAcr(['urn:clearance:acr:1fa', acr.phishingResistant]), acr.password, 'the legacy value counts as pwd');
    assert.equal(weakestKnownAcr(['urn:example:x']), undefined);
    assert.equal(weakestKnownAcr([]), undefined);
  });

  test('acr_values and a voluntary acr claim ask together; an essential claim is apart', () => {
    assert.equal(voluntaryAcr({ acrValues: [acr.phishingResistant], acrClaim: { essential: false, values: [acr.multiFactor] } }), acr.multiFactor);
    assert.equal(voluntaryAcr({ acrValues: [acr.phishingResistant], acrClaim: { essential: true, values: [acr.multiFactor] } }), acr.phishingResistant);
    assert.equal(essentialAcr({ acrClaim: { essential: true, values: [acr.phishingResistantHardware, acr.phishingResistant] } }), acr.phishingResistant);
    assert.equal(essentialAcr({ acrClaim: { essential: true, values: [] } }), undefined, 'essential without values asks nothing');
    assert.equal(essentialAcr({ acrClaim: { essential: true, values: ['urn:example:x'] } }), 'unreachable');
    assert.equal(essentialAcr({}), undefined);
  });
});

describe('reading the claims parameter (OIDC Core §5.5)', () => {
  test('reads id_token.acr as text or as an object, value or values', () => {
    assert.deepEqual(readClaimsParameter('{"id_token":{"acr":{"essential":true,"values":["a","b"]}}}'), { essential: true, values: ['a', 'b'] });
    assert.deepEqual(readClaimsParameter({ id_token: { acr: { value: 'a' } } }), { essential: false, values: ['a'] });
    assert.deepEqual(readClaimsParameter({ id_token: { acr: null } }), undefined);
    assert.equal(readClaimsParameter({ userinfo: { acr: { essential: true, value: 'a' } } }), undefined, 'acr is an ID token claim');
    assert.equal(readClaimsParameter({ id_token: { email: { essential: true } }, other: 1 }), undefined, 'other claims and members are ignored');
    assert.equal(readClaimsParameter(undefined), undefined);
  });

  test('refuses what is not a claims request', () => {
    for (const bad of ['{', 'null', '[]', 5, '{"userinfo":"x"}', '{"id_token":{"acr":[]}}', '{"id_token":{"acr":{"values":[1]}}}', `{"id_token":{"acr":{"values":${JSON.stringify(Array(11).fill('a'))}}}}`, '{"id_token":{"acr":{"value":""}}}', 'x'.repeat(5000)]) {
      assert.throws(() => readClaimsParameter(bad), (e: unknown) => e instanceof OAuthError && e.error === 'invalid_request', String(bad).slice(0, 60));
    }
  });
});
