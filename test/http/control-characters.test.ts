/**
 * Issue 20 item 4: control characters at the parameter boundary (rules: src/parameters.ts). A NUL
 * in a client_id was a 500 on PostgreSQL (it cannot store or compare NUL) and a 401 on SQLite;
 * every text entering the server is now checked before any component reads it, the same on both.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SignJWT } from 'jose';
import { assertErrorShape, assertOAuthError, basicAuthorization, ordersApi, protocolFixture } from '../endpoints/fixture.ts';
import { dpopKey, dpopProof } from '../helpers/dpop.ts';
import { testDialects } from '../helpers/storage.ts';

const jwtBearer = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** NUL, other C0 controls, the whitespace controls and DEL. */
const controls = ['\u0000', '\u0001', '\u001b', '\u001f', '\u007f', '\t', '\n', '\r'];

for (const dialect of testDialects()) {
  describe(`control characters at the boundary on ${dialect.name}`, () => {
    test('refuses a control character in any parameter of /token, /introspect, /revoke and /par with invalid_request', async (t) => {
      const f = await protocolFixture(t, { dialect });
      const requests: [string, Record<string, string>][] = [
        ['/token', { grant_type: 'client_credentials', client_id: 'broker-2', client_secret: f.secrets['broker-2']!, scope: 'order:create', resource: ordersApi }],
        ['/introspect', { token: 'x', token_type_hint: 'access_token', client_id: 'broker-2', client_secret: f.secrets['broker-2']! }],
        ['/revoke', { token: 'x', token_type_hint: 'refresh_token', client_id: 'broker-2', client_secret: f.secrets['broker-2']! }],
        ['/par', { client_id: 'broker-2', client_secret: f.secrets['broker-2']!, response_type: 'code', redirect_uri: 'https://x.example/cb', state: 's' }],
      ];
      for (const [path, form] of requests) {
        for (const name of Object.keys(form)) {
          for (const control of controls) {
            const label = `${path} ${name} with U+${control.charCodeAt(0).toString(16).padStart(4, '0')}`;
            const response = await f.post(path, { form: { ...form, [name]: `${form[name]!.slice(0, 3)}${control}${form[name]!.slice(3)}` } });
            assertOAuthError(response, 400, 'invalid_request', label);
            assert.match(response.json().error_description as string, /control character/, label);
          }
        }
        // In a parameter's name too.
        assertOAuthError(await f.post(path, { form: `${new URLSearchParams(form)}&x%00y=1` }), 400, 'invalid_request', `${path} name`);
      }
      assert.equal((await f.auditEvents('token.issued')).length, 0, 'nothing was issued');
    });

    test('lets authorization_details carry JSON whitespace, never NUL', async (t) => {
      const f = await protocolFixture(t, { dialect });
      const details = '[\n\t{"type": "order",\r\n "side": "buy"}\n]';
      const base = { client_id: 'broker-2', client_secret: f.secrets['broker-2']!, response_type: 'code', redirect_uri: 'https://x.example/cb' };
      const spaced = await f.post('/par', { form: { ...base, authorization_details: details } });
      assert.doesNotMatch(spaced.body, /control character/, 'JSON whitespace passes the boundary (the request may fail later for other reasons)');
      assert.ok(spaced.statusCode < 500, spaced.body);
      const nul = await f.post('/par', { form: { ...base, authorization_details: details.replace('"buy"', '"b\u0000uy"') } });
      assertOAuthError(nul, 400, 'invalid_request');
      assert.match(nul.json().error_description as string, /authorization_details contains a control character/);
    });

    test('answers /authorize with a control character in the query with the error page, never a redirect', async (t) => {
      const f = await protocolFixture(t, { dialect });
      for (const query of ['client_id=trading%00-ui&response_type=code', 'client_id=trading-ui&response_type=code&state=a%0Ab&redirect_uri=https%3A%2F%2Fx']) {
        const response = await f.inject({ method: 'GET', url: `/authorize?${query}` });
        assert.equal(response.statusCode, 400, response.body);
        assert.equal(response.headers.location, undefined);
        assert.match(String(response.headers['content-type']), /text\/html/);
        assert.match(response.body, /control character/);
      }
      const posted = await f.inject({ method: 'POST', url: '/authorize', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'client_id=trading-ui%01&response_type=code' });
      assert.equal(posted.statusCode, 400, posted.body);
      assert.equal(posted.headers.location, undefined);
    });

    test('refuses control characters in path parameters, query strings and JSON bodies, naming where', async (t) => {
      const f = await protocolFixture(t, { dialect });
      const admin = await f.accessToken('admin-ops', { resource: `${f.issuer}/admin`, scope: 'admin:write' });
      const initial = await f.initialAccessToken();
      const cases: [string, Parameters<typeof f.inject>[0] & object, RegExp][] = [
        ['a registration path', { method: 'GET', url: '/register/dyn%00x' }, /path/],
        ['an admin path', { method: 'DELETE', url: '/admin/grants/g%00', headers: { authorization: `Bearer ${admin}` } }, /path/],
        ['an admin query', { method: 'GET', url: '/admin/grants?user=a%00', headers: { authorization: `Bearer ${admin}` } }, /query parameter user/],
        ['a query name', { method: 'GET', url: '/admin/grants?us%1Fer=a', headers: { authorization: `Bearer ${admin}` } }, /query parameter name/],
        [
          'registration metadata',
          {
            method: 'POST',
            url: '/register',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${initial}` },
            payload: JSON.stringify({ client_name: 'Desk', redirect_uris: ['https://desk.example/cb\u0000'], grant_types: ['client_credentials'] }),
          },
          /redirect_uris\[0\] contains a control character/,
        ],
        [
          'a registration key',
          { method: 'POST', url: '/register', headers: { 'content-type': 'application/json', authorization: `Bearer ${initial}` }, payload: '{"client\\u0000name":"x"}' },
          /has a key that contains a control character/,
        ],
        [
          'an admin client',
          { method: 'PUT', url: '/admin/clients/x', headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` }, payload: JSON.stringify({ client_id: 'x', jwks: { keys: [{ kid: 'k\u007f' }] } }) },
          /jwks\.keys\[0\]\.kid contains a control character/,
        ],
        [
          'an AuthZEN evaluation',
          { method: 'POST', url: '/access/v1/evaluation', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ subject: { type: 'user', id: 'alice\u0000' } }) },
          /subject\.id contains a control character/,
        ],
      ];
      for (const [label, request, description] of cases) {
        const response = await f.inject(request);
        assertOAuthError(response, 400, 'invalid_request', label);
        assert.match(response.json().error_description as string, description, label);
      }
      // A line break in a JSON string is text (a reason, a name): it passes the boundary.
      const text = await f.inject({ method: 'PUT', url: '/admin/clients/x', headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` }, payload: JSON.stringify({ client_name: 'two\nlines' }) });
      assert.doesNotMatch(text.body, /control character/);
      assert.ok(text.statusCode < 500, text.body);
    });

    test('treats a client id with a control character in Basic credentials or an assertion as unknown, and audits the failure', async (t) => {
      const f = await protocolFixture(t, { dialect });
      const form = { grant_type: 'client_credentials', resource: ordersApi, scope: 'order:create' };
      const basic = await f.token({ auth: basicAuthorization('broker-1\u0000', f.secrets['broker-1']!), form });
      assertOAuthError(basic, 401, 'invalid_client');
      assert.equal(basic.headers['www-authenticate'], 'Basic realm="clearance"');
      const now = Math.floor(f.clock.now() / 1000);
      const assertion = await new SignJWT({ iss: 'oms\u0000', sub: 'oms\u0000', aud: f.issuer, iat: now, exp: now + 60, jti: 'j-1' })
        .setProtectedHeader({ alg: 'ES256', kid: 'oms-1' })
        .sign(f.omsKey);
      assertOAuthError(await f.token({ form: { ...form, client_assertion_type: jwtBearer, client_assertion: assertion } }), 401, 'invalid_client');
      const failures = await f.auditEvents('client.auth_failed');
      assert.equal(failures.length, 2, 'both failed authentications are audited');
      for (const event of failures) {
        assert.equal(event.client, undefined, 'the malformed id is not recorded as a client');
        assert.match(JSON.stringify(event.decision), /unknown client/);
      }
    });

    test('refuses a client assertion or DPoP proof whose jti has a control character', async (t) => {
      const f = await protocolFixture(t, { dialect });
      const form = { grant_type: 'client_credentials', resource: ordersApi, scope: 'order:create' };
      const assertion = await f.assertion({ jti: 'j\u0000' });
      assertOAuthError(await f.token({ form: { ...form, client_assertion_type: jwtBearer, client_assertion: assertion } }), 401, 'invalid_client');
      assert.equal((await f.auditEvents('client.auth_failed')).length, 1);
      const proof = dpopProof(dpopKey(), { htm: 'POST', htu: `${f.issuer}/token`, iat: Math.floor(f.clock.now() / 1000), jti: 'p\u0000' });
      const response = await f.token({ auth: f.basic('broker-1'), headers: { dpop: proof }, form });
      assertOAuthError(response, 400, 'invalid_dpop_proof');
      assertErrorShape(response);
    });
  });
}
