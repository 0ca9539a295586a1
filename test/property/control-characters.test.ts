/**
 * Property tests (DESIGN §8 layer 6) for issue 20 item 4, on every dialect: a well-formed request
 * to /token, /introspect, /revoke, /par, /authorize or /register with a control character put into
 * any of its parameters (name or value), its Basic credentials or its JSON metadata is never a 5xx.
 * It is refused at the boundary: JSON `invalid_request` with no-store (or `invalid_client` when
 * only the Basic credentials carry it, audited as a failed authentication), and the error page at
 * /authorize. Bounded runs with fixed seeds, so a failure reproduces.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { assertErrorShape, basicAuthorization, ordersApi, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';
import { testDialects } from '../helpers/storage.ts';

const numRuns = 60;

/** A string with at least one C0 control or DEL, anywhere in it. */
const withControl = fc
  .tuple(
    fc.string({ maxLength: 12 }),
    fc.oneof(fc.integer({ min: 0, max: 0x1f }), fc.constant(0x7f)).map((c) => String.fromCharCode(c)),
    fc.string({ maxLength: 12, unit: fc.oneof(fc.constantFrom('a', '-', ':', ' ', 'é', '\u0000', '\n', '\t', '\u007f'), fc.string({ minLength: 1, maxLength: 1 })) }),
  )
  .map(([before, control, after]) => `${before}${control}${after}`);

/** Well-formed requests to each endpoint, before one of their parts is spoiled. */
function requests(f: ProtocolFixture, path: string): [string, string][] {
  switch (path) {
    case '/token':
      return [['grant_type', 'client_credentials'], ['resource', ordersApi], ['scope', 'order:create']];
    case '/introspect':
      return [['token', 'abc'], ['token_type_hint', 'access_token']];
    case '/revoke':
      return [['token', 'abc'], ['token_type_hint', 'refresh_token']];
    case '/par':
      return [['response_type', 'code'], ['redirect_uri', 'https://ui.example.com/callback'], ['scope', 'order:create'], ['code_challenge', 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'], ['code_challenge_method', 'S256'], ['state', 's']];
    case '/authorize':
      return [['client_id', 'trading-ui'], ['response_type', 'code'], ['redirect_uri', 'https://ui.example.com/callback'], ['scope', 'order:create'], ['code_challenge', 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'], ['code_challenge_method', 'S256'], ['state', f.issuer]];
    default:
      throw new Error(path);
  }
}

/** Which part of the request gets the control character. */
type Spoil = { where: 'value' | 'name'; index: number; text: string } | { where: 'client_id' | 'secret'; text: string };

async function fuzzForm(f: ProtocolFixture, path: string, seed: number): Promise<void> {
  const base = requests(f, path);
  const spoil: fc.Arbitrary<Spoil[]> = fc.array(
    fc.oneof(
      fc.record({ where: fc.constantFrom('value' as const, 'name' as const), index: fc.nat({ max: base.length - 1 }), text: withControl }),
      ...(path === '/authorize' ? [] : [fc.record({ where: fc.constantFrom('client_id' as const, 'secret' as const), text: withControl })]),
    ),
    { minLength: 1, maxLength: 3 },
  );
  await fc.assert(
    fc.asyncProperty(spoil, fc.nat(), async (spoils, at) => {
      const pairs = base.map(([name, value]) => [name, value] as [string, string]);
      let clientId = path === '/introspect' ? 'orders-gateway' : 'trading-ui';
      let secret = f.secrets[clientId]!;
      let inForm = false;
      for (const s of spoils) {
        const splice = (text: string) => `${text.slice(0, at % (text.length + 1))}${s.text}${text.slice(at % (text.length + 1))}`;
        if (s.where === 'client_id') clientId = splice(clientId);
        else if (s.where === 'secret') secret = splice(secret);
        else if ('index' in s) {
          inForm = true;
          const pair = pairs[s.index]!;
          if (s.where === 'name') pair[0] = splice(pair[0]);
          else pair[1] = splice(pair[1]);
        }
      }
      const body = new URLSearchParams(pairs).toString();
      const label = `${path} ${JSON.stringify({ spoils, at })}`;
      if (path === '/authorize') {
        for (const response of [
          await f.inject({ method: 'GET', url: `/authorize?${body}` }),
          await f.inject({ method: 'POST', url: '/authorize', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: body }),
        ]) {
          assert.equal(response.statusCode, 400, `${label} → ${response.statusCode} ${response.body.slice(0, 200)}`);
          assert.equal(response.headers.location, undefined, `never a redirect: ${label}`);
          assert.equal(response.headers['cache-control'], 'no-store', label);
        }
        return;
      }
      // Throttling would turn the audited 401s into 429s: these runs are about the boundary, not it.
      f.clock.advance(61_000);
      const failuresBefore = (await f.auditEvents('client.auth_failed')).length;
      const response = await f.post(path, { auth: basicAuthorization(clientId, secret), form: body });
      assert.ok(response.statusCode < 500, `never a 5xx: ${label} → ${response.statusCode} ${response.body}`);
      assertErrorShape(response, label);
      const { error } = response.json() as { error: string };
      if (inForm) {
        assert.equal(response.statusCode, 400, label);
        assert.equal(error, 'invalid_request', label);
      } else {
        // Only the Basic credentials are spoiled: a failed client authentication, audited.
        assert.equal(response.statusCode, 401, label);
        assert.equal(error, 'invalid_client', label);
        assert.equal((await f.auditEvents('client.auth_failed')).length, failuresBefore + 1, `audited: ${label}`);
      }
    }),
    { numRuns, seed },
  );
}

for (const dialect of testDialects()) {
  describe(`control characters in any parameter never give a 5xx on ${dialect.name}`, () => {
    test('the token endpoint refuses them with invalid_request or invalid_client, no-store JSON', async (t) => fuzzForm(await protocolFixture(t, { dialect }), '/token', 2001));
    test('the introspection endpoint refuses them with invalid_request or invalid_client, no-store JSON', async (t) => fuzzForm(await protocolFixture(t, { dialect }), '/introspect', 2002));
    test('the revocation endpoint refuses them with invalid_request or invalid_client, no-store JSON', async (t) => fuzzForm(await protocolFixture(t, { dialect }), '/revoke', 2003));
    test('the PAR endpoint refuses them with invalid_request or invalid_client, no-store JSON', async (t) => fuzzForm(await protocolFixture(t, { dialect }), '/par', 2004));
    test('the authorization endpoint answers them with its error page, never a redirect', async (t) => fuzzForm(await protocolFixture(t, { dialect }), '/authorize', 2005));

    test('the registration endpoint refuses them anywhere in the metadata with invalid_request naming the path', async (t) => {
      const f = await protocolFixture(t, { dialect });
      const initial = await f.initialAccessToken({ uses: 1_000 });
      const metadata = (): Record<string, unknown> => ({
        client_name: 'Desk',
        grant_types: ['client_credentials'],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: 'order:create',
        redirect_uris: ['https://desk.example.com/cb'],
        jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA', kid: 'k' }] },
      });
      /** Paths of the strings in `metadata()`, each one a place to spoil. */
      const places = ['client_name', 'grant_types.0', 'token_endpoint_auth_method', 'scope', 'redirect_uris.0', 'jwks.keys.0.kid', 'jwks.keys.0.crv', 'key:client_name', 'key:jwks.keys.0.kid'];
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(...places), withControl, async (place, text) => {
          const document = metadata();
          const keyOnly = place.startsWith('key:');
          const steps = place.replace('key:', '').split('.');
          let holder = document as Record<string, unknown>;
          for (const step of steps.slice(0, -1)) holder = holder[step] as Record<string, unknown>;
          const last = steps.at(-1)!;
          if (keyOnly) {
            holder[`${last}${text}`] = holder[last];
            delete holder[last];
          } else {
            holder[last] = `${holder[last] as string}${text}`;
          }
          const response = await f.inject({
            method: 'POST',
            url: '/register',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${initial}` },
            payload: JSON.stringify(document),
          });
          const label = `${place} ${JSON.stringify(text)} → ${response.statusCode} ${response.body.slice(0, 200)}`;
          const whitespaceOnly = !keyOnly && !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(text);
          assert.ok(response.statusCode < 500, `never a 5xx: ${label}`);
          if (whitespaceOnly) return; // a line break in a JSON value passes the boundary; the metadata rules decide
          assertErrorShape(response, label);
          assert.equal(response.statusCode, 400, label);
          assert.equal(response.json().error, 'invalid_request', label);
          assert.match(response.json().error_description as string, /control character/, label);
        }),
        { numRuns, seed: 2006 },
      );
    });
  });
}
