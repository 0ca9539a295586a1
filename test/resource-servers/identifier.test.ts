import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { executeApply, planApply } from '../../src/apply/index.ts';
import { parseDocument } from '../../src/apply/parse.ts';
import { formatProblem } from '../../src/validation.ts';
import { assertOAuthError, decodeJwt, protocolFixture, secretClient } from '../endpoints/fixture.ts';
import { testContext } from '../helpers/storage.ts';

// A resource server's `identifier` (src/resource-servers/definition.ts, docs/apply.md): https (http
// only for a loopback host) or a URN (RFC 8141); every other scheme is refused, in apply and through
// the admin API alike. A request's `resource` is still matched by equality with a registered one.

const schemeMessage = (scheme: string) => `must be https (http only for loopback hosts) or a URN (urn:<NID>:<NSS>), not ${scheme}`;
const nidMessage = 'must be a URN urn:<NID>:<NSS> (RFC 8141) whose NID is 2–32 letters, digits or -, starting and ending with a letter or digit';
const nssMessage = 'must be a URN urn:<NID>:<NSS> (RFC 8141) whose NSS is non-empty and of URI path characters (no ?+ or ?= component)';

const server = (identifier: string) => ({ identifier, scopes: ['order:create'] });

describe('a resource server’s identifier in apply', () => {
  test('refuses every scheme but https, loopback http and urn, each at its path, naming what is allowed', async (t) => {
    const { ctx } = await testContext({ t });
    const refused = ['ftp://orders.example.com/api', 'file:///etc/passwd', 'javascript:alert(1)', 'data:,orders', 'mailto:ops@example.com', 'wss://orders.example.com'];
    const { plan, problems } = await planApply(ctx, { resource_servers: refused.map(server) });
    assert.equal(plan, undefined);
    assert.deepEqual(problems.map(formatProblem), [
      `resource_servers[0].identifier: ${schemeMessage('ftp:')}`,
      `resource_servers[1].identifier: ${schemeMessage('file:')}`,
      `resource_servers[2].identifier: ${schemeMessage('javascript:')}`,
      `resource_servers[3].identifier: ${schemeMessage('data:')}`,
      `resource_servers[4].identifier: ${schemeMessage('mailto:')}`,
      `resource_servers[5].identifier: ${schemeMessage('wss:')}`,
    ]);
  });

  test('refuses a URN whose NID is malformed or whose NSS is empty or malformed', async (t) => {
    const { ctx } = await testContext({ t });
    const cases: [string, string][] = [
      ['urn:example:', nssMessage],
      ['urn:example', nssMessage],
      ['urn:example:orders api', nssMessage],
      ['urn:example:/orders', nssMessage],
      ['urn:example:orders?=v1', nssMessage],
      ['urn:example:orders?+resolve', nssMessage],
      ['urn:x:orders', nidMessage],
      ['urn:-example:orders', nidMessage],
      ['urn:example-:orders', nidMessage],
      ['urn:ex_ample:orders', nidMessage],
      [`urn:${'a'.repeat(33)}:orders`, nidMessage],
      ['urn::orders', nidMessage],
      ['urn:', nidMessage],
    ];
    for (const [identifier, message] of cases) {
      const { plan, problems } = await planApply(ctx, { resource_servers: [server(identifier)] });
      assert.equal(plan, undefined, identifier);
      assert.deepEqual(problems.map(formatProblem), [`resource_servers[0].identifier: ${message}`], identifier);
    }
  });

  test('accepts https, loopback http and URNs, and stores each exactly as given', async (t) => {
    const { ctx } = await testContext({ t });
    const accepted = [
      'https://orders.example.com/api',
      'http://127.0.0.1:8081/api',
      'urn:example:orders-api',
      'URN:Example-2:Orders%2Fv1:eu',
      `urn:${'a'.repeat(32)}:x`,
      'urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66',
    ];
    const { plan, problems } = await planApply(ctx, { resource_servers: accepted.map(server) });
    assert.deepEqual(problems.map(formatProblem), []);
    await executeApply(ctx, plan!, { actor: 'test', via: 'cli' });
    for (const identifier of accepted) assert.equal((await ctx.resourceServers.get(identifier))?.identifier, identifier);
  });

  test('a refused identifier in a YAML document stops the whole apply with the problem named, and stores nothing', async (t) => {
    const { ctx } = await testContext({ t });
    const before = await ctx.storage.db.selectFrom('resource_servers').select('identifier').orderBy('identifier').execute();
    const text = `resource_servers:
  - identifier: https://orders.example.com
    scopes: [order:create]
  - identifier: "javascript:alert(document.domain)"
    scopes: [settlement:submit]
`;
    const parsed = parseDocument(text, 'desk.yaml');
    assert.deepEqual(parsed.problems, []);
    const { plan, problems } = await planApply(ctx, parsed.value);
    assert.equal(plan, undefined);
    assert.deepEqual(problems.map(formatProblem), [`resource_servers[1].identifier: ${schemeMessage('javascript:')}`]);
    assert.deepEqual(await ctx.storage.db.selectFrom('resource_servers').select('identifier').orderBy('identifier').execute(), before);
  });
});

describe('a resource server’s identifier over HTTP', () => {
  test('a URN audience is requested by naming it exactly as resource, and becomes the token’s aud', async (t) => {
    const f = await protocolFixture(t);
    const urn = 'urn:example:ledger-api';
    await f.apply({ resource_servers: [{ identifier: urn, scopes: ['ledger:read'] }], clients: [secretClient('ledger-reader', 'ledger:read')] });
    const token = await f.accessToken('ledger-reader', { resource: urn, scope: 'ledger:read' });
    assert.equal(decodeJwt(token).payload.aud, urn);
    // Matching is unchanged: a resource must equal a registered identifier (no URN-equivalence).
    assertOAuthError(await f.token({ auth: f.basic('ledger-reader'), form: { grant_type: 'client_credentials', resource: 'URN:example:ledger-api', scope: 'ledger:read' } }), 400, 'invalid_target');
  });

  test('the admin API refuses to register an identifier of another scheme (400) and stores nothing, and takes a URN', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
    const call = (method: 'PUT' | 'GET', body?: unknown) =>
      f.inject({
        method,
        url: '/admin/resource-servers',
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
      });
    for (const identifier of ['javascript:alert(1)', 'file:///etc/passwd']) {
      const refused = assertOAuthError(await call('PUT', { identifier, scopes: ['order:create'], access_token_ttl: 300, require_sender_constraint: false }), 400, 'invalid_request', identifier);
      assert.match(String(refused.error_description), /identifier: must be https \(http only for loopback hosts\) or a URN \(urn:<NID>:<NSS>\), not (javascript|file):/);
    }
    const listed = ((await call('GET')).json().resource_servers as { identifier: string }[]).map((r) => r.identifier);
    assert.ok(!listed.some((i) => i.startsWith('javascript:') || i.startsWith('file:')), listed.join(', '));
    const urn = await call('PUT', { identifier: 'urn:example:orders-api', scopes: ['order:create'], access_token_ttl: 300, require_sender_constraint: false });
    assert.equal(urn.statusCode, 200, urn.body);
    const patched = await f.inject({
      method: 'PATCH',
      url: `/admin/resource-servers/${encodeURIComponent('urn:example:orders-api')}`,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/merge-patch+json' },
      payload: JSON.stringify({ name: 'Orders' }),
    });
    assert.equal(patched.statusCode, 200, patched.body);
    assert.equal(patched.json().name, 'Orders');
  });
});
