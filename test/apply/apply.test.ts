import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TrustChangeByPerson, executeApply, planApply, trustChanges, type ApplyPlan } from '../../src/apply/index.ts';
import { parseDocument } from '../../src/apply/parse.ts';
import { clientSecretMatches, hashClientSecret } from '../../src/clients/secret.ts';
import type { Context } from '../../src/context.ts';
import { formatProblem } from '../../src/validation.ts';
import { testContext } from '../helpers/storage.ts';
import { consoleClientId } from '../../src/console/client.ts';

const source = { actor: 'test', via: 'cli' } as const;

const validYaml = `# Clearance configuration for the execution desk
resource_servers:
  - identifier: https://orders.example.com
    name: Order API
    scopes: [order:create, order:cancel, order:amend]
    access_token_ttl: 300
    require_sender_constraint: true
  - identifier: https://clearing.example.com
    scopes:
      - settlement:submit
clients:
  - client_id: broker-1
    client_name: Broker One
    owner_lei: 5493001KJTIIGC8Y1R12
    token_endpoint_auth_method: client_secret_basic
    grant_types: [client_credentials]
    scope: order:create order:cancel
  - client_id: trading-ui
    kind: app
    token_endpoint_auth_method: none
    grant_types: [authorization_code, refresh_token]
    redirect_uris:
      - https://ui.example.com/callback
      - http://127.0.0.1:8123/callback
    scope: openid order:create
`;

const validJson = JSON.stringify({
  resource_servers: [
    {
      identifier: 'https://orders.example.com',
      name: 'Order API',
      scopes: ['order:create', 'order:cancel', 'order:amend'],
      access_token_ttl: 300,
      require_sender_constraint: true,
    },
    { identifier: 'https://clearing.example.com', scopes: ['settlement:submit'] },
  ],
  clients: [
    {
      client_id: 'broker-1',
      client_name: 'Broker One',
      owner_lei: '5493001KJTIIGC8Y1R12',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      scope: 'order:create order:cancel',
    },
    {
      client_id: 'trading-ui',
      kind: 'app',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      redirect_uris: ['https://ui.example.com/callback', 'http://127.0.0.1:8123/callback'],
      scope: 'openid order:create',
    },
  ],
});

/** Parses and plans a document, failing the test with its problems if it is invalid. */
async function plan(ctx: Context, text: string, fileName: string): Promise<ApplyPlan> {
  const parsed = parseDocument(text, fileName);
  assert.deepEqual(parsed.problems, []);
  const { plan, problems } = await planApply(ctx, parsed.value);
  assert.deepEqual(problems.map(formatProblem), []);
  return plan!;
}

/** Every row Clearance's configuration lives in, to show a database did not change. */
async function snapshot(ctx: Context): Promise<unknown> {
  const { db } = ctx.storage;
  return {
    clients: await db.selectFrom('clients').selectAll().orderBy('client_id').execute(),
    resourceServers: await db.selectFrom('resource_servers').selectAll().orderBy('identifier').execute(),
    generations: await db.selectFrom('generations').selectAll().orderBy('name').execute(),
    keys: await db.selectFrom('signing_keys').select(['kid', 'retired_at']).orderBy('kid').execute(),
  };
}

describe('apply', () => {
  test('reports every problem of an invalid document with its exact path, and changes nothing', async (t) => {
    const { ctx } = await testContext({ t });
    const issuer = ctx.config.issuer;
    const document = {
      resource_servers: [
        { identifier: 'https://orders.example.com', scopes: ['order:create', 'order:cancel'] },
        { identifier: 'https://reports.example.com', scopes: ['report:view'], access_token_ttl: 99999 },
        { identifier: `${issuer}/admin`, scopes: ['admin:read'] },
        { identifier: 'http://clearing.example.com', scopes: ['settlement:submit'] },
      ],
      clients: [
        { client_id: 'broker-1', grant_types: ['client_credentials'], scope: 'order:create' },
        { client_id: 'broker-2', grant_types: ['client_credentials'], colour: 'blue' },
        {
          client_id: 'web-app',
          redirect_uris: ['https://app.example.com/cb', 'http://app.example.com/cb'],
        },
        { client_id: 'broker-3', grant_types: ['client_credentials'], scope: 'Admin' },
        { client_id: 'broker-1', grant_types: ['client_credentials'] },
        { client_id: 'broker-4', grant_types: ['client_credentials'], scope: 'order:create position:view' },
        {
          client_id: 'algo-7',
          kind: 'agent',
          token_endpoint_auth_method: 'private_key_jwt',
          grant_types: ['client_credentials'],
          jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA', d: 'c2VjcmV0' }] },
        },
        { client_id: 'broker-5', grant_types: ['client_credentials'], owner_lei: '5493001KJTIIGC8Y1R13' },
      ],
      partners: [],
      frobs: {},
    };
    const before = await snapshot(ctx);
    const { plan: result, problems } = await planApply(ctx, document);
    assert.equal(result, undefined);
    assert.deepEqual(problems.map(formatProblem), [
      'frobs: is not a recognised section',
      'resource_servers[1].access_token_ttl: must be from 1 to 3600',
      'resource_servers[3].identifier: must be https (http only for loopback hosts)',
      'clients[1].colour: is not a recognised field',
      'clients[2].redirect_uris[1]: must be https',
      'clients[3].scope: "Admin" is not a business verb scope such as order:create',
      'clients[6].jwks.keys[0]: must be a public key (has private member "d")',
      'clients[7].owner_lei: must be a valid LEI (ISO 17442: 20 characters, check digits)',
      'clients[4].client_id: "broker-1" is also defined at clients[0]',
      'resource_servers[2].identifier: is reserved for Clearance itself',
      'clients[5].scope: "position:view" is not offered by any resource server',
    ]);
    assert.deepEqual(await snapshot(ctx), before);
  });

  test('takes http only for a loopback host, in each section that allows it, by one definition', async (t) => {
    const { ctx } = await testContext({ t });
    const hostsOf = (host: string, n: number) => ({
      resource_servers: [{ identifier: `http://${host}/api`, scopes: ['order:create'] }],
      clients: [{ client_id: `keys-${n}`, token_endpoint_auth_method: 'private_key_jwt', grant_types: ['client_credentials'], scope: 'order:create', jwks_uri: `http://${host}/jwks` }],
      alerts: { webhooks: [{ id: `hook-${n}`, url: `http://${host}/hook`, types: ['*'], signing: 'jws', allow_private_network: true }] },
    });
    for (const [n, host] of ['127.0.0.2:8081', '[::1]:8081', '[::ffff:127.0.0.1]:8081', 'localhost:8081'].entries()) {
      assert.deepEqual((await planApply(ctx, hostsOf(host, n))).problems.map(formatProblem), [], host);
    }
    for (const [n, host] of ['api.localhost', '127.0.0.1.nip.io', 'localhost.example.com'].entries()) {
      assert.deepEqual((await planApply(ctx, hostsOf(host, n))).problems.map(formatProblem), [
        'resource_servers[0].identifier: must be https (http only for loopback hosts)',
        'clients[0].jwks_uri: must be https',
        'alerts.webhooks[0].url: must be https (http only to a loopback host, in development, with allow_private_network)',
      ], host);
    }
  });

  test('addresses problems in a YAML file by the same paths', async (t) => {
    const { ctx } = await testContext({ t });
    const text = validYaml.replace('https://ui.example.com/callback', 'http://ui.example.com/callback');
    const parsed = parseDocument(text, 'desk.yaml');
    const { problems } = await planApply(ctx, parsed.value);
    assert.deepEqual(problems.map(formatProblem), ['clients[1].redirect_uris[0]: must be https']);
  });

  test('refuses a document with a control character in any key or string, each at its path, and changes nothing', async (t) => {
    const { ctx } = await testContext({ t });
    const before = await snapshot(ctx);
    // YAML escapes ("\0", "\e") and JSON escapes reach the document the same way.
    const text = validYaml.replace('https://ui.example.com/callback', '"https://ui.example.com/call\\0back"').replace('# Clearance', '"x\\ey": 1\n# Clearance');
    const parsed = parseDocument(text, 'desk.yaml');
    assert.deepEqual(parsed.problems, []);
    const { plan: result, problems } = await planApply(ctx, parsed.value);
    assert.equal(result, undefined);
    assert.deepEqual(problems.map(formatProblem), ['has a key that contains a control character', 'clients[1].redirect_uris[0]: contains a control character']);
    const json = { clients: [{ client_id: 'broker-1', client_name: 'Desk\u007f', grant_types: ['client_credentials'], jwks: { keys: [{ kid: 'k\u0000' }] } }] };
    assert.deepEqual((await planApply(ctx, json)).problems.map(formatProblem), [
      'clients[0].client_name: contains a control character',
      'clients[0].jwks.keys[0].kid: contains a control character',
    ]);
    // A line break or tab in a string is text (a description may have several lines).
    const multiline = { resource_servers: [{ identifier: 'https://orders.example.com', name: 'Order\tAPI\nline two', scopes: ['order:create'] }] };
    assert.deepEqual((await planApply(ctx, multiline)).problems.map(formatProblem), []);
    assert.deepEqual(await snapshot(ctx), before);
  });

  test('refuses a document that is not an object, unparseable, or has a duplicate key', async (t) => {
    const { ctx } = await testContext({ t });
    assert.deepEqual((await planApply(ctx, [])).problems.map(formatProblem), ['must be an object']);
    assert.deepEqual((await planApply(ctx, { clients: {} })).problems.map(formatProblem), ['clients: must be an array']);
    const badJson = parseDocument('{"clients": [', 'x.json');
    assert.match(formatProblem(badJson.problems[0]!), /^x\.json is not valid JSON/);
    const badYaml = parseDocument('clients:\n  - client_id: a\n   bad: [', 'x.yaml');
    assert.match(formatProblem(badYaml.problems[0]!), /^x\.yaml is not valid YAML \(line \d+\)/);
    const duplicate = parseDocument('clients: []\nclients: []\n', 'x.yml');
    assert.equal(duplicate.problems.length, 1, 'a duplicate key is an error, not a silent override');
  });

  test('applies a valid YAML document, and the same document as JSON finds nothing to change', async (t) => {
    const { ctx } = await testContext({ t });
    assert.deepEqual(parseDocument(validYaml, 'desk.yaml').value, parseDocument(validJson, 'desk.json').value);

    const first = await executeApply(ctx, await plan(ctx, validYaml, 'desk.yaml'), source);
    assert.deepEqual(first.changes, [
      { kind: 'resource_server', id: 'https://orders.example.com', outcome: 'created' },
      { kind: 'resource_server', id: 'https://clearing.example.com', outcome: 'created' },
      { kind: 'client', id: 'broker-1', outcome: 'created' },
      { kind: 'client', id: 'trading-ui', outcome: 'created' },
    ]);
    assert.deepEqual(await ctx.resourceServers.get('https://clearing.example.com'), {
      identifier: 'https://clearing.example.com',
      scopes: ['settlement:submit'],
      access_token_ttl: 300,
      require_sender_constraint: false,
    });
    const ui = await ctx.clients.get('trading-ui');
    assert.equal(ui?.metadata.kind, 'app');
    assert.equal(ui?.secretHash, null, 'a public client has no secret');
    assert.equal((await ctx.clients.get('broker-1'))?.metadata.kind, 'service', 'kind defaults to service');

    const second = await executeApply(ctx, await plan(ctx, validJson, 'desk.json'), source);
    assert.ok(second.changes.every((c) => c.outcome === 'unchanged'), JSON.stringify(second.changes));
  });

  test('applying the same file twice reports everything unchanged and writes nothing', async (t) => {
    const { ctx, clock } = await testContext({ t });
    await executeApply(ctx, await plan(ctx, validYaml, 'desk.yaml'), source);
    const before = await snapshot(ctx);
    clock.advance(60_000);
    const again = await executeApply(ctx, await plan(ctx, validYaml, 'desk.yaml'), source);
    assert.equal(again.changes.length, 4);
    assert.ok(again.changes.every((c) => c.outcome === 'unchanged'), JSON.stringify(again.changes));
    assert.deepEqual(again.secrets, {});
    assert.deepEqual(await snapshot(ctx), before, 'no updated_at moved and no generation was bumped');
    const audited = await ctx.storage.db.selectFrom('audit_events').select('type').where('type', '=', 'config.applied').execute();
    assert.equal(audited.length, 1, 'only the apply that changed something is audited');
  });

  test('updates only what changed, and keeps entries the file no longer lists', async (t) => {
    const { ctx, clock } = await testContext({ t });
    await executeApply(ctx, await plan(ctx, validYaml, 'desk.yaml'), source);
    const updatedAt = async () =>
      // Without the console's built-in client (src/console/client.ts), which apply never touches.
      (await ctx.storage.db.selectFrom('clients').select(['client_id', 'updated_at']).where('client_id', '!=', consoleClientId).orderBy('client_id').execute()).map((row) => ({ ...row }));
    const before = await updatedAt();
    clock.advance(60_000);
    const changed = `clients:
  - client_id: broker-1
    client_name: Broker One Ltd
    owner_lei: 5493001KJTIIGC8Y1R12
    token_endpoint_auth_method: client_secret_basic
    grant_types: [client_credentials]
    scope: order:create order:cancel
`;
    const result = await executeApply(ctx, await plan(ctx, changed, 'desk.yaml'), source);
    assert.deepEqual(result.changes, [{ kind: 'client', id: 'broker-1', outcome: 'updated' }]);
    assert.deepEqual(await updatedAt(), [
      { client_id: 'broker-1', updated_at: clock.now() },
      { client_id: 'trading-ui', updated_at: before[1]!.updated_at },
    ]);
    assert.equal((await ctx.clients.get('broker-1'))?.metadata.client_name, 'Broker One Ltd');
    assert.ok(await ctx.resourceServers.get('https://orders.example.com'));
  });

  test('gives a client_secret_basic client a secret shown once, stored only as a hash, and kept on re-apply', async (t) => {
    const { ctx } = await testContext({ t });
    const first = await executeApply(ctx, await plan(ctx, validYaml, 'desk.yaml'), source);
    assert.deepEqual(Object.keys(first.secrets), ['broker-1']);
    const secret = first.secrets['broker-1']!;
    assert.ok(Buffer.from(secret, 'base64url').length >= 32, 'at least 256 bits');

    const row = await ctx.storage.db.selectFrom('clients').selectAll().where('client_id', '=', 'broker-1').executeTakeFirstOrThrow();
    assert.equal(row.secret_hash, hashClientSecret(secret));
    assert.ok(!JSON.stringify(await snapshot(ctx)).includes(secret), 'the secret itself is nowhere in the database');
    assert.ok(clientSecretMatches(secret, row.secret_hash!));
    assert.ok(!clientSecretMatches(secret + 'x', row.secret_hash!));

    const again = await executeApply(ctx, await plan(ctx, validYaml, 'desk.yaml'), source);
    assert.deepEqual(again.secrets, {}, 'not shown a second time');
    const renamed = await executeApply(ctx, await plan(ctx, validYaml.replace('Broker One', 'Broker 1'), 'desk.yaml'), source);
    assert.deepEqual(renamed.secrets, {}, 'an update keeps the secret');
    assert.equal((await ctx.clients.get('broker-1'))?.secretHash, hashClientSecret(secret));
  });

  test('a change away from a client secret method drops the hash, and a change back issues a new secret', async (t) => {
    const { ctx } = await testContext({ t });
    const first = await executeApply(ctx, await plan(ctx, validYaml, 'desk.yaml'), source);
    const withKeys = validYaml.replace(
      'token_endpoint_auth_method: client_secret_basic',
      `token_endpoint_auth_method: tls_client_auth
    tls_client_auth_subject_dn: CN=broker-1,O=Broker One`,
    );
    await executeApply(ctx, await plan(ctx, withKeys, 'desk.yaml'), source);
    assert.equal((await ctx.clients.get('broker-1'))?.secretHash, null);
    const back = await executeApply(ctx, await plan(ctx, validYaml, 'desk.yaml'), source);
    assert.ok(back.secrets['broker-1']);
    assert.notEqual(back.secrets['broker-1'], first.secrets['broker-1']);
  });
});

describe('LEI validation in apply documents', () => {
  const client = (owner_lei: unknown) => ({ clients: [{ client_id: 'c', grant_types: ['client_credentials'], owner_lei }] });

  test('accepts an LEI whose ISO 7064 check digits are right', async (t) => {
    const { ctx } = await testContext({ t });
    assert.deepEqual((await planApply(ctx, client('5493001KJTIIGC8Y1R12'))).problems, []);
  });

  test('refuses an LEI with a wrong check digit, a transposition, lower case or a wrong length', async (t) => {
    const { ctx } = await testContext({ t });
    for (const lei of ['5493001KJTIIGC8Y1R13', '5493001KJTIIGC8Y1R21', '4593001KJTIIGC8Y1R12', '5493001kjtiigc8y1r12', '5493001KJTIIGC8Y1R1', '5493001KJTIIGC8Y1R120', '5493001KJTIIGC8Y1RA2']) {
      const { problems } = await planApply(ctx, client(lei));
      assert.deepEqual(problems.map(formatProblem), ['clients[0].owner_lei: must be a valid LEI (ISO 17442: 20 characters, check digits)'], lei);
    }
  });
});

describe('what counts as a change of what Clearance trusts (trustChanges)', () => {
  test('counts a partner, identity provider, certificate sign-in authority, pipeline or KYC provider added or changed; not one removed, disabled or unchanged, nor a client', () => {
    const changes = [
      { kind: 'partner', id: 'acme', outcome: 'updated' },
      { kind: 'partner', id: 'old', outcome: 'disabled' },
      { kind: 'identity_provider', id: 'fund-x', outcome: 'created' },
      { kind: 'person_certificate_authority', id: 'corporate', outcome: 'removed' },
      { kind: 'person_certificate_authority', id: 'smartcards', outcome: 'updated' },
      { kind: 'pipeline', id: 'ci-main', outcome: 'unchanged' },
      { kind: 'kyc_provider', id: 'veriff', outcome: 'created' },
      { kind: 'client', id: 'broker-1', outcome: 'updated' },
    ] as const;
    assert.deepEqual(
      trustChanges([...changes]).map((c) => `${c.kind} ${c.id}`),
      ['partner acme', 'identity_provider fund-x', 'person_certificate_authority smartcards', 'kyc_provider veriff'],
    );
  });

  test("refuses a person's apply of a trust change without the sign-in it asks, writing nothing; with it, or as a client, it applies", async (t) => {
    const { ctx } = await testContext({ t });
    const key = { kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0', kid: 'k1' };
    const document = { pipelines: [{ id: 'ci-main', jwks: { keys: [key] } }] };
    const { plan } = await planApply(ctx, document);
    const person = { actor: 'trading-ui', via: 'admin-api', person: 'user-1' } as const;
    await assert.rejects(executeApply(ctx, plan!, person), (error: unknown) => error instanceof TrustChangeByPerson && /pipeline ci-main/.test(error.message));
    assert.equal((await ctx.agents.snapshot()).pipelines.has('ci-main'), false);
    assert.deepEqual((await executeApply(ctx, plan!, { ...person, personMayChangeTrust: true })).changes, [{ kind: 'pipeline', id: 'ci-main', outcome: 'created' }]);
    assert.deepEqual((await executeApply(ctx, plan!, { actor: 'ci', via: 'admin-api' })).changes, [{ kind: 'pipeline', id: 'ci-main', outcome: 'unchanged' }]);
  });
});
