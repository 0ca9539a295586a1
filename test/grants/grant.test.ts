import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { declaredParameters } from '../../src/grants/grant.ts';
import { grants } from '../../src/grants/index.ts';
import { FormParameters } from '../../src/parameters.ts';

describe('the parameters a grant sees', () => {
  test('are only those it declares: another parameter of the request reads as absent', () => {
    const params = declaredParameters(new FormParameters('scope=a+b&resource=r1&resource=r2&mandate=m-1&code=smuggled'), ['scope', 'resource'] as const);
    assert.equal(params.get('scope'), 'a b');
    assert.deepEqual(params.all('resource'), ['r1', 'r2']);
    const undeclared = params as unknown as { get(name: string): string | undefined; all(name: string): string[] };
    assert.equal(undeclared.get('mandate'), undefined);
    assert.deepEqual(undeclared.all('code'), []);
  });

  test('every grant declares what it may repeat among its parameters', () => {
    for (const grant of grants) {
      for (const name of grant.repeatable ?? []) assert.ok(grant.parameters.includes(name), `${grant.grantType}: ${name}`);
    }
  });
});
