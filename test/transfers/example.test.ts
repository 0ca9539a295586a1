import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { buildApp } from '../../src/http/app.ts';
import { assertOAuthError, basicAuthorization, formBody } from '../endpoints/fixture.ts';
import { testContext } from '../helpers/storage.ts';
import { applyDocument } from '../policy/fixture.ts';

// examples/transfers.yaml does what its own comment tells a new user it does.

const document = parse(readFileSync(new URL('../../examples/transfers.yaml', import.meta.url), 'utf8')) as Record<string, unknown>;
const custodyApi = 'https://custody.example.com/api';
const declaredIban = { kind: 'iban', iban: 'DE89370400440532013000', bic: 'COBADEFFXXX' };

test('examples/transfers.yaml applies, and its withdrawal is refused until the declared destination is approved, while a transfer between the firm’s own accounts is issued', async (t) => {
  const { ctx } = await testContext({ t });
  const secrets = await applyDocument(ctx, document);
  const app = buildApp(ctx);
  t.after(() => app.close());
  const token = (detail: Record<string, unknown>) =>
    app.inject({
      method: 'POST',
      url: '/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('treasury-app', secrets['treasury-app']!) },
      payload: formBody({ grant_type: 'client_credentials', resource: custodyApi, authorization_details: JSON.stringify([{ type: 'transfer', asset: 'USD', amount: '2500.00', source_account: 'TRE-001', ...detail }]) }),
    });
  const withdrawal = assertOAuthError(await token({ transfer_type: 'withdrawal', destination: declaredIban }), 400, 'invalid_authorization_details');
  assert.match(String(withdrawal.error_description), /destination iban:DE89370400440532013000 \(dst_[\w-]+\) of account TRE-001 awaits approval/);
  const internal = await token({ transfer_type: 'internal', destination: { kind: 'internal', account: 'TRE-002' } });
  assert.equal(internal.statusCode, 200, internal.body);
});
