import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { decodeJwt } from 'jose';
import { acr } from '../../../src/identity/acr.ts';
import { scimReachOf } from '../../../src/lifecycle/scim/reach.ts';
import { scimAudience } from '../../../src/resource-servers/builtins.ts';
import type { AccessTokenClaims } from '../../../src/tokens/claims.ts';
import { codeFlowFixture, webRedirect, type CodeFlowFixture } from '../../authorization/fixture.ts';
import { testDialects, type TestDialect } from '../../helpers/storage.ts';

// SCIM with a person's own token (src/lifecycle/scim/reach.ts): an HR officer holding scim:read
// and scim:write through an app reaches the people and desks of the legal entities of her own
// desks — no one else's — exactly as her firm's provisioning client would.

const userSchema = 'urn:ietf:params:scim:schemas:core:2.0:User';
const errorSchema = 'urn:ietf:params:scim:api:messages:2.0:Error';
const patchOp = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const institution = 'urn:clearance:params:scim:schemas:extension:institution:2.0:User';
const firmA = '5493001KJTIIGC8Y1R12';
const firmB = '529900T8BM49AURSDO55';

interface PersonScim {
  f: CodeFlowFixture;
  /** Hanna of firm A's HR desk: her own SCIM token, through the HR app's code flow. */
  hanna: string;
  alice: string;
  bob: string;
  call(method: string, path: string, body?: unknown): Promise<LightMyRequestResponse>;
}

async function personScim(t: TestContext, dialect: TestDialect): Promise<PersonScim> {
  const f = await codeFlowFixture(t, { dialect, risk: 'off' });
  const ids: Record<string, string> = {};
  for (const username of ['hanna', 'alice', 'bob']) ids[username] = await f.user(username);
  await f.apply({
    regions: [{ id: 'uk' }],
    legal_entities: [
      { lei: firmA, name: 'Broker A Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'a-hr', name: 'A HR' }, { id: 'a-fx', name: 'A FX' }] },
      { lei: firmB, name: 'Broker B Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'b-fx', name: 'B FX' }] },
    ],
    clients: [{ client_id: 'hr-app', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [webRedirect], scope: 'scim:read scim:write' }],
    users: [
      { username: 'hanna', name: 'Hanna of A', desks: ['a-hr'] },
      { username: 'alice', name: 'Alice of A', desks: ['a-fx'], attributes: { lei: firmA } },
      { username: 'bob', name: 'Bob of B', desks: ['b-fx'], attributes: { lei: firmB } },
    ],
  });
  const person = await f.signIn('hanna', { acr: acr.phishingResistant, amr: ['hwk', 'user'] });
  const { code, pkce } = await f.authorizeAndApprove({ client: 'hr-app', person, query: { scope: 'scim:read scim:write', resource: scimAudience(f.issuer) } });
  const redeemed = await f.redeem('hr-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  const hanna = redeemed.json().access_token as string;
  return {
    f,
    hanna,
    alice: ids.alice!,
    bob: ids.bob!,
    call(method, path, body) {
      return f.inject({
        method: method as 'GET',
        url: `/scim/v2${path}`,
        headers: { authorization: `Bearer ${hanna}`, ...(body !== undefined ? { 'content-type': 'application/scim+json' } : {}) },
        ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
      });
    },
  };
}

function assertScimError(response: LightMyRequestResponse, status: number, scimType?: string): void {
  assert.equal(response.statusCode, status, response.body);
  const body = response.json() as Record<string, unknown>;
  assert.deepEqual(body.schemas, [errorSchema]);
  assert.equal(body.scimType, scimType);
  assert.equal(response.headers['cache-control'], 'no-store');
}

const userNames = (response: LightMyRequestResponse) => (response.json() as { Resources: { userName: string }[] }).Resources.map((r) => r.userName);

for (const dialect of testDialects()) {
  describe(`SCIM with a person’s own token on ${dialect.name}`, () => {
    test('reads only the people and desks of the legal entity of her desks; another firm’s person and desk are 404', async (t) => {
      const s = await personScim(t, dialect);
      const listed = await s.call('GET', '/Users');
      assert.equal(listed.statusCode, 200, listed.body);
      assert.deepEqual(userNames(listed), ['alice', 'hanna']);
      assert.deepEqual(userNames(await s.call('GET', `/Users?filter=${encodeURIComponent('userName eq "bob"')}`)), []);
      assert.equal((await s.call('GET', `/Users/${s.alice}`)).statusCode, 200);
      assertScimError(await s.call('GET', `/Users/${s.bob}`), 404);
      const groups = await s.call('GET', '/Groups');
      assert.deepEqual((groups.json() as { Resources: { id: string }[] }).Resources.map((g) => g.id), ['a-fx', 'a-hr']);
      assertScimError(await s.call('GET', '/Groups/b-fx'), 404);
    });

    test('changes and creates people of her own legal entity; a person created naming none is of it', async (t) => {
      const s = await personScim(t, dialect);
      const patched = await s.call('PATCH', `/Users/${s.alice}`, { schemas: [patchOp], Operations: [{ op: 'replace', path: 'displayName', value: 'Alice A.' }] });
      assert.equal(patched.statusCode, 200, patched.body);
      const created = await s.call('POST', '/Users', { schemas: [userSchema], userName: 'carol' });
      assert.equal(created.statusCode, 201, created.body);
      assert.equal(created.json()[institution].legalEntity, firmA);
      const moved = await s.call('PATCH', '/Groups/a-fx', { schemas: [patchOp], Operations: [{ op: 'add', path: 'members', value: [{ value: created.json().id }] }] });
      assert.equal(moved.statusCode, 200, moved.body);
    });

    test('a write naming another firm — its person, its legal entity, its desk — is refused and on the record, nothing written', async (t) => {
      const s = await personScim(t, dialect);
      assertScimError(await s.call('PATCH', `/Users/${s.bob}`, { schemas: [patchOp], Operations: [{ op: 'replace', path: 'active', value: false }] }), 404);
      assertScimError(await s.call('POST', '/Users', { schemas: [userSchema, institution], userName: 'dave', [institution]: { legalEntity: firmB } }), 403);
      assertScimError(await s.call('PATCH', `/Users/${s.alice}`, { schemas: [patchOp], Operations: [{ op: 'add', path: `${institution}:desks`, value: ['b-fx'] }] }), 403);
      assertScimError(await s.call('PATCH', '/Groups/b-fx', { schemas: [patchOp], Operations: [{ op: 'add', path: 'members', value: [{ value: s.alice }] }] }), 404);
      assertScimError(await s.call('PATCH', '/Groups/a-fx', { schemas: [patchOp], Operations: [{ op: 'add', path: 'members', value: [{ value: s.bob }] }] }), 400, 'invalidValue');
      const bob = await s.f.ctx.storage.db.selectFrom('users').select(['status', 'desks']).where('id', '=', s.bob).executeTakeFirstOrThrow();
      assert.deepEqual([bob.status, JSON.parse(bob.desks)], ['active', ['b-fx']]);
      assert.equal(await s.f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', 'dave').executeTakeFirst(), undefined);
      const refused = await s.f.auditEvents('scim.refused');
      assert.deepEqual(
        refused.map((e) => [e.client, e.actor, e.details?.reason, e.details?.operation, e.details?.resource]),
        [
          ['hr-app', await s.f.user('hanna'), 'not_of_legal_entity', 'patch', 'User'],
          ['hr-app', await s.f.user('hanna'), 'not_of_legal_entity', 'create', 'User'],
          ['hr-app', await s.f.user('hanna'), 'not_of_legal_entity', 'patch', 'User'],
          ['hr-app', await s.f.user('hanna'), 'not_of_legal_entity', 'patch', 'Group'],
          ['hr-app', await s.f.user('hanna'), 'not_of_legal_entity', 'patch', 'Group'],
        ],
      );
    });

    test('her reach is worked out from one read of the desks’ legal entities', async (t) => {
      const s = await personScim(t, dialect);
      const snapshot = s.f.ctx.entities.snapshot.bind(s.f.ctx.entities);
      let reads = 0;
      s.f.ctx.entities.snapshot = async () => {
        reads++;
        return snapshot();
      };
      const reach = await scimReachOf(s.f.ctx, decodeJwt(s.hanna) as unknown as AccessTokenClaims);
      assert.deepEqual(reach.kind === 'entities' ? [...reach.leis] : reach.kind, [firmA]);
      assert.equal(reads, 1);
    });
  });
}
