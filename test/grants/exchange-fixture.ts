import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { epochSeconds } from '../../src/clock.ts';
import { buildApp } from '../../src/http/app.ts';
import { basicAuthorization, formBody } from '../endpoints/fixture.ts';
import { dpopProof, type dpopKey } from '../helpers/dpop.ts';
import { testContext, type TestDialect } from '../helpers/storage.ts';
import { applyDocument } from '../policy/fixture.ts';

// The harness of the token-exchange tests (token-exchange.test.ts, token-exchange-binding.test.ts):
// a server with `document` applied, and /token requests made as its clients.

export const exchangeGrantType = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';

/** A successful token response. */
export interface Issued {
  access_token: string;
  token_type: string;
  issued_token_type?: string;
  refresh_token?: string;
  scope: string;
  expires_in: number;
}

export async function exchangeFixture(t: TestContext, document: Record<string, unknown>, options: { dialect?: TestDialect; env?: Record<string, string> } = {}) {
  const { ctx, clock } = await testContext({ t, ...(options.dialect ? { dialect: options.dialect } : {}), ...(options.env ? { env: options.env } : {}) });
  const secrets = await applyDocument(ctx, document);
  const app = buildApp(ctx);
  t.after(() => app.close());
  await app.ready();
  const issuer = ctx.config.issuer;
  /** POST /token as `clientId` (client_secret_basic). */
  const post = (clientId: string, form: Record<string, string | string[]>, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> =>
    app.inject({
      method: 'POST',
      url: '/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization(clientId, secrets[clientId]!), ...headers },
      payload: formBody(form),
    });
  /** The body of a 200, else the test fails. */
  const ok = async (response: LightMyRequestResponse): Promise<Issued> => {
    assert.equal(response.statusCode, 200, response.body);
    return response.json() as Issued;
  };
  const exchangeFor = (clientId: string, subjectToken: string, form: Record<string, string | string[]> = {}, headers: Record<string, string> = {}) =>
    post(clientId, { grant_type: exchangeGrantType, subject_token: subjectToken, subject_token_type: accessTokenType, ...form }, headers);
  const events = async (type: string) => {
    const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', type).orderBy('seq').execute();
    return rows.map((r) => JSON.parse(r.event) as StoredAuditEvent);
  };
  const proof = (key: ReturnType<typeof dpopKey>) => dpopProof(key, { htm: 'POST', htu: `${issuer}/token`, iat: epochSeconds(clock) });
  return { ctx, clock, issuer, secrets, post, ok, exchangeFor, events, proof };
}
