/**
 * Property tests for the authorization code flow (DESIGN §8 layer 6): whatever a browser or client
 * sends to /authorize, /authorize/resume, /par, /userinfo, /logout or the code and refresh grants,
 * there is never a 5xx; the authorization endpoint answers only with an error page (never a
 * redirect) or a 303 that carries iss; every JSON 4xx is registered error JSON, never cached; and a
 * code is redeemed at most once however the attempts are mixed. Bounded runs with fixed seeds.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import { codeFlowFixture, orderDetail, pkce, webRedirect, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertErrorShape, formBody } from '../endpoints/fixture.ts';

const numRuns = 150;

const names = [
  'client_id', 'response_type', 'redirect_uri', 'scope', 'state', 'nonce', 'code_challenge', 'code_challenge_method', 'prompt',
  'max_age', 'acr_values', 'resource', 'authorization_details', 'request', 'request_uri', 'response_mode', 'login_hint',
  'id_token_hint', 'post_logout_redirect_uri', 'code', 'code_verifier', 'refresh_token', 'grant_type', '__proto__', 'constructor',
];

const values = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.constantFrom(
    'web-app', 'native-app', 'par-app', 'code', 'token', 'code id_token', 'S256', 'plain', 'none', 'login consent', 'openid',
    'openid order:create', 'order:create', webRedirect, 'http://127.0.0.1:8080/callback', 'https://orders.example.com/api', '0', '-1',
    '99999999999', '[]', '[{}]', JSON.stringify([orderDetail]), JSON.stringify([{ ...orderDetail, max_notional: { amount: 1e308, currency: 'USD' } }]),
    'eyJhbGciOiJub25lIn0.eyJpc3MiOiJ3ZWItYXBwIn0.', 'urn:ietf:params:oauth:request_uri:x', pkce().challenge, '%00', '🙂',
  ),
  fc.constantFrom('a'.repeat(5000), '['.repeat(2000), '{"a":'.repeat(500)),
);

const params = fc.array(fc.tuple(fc.constantFrom(...names), values), { maxLength: 12 });

function toForm(entries: [string, string][]): Record<string, string[]> {
  const form = Object.create(null) as Record<string, string[]>;
  for (const [name, value] of entries) (form[name] ??= []).push(value);
  return form;
}

function assertNever5xx(response: LightMyRequestResponse, label: string): void {
  assert.ok(response.statusCode < 500, `never a 5xx: ${label} → ${response.statusCode} ${response.body.slice(0, 300)}`);
}

/** /authorize answers with a page or a 303; a 303 to anything but the people side carries iss. */
function assertAuthorizeInvariant(f: CodeFlowFixture, response: LightMyRequestResponse, label: string): void {
  assertNever5xx(response, label);
  if (response.statusCode === 303) {
    const location = new URL(String(response.headers.location));
    if (!location.href.startsWith(`${f.issuer}/interaction/`)) {
      assert.equal(location.searchParams.get('iss'), f.issuer, `iss in every authorization response: ${label}`);
      assert.ok(location.searchParams.has('code') !== location.searchParams.has('error'), `code or error: ${label}`);
    }
  } else {
    assert.equal(response.statusCode, 400, label);
    assert.equal(response.headers.location, undefined, label);
    assert.match(String(response.headers['content-type']), /^text\/html/, label);
  }
  assert.equal(response.headers['cache-control'], 'no-store', label);
}

describe('the authorization code flow under arbitrary input', () => {
  test('never answers /authorize with a 5xx, and redirects only with iss', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await f.signIn('alice');
    await fc.assert(
      fc.asyncProperty(params, fc.boolean(), fc.boolean(), async (entries, base, post) => {
        const form = { ...(base ? f.request('web-app') : {}), ...toForm(entries) };
        const result = await f.authorize(form, { cookie: person.cookie, method: post ? 'POST' : 'GET' });
        assertAuthorizeInvariant(f, result.response, JSON.stringify(entries).slice(0, 500));
      }),
      { numRuns, seed: 9126 },
    );
  });

  test('never answers /par, the code grant, the refresh grant, /userinfo or /logout with a 5xx', async (t) => {
    const f = await codeFlowFixture(t);
    await fc.assert(
      fc.asyncProperty(params, fc.constantFrom('par', 'code', 'refresh', 'userinfo', 'logout', 'resume'), async (entries, target) => {
        const form = toForm(entries);
        const label = `${target} ${JSON.stringify(entries).slice(0, 500)}`;
        let response: LightMyRequestResponse;
        switch (target) {
          case 'par':
            response = await f.post('/par', { auth: f.basic('web-app'), form: { ...f.request('web-app'), ...form } });
            break;
          case 'code':
            response = await f.token({ auth: f.basic('web-app'), form: { grant_type: 'authorization_code', ...form } });
            break;
          case 'refresh':
            response = await f.token({ form: { grant_type: 'refresh_token', client_id: 'native-app', ...form } });
            break;
          case 'userinfo':
            response = await f.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${entries[0]?.[1] ?? 'x'}`.replace(/[^\x20-\x7e]/g, '') } });
            break;
          case 'logout':
            response = await f.inject({ method: 'GET', url: `/logout?${formBody(form)}` });
            break;
          case 'resume':
            response = await f.inject({ method: 'GET', url: `/authorize/resume/${encodeURIComponent(entries[0]?.[1] ?? 'x')}` });
            break;
        }
        assertNever5xx(response, label);
        if (response.statusCode >= 400 && String(response.headers['content-type']).startsWith('application/json')) assertErrorShape(response, label);
      }),
      { numRuns, seed: 6749 },
    );
  });

  test('redeems each code at most once, whatever mix of right and wrong attempts', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await f.signIn('alice');
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ client: fc.constantFrom('web-app', 'code-only'), rightVerifier: fc.boolean(), rightRedirect: fc.boolean() }), { minLength: 1, maxLength: 6 }),
        async (attempts) => {
          const { code, pkce: challenge } = await f.authorizeAndApprove({ person, query: { prompt: 'consent' } });
          const responses = await Promise.all(
            attempts.map((a) => f.redeem(a.client, code, a.rightVerifier ? challenge.verifier : pkce().verifier, { redirect_uri: a.rightRedirect ? webRedirect : `${webRedirect}?x` })),
          );
          for (const r of responses) assertNever5xx(r, 'redeem');
          assert.ok(responses.filter((r) => r.statusCode === 200).length <= 1);
        },
      ),
      { numRuns: 25, seed: 7636 },
    );
  });
});
