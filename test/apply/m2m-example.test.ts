import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { buildApp } from '../../src/http/app.ts';
import { basicAuthorization, formBody } from '../endpoints/fixture.ts';
import { testContext } from '../helpers/storage.ts';
import { applyDocument } from '../policy/fixture.ts';

// The README's quick start: `npx clearance apply -f examples/m2m.yaml`, then the risk engine's token.

const document = parse(readFileSync(new URL('../../examples/m2m.yaml', import.meta.url), 'utf8')) as Record<string, unknown>;

test('examples/m2m.yaml applies as the README says, and the risk engine gets a position:view token with the secret apply printed', async (t) => {
  const { ctx } = await testContext({ t });
  const secrets = await applyDocument(ctx, document);
  const app = buildApp(ctx);
  t.after(() => app.close());
  const answer = await app.inject({
    method: 'POST',
    url: '/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('risk-engine', secrets['risk-engine']!) },
    payload: formBody({ grant_type: 'client_credentials', scope: 'position:view' }),
  });
  assert.equal(answer.statusCode, 200, answer.body);
  assert.equal(answer.json().token_type, 'Bearer');
});
