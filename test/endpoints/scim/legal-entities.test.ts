import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { scimAudience } from '../../../src/resource-servers/builtins.ts';
import { protocolFixture, secretClient, type ProtocolFixture } from '../fixture.ts';
import { testDialects, type TestDialect } from '../../helpers/storage.ts';

const userSchema = 'urn:ietf:params:scim:schemas:core:2.0:User';
const groupSchema = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const errorSchema = 'urn:ietf:params:scim:api:messages:2.0:Error';
const patchOp = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const institution = 'urn:clearance:params:scim:schemas:extension:institution:2.0:User';

/** Two firms served by one Clearance, each with its own desk and its own HR system. */
const firmA = '5493001KJTIIGC8Y1R12';
const firmB = '529900T8BM49AURSDO55';

interface Firms {
  f: ProtocolFixture;
  /** Tokens for the SCIM API: firm A's HR system, firm B's, and a client of no legal entity. */
  hrA: string;
  hrB: string;
  hrNone: string;
  alice: string;
  bob: string;
  call(token: string, method: string, path: string, body?: unknown): Promise<LightMyRequestResponse>;
}

async function firms(t: Parameters<typeof protocolFixture>[0], dialect: TestDialect, env: NodeJS.ProcessEnv = {}): Promise<Firms> {
  const f = await protocolFixture(t, { dialect, risk: 'off', env });
  await f.apply({
    regions: [{ id: 'uk' }],
    legal_entities: [
      { lei: firmA, name: 'Broker A Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'a-fx', name: 'A FX' }] },
      { lei: firmB, name: 'Broker B Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'b-fx', name: 'B FX' }] },
    ],
    clients: [
      secretClient('hr-a', 'scim:read scim:write', { owner_lei: firmA }),
      secretClient('hr-b', 'scim:read scim:write', { owner_lei: firmB }),
      secretClient('hr-none', 'scim:read scim:write'),
    ],
    users: [
      { username: 'alice', name: 'Alice of A', desks: ['a-fx'], attributes: { lei: firmA } },
      { username: 'bob', name: 'Bob of B', desks: ['b-fx'], attributes: { lei: firmB } },
    ],
  });
  const token = (client: string) => f.accessToken(client, { resource: scimAudience(f.issuer) });
  const idOf = async (username: string) => (await f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirstOrThrow()).id;
  return {
    f,
    hrA: await token('hr-a'),
    hrB: await token('hr-b'),
    hrNone: await token('hr-none'),
    alice: await idOf('alice'),
    bob: await idOf('bob'),
    call(token, method, path, body) {
      return f.inject({
        method: method as 'GET',
        url: `/scim/v2${path}`,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/scim+json' } : {}) },
        ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
      });
    },
  };
}

/** A SCIM error (RFC 7644 §3.12), never a 5xx. */
function assertScimError(response: LightMyRequestResponse, status: number, scimType?: string): void {
  assert.equal(response.statusCode, status, response.body);
  const body = response.json() as Record<string, unknown>;
  assert.deepEqual(body.schemas, [errorSchema]);
  assert.equal(body.status, String(status));
  assert.equal(body.scimType, scimType);
  assert.equal(response.headers['cache-control'], 'no-store');
}

const userNames = (response: LightMyRequestResponse) => (response.json() as { Resources: { userName: string }[] }).Resources.map((r) => r.userName);

async function personRow(f: ProtocolFixture, id: string) {
  const row = await f.ctx.storage.db.selectFrom('users').select(['status', 'desks', 'attributes', 'offboarded_at']).where('id', '=', id).executeTakeFirstOrThrow();
  return { status: row.status, desks: JSON.parse(row.desks) as string[], lei: (JSON.parse(row.attributes) as { lei?: string }).lei, offboarded: row.offboarded_at !== null };
}

for (const dialect of testDialects()) {
  describe(`SCIM per legal entity on ${dialect.name}`, () => {
    test('a firm’s HR system lists and reads only the people of its own legal entity; another firm’s person is 404', async (t) => {
      const s = await firms(t, dialect);
      const listed = await s.call(s.hrA, 'GET', '/Users');
      assert.equal(listed.statusCode, 200, listed.body);
      assert.deepEqual(userNames(listed), ['alice']);
      assert.equal(listed.json().totalResults, 1);
      assert.deepEqual(userNames(await s.call(s.hrA, 'GET', `/Users?filter=${encodeURIComponent('userName eq "bob"')}`)), []);
      assertScimError(await s.call(s.hrA, 'GET', `/Users/${s.bob}`), 404);
      assert.equal((await s.call(s.hrA, 'GET', `/Users/${s.alice}`)).statusCode, 200);
      assert.deepEqual(userNames(await s.call(s.hrB, 'GET', '/Users')), ['bob']);
    });

    test('a firm’s HR system changes and offboards no person of another legal entity: 404 to PUT, PATCH and DELETE, nothing written, each refusal audited', async (t) => {
      const s = await firms(t, dialect);
      const before = await personRow(s.f, s.bob);
      assertScimError(await s.call(s.hrA, 'PATCH', `/Users/${s.bob}`, { schemas: [patchOp], Operations: [{ op: 'replace', path: 'active', value: false }] }), 404);
      assertScimError(await s.call(s.hrA, 'PUT', `/Users/${s.bob}`, { schemas: [userSchema], userName: 'bob', active: false }), 404);
      assertScimError(await s.call(s.hrA, 'DELETE', `/Users/${s.bob}`), 404);
      assert.deepEqual(await personRow(s.f, s.bob), before);
      assert.equal((await s.f.auditEvents('user.offboarded')).length, 0);
      const refused = await s.f.auditEvents('scim.refused');
      assert.deepEqual(
        refused.map((e) => [e.client, e.subject, e.details?.reason, e.details?.operation]),
        [
          ['hr-a', s.bob, 'not_of_legal_entity', 'patch'],
          ['hr-a', s.bob, 'not_of_legal_entity', 'replace'],
          ['hr-a', s.bob, 'not_of_legal_entity', 'delete'],
        ],
      );
      // Its own firm's HR system still offboards him.
      assert.equal((await s.call(s.hrB, 'DELETE', `/Users/${s.bob}`)).statusCode, 204);
    });

    test('a firm’s HR system creates and moves people only within its own legal entity: another legal entity, or a desk of one, is 403', async (t) => {
      const s = await firms(t, dialect);
      const carol = { schemas: [userSchema, institution], userName: 'carol', [institution]: { legalEntity: firmB } };
      assertScimError(await s.call(s.hrA, 'POST', '/Users', carol), 403);
      assertScimError(await s.call(s.hrA, 'POST', '/Users', { ...carol, [institution]: { desks: ['b-fx'] } }), 403);
      assert.equal(await s.f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', 'carol').executeTakeFirst(), undefined);
      // A person the HR system names no legal entity for is of its own.
      const created = await s.call(s.hrA, 'POST', '/Users', { schemas: [userSchema], userName: 'carol' });
      assert.equal(created.statusCode, 201, created.body);
      assert.equal(created.json()[institution].legalEntity, firmA);

      const alice = await personRow(s.f, s.alice);
      assertScimError(await s.call(s.hrA, 'PATCH', `/Users/${s.alice}`, { schemas: [patchOp], Operations: [{ op: 'replace', path: `${institution}:legalEntity`, value: firmB }] }), 403);
      assertScimError(await s.call(s.hrA, 'PATCH', `/Users/${s.alice}`, { schemas: [patchOp], Operations: [{ op: 'add', path: `${institution}:desks`, value: ['b-fx'] }] }), 403);
      assert.deepEqual(await personRow(s.f, s.alice), alice);
      const refused = await s.f.auditEvents('scim.refused');
      assert.equal(refused.length, 4);
      assert.ok(refused.every((e) => e.client === 'hr-a' && e.details?.reason === 'not_of_legal_entity' && JSON.stringify(e.details?.legal_entities) === JSON.stringify([firmB])), JSON.stringify(refused));
    });

    test('a userName taken in another firm is answered exactly as one taken in the caller’s own: 409 uniqueness naming neither the person nor their firm, nothing written', async (t) => {
      const s = await firms(t, dialect);
      const create = (userName: string, extra: Record<string, unknown> = {}) => s.call(s.hrA, 'POST', '/Users', { schemas: [userSchema], userName, name: { formatted: 'Someone New' }, ...extra });
      const bob = await personRow(s.f, s.bob);
      const ownFirm = await create('alice');
      const otherFirm = await create('bob');
      assertScimError(ownFirm, 409, 'uniqueness');
      assertScimError(otherFirm, 409, 'uniqueness');
      assert.deepEqual(otherFirm.json(), ownFirm.json(), 'the holder’s firm changes nothing in the answer');
      assert.deepEqual(otherFirm.headers['content-type'], ownFirm.headers['content-type']);
      assert.deepEqual(otherFirm.json(), {
        schemas: [errorSchema],
        status: '409',
        scimType: 'uniqueness',
        detail: 'userName is taken: a userName is unique across every legal entity this service provider serves; choose another',
      });
      // Spelled otherwise, or naming another firm's legal entity in the write: the same answer.
      assert.deepEqual((await create('BOB')).json(), ownFirm.json());
      assert.deepEqual((await create('bob', { schemas: [userSchema, institution], [institution]: { legalEntity: firmA } })).json(), ownFirm.json());
      // Deleted through SCIM by its own firm (out of SCIM's view, still Clearance's): the same answer.
      assert.equal((await s.call(s.hrB, 'DELETE', `/Users/${s.bob}`)).statusCode, 204);
      assert.deepEqual((await create('bob')).json(), ownFirm.json());
      assert.deepEqual({ ...(await personRow(s.f, s.bob)), status: bob.status, offboarded: bob.offboarded }, bob, 'nothing of the write landed on him');
      assert.equal((await s.f.auditEvents('scim.refused')).length, 0, 'a taken userName is no refusal for the legal entity');
    });

    test('a firm’s HR system sees only its own desks as Groups, and their members of its firm; another firm’s desk is 404', async (t) => {
      const s = await firms(t, dialect);
      const groups = await s.call(s.hrA, 'GET', '/Groups');
      assert.equal(groups.statusCode, 200, groups.body);
      assert.deepEqual((groups.json() as { Resources: { id: string }[] }).Resources.map((g) => g.id), ['a-fx']);
      assertScimError(await s.call(s.hrA, 'GET', '/Groups/b-fx'), 404);
      assertScimError(await s.call(s.hrA, 'PATCH', '/Groups/b-fx', { schemas: [patchOp], Operations: [{ op: 'add', path: 'members', value: [{ value: s.alice }] }] }), 404);
      assertScimError(await s.call(s.hrA, 'PUT', '/Groups/b-fx', { schemas: [groupSchema], displayName: 'B FX', members: [] }), 404);
      // Another firm's person is no User it can put on its desk.
      assertScimError(await s.call(s.hrA, 'PATCH', '/Groups/a-fx', { schemas: [patchOp], Operations: [{ op: 'add', path: 'members', value: [{ value: s.bob }] }] }), 400, 'invalidValue');
      assert.deepEqual((await personRow(s.f, s.bob)).desks, ['b-fx']);
      assert.deepEqual((await personRow(s.f, s.alice)).desks, ['a-fx']);

      // Someone of firm B seconded to A's desk is partly another firm's: not a member A sees, and not one its PUT takes off.
      await s.f.apply({ users: [{ username: 'dana', name: 'Dana of B', desks: ['a-fx'], attributes: { lei: firmB } }] });
      const dana = (await s.f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', 'dana').executeTakeFirstOrThrow()).id;
      const members = (await s.call(s.hrA, 'GET', '/Groups/a-fx')).json().members as { value: string }[];
      assert.deepEqual(members.map((m) => m.value), [s.alice]);
      const emptied = await s.call(s.hrA, 'PUT', '/Groups/a-fx', { schemas: [groupSchema], displayName: 'A FX', members: [] });
      assert.equal(emptied.statusCode, 200, emptied.body);
      assert.deepEqual((await personRow(s.f, s.alice)).desks, []);
      assert.deepEqual((await personRow(s.f, dana)).desks, ['a-fx']);
      // Off her only desk, Alice is still of A: the write names no other firm.
      assert.equal((await personRow(s.f, s.alice)).lei, firmA);
    });

    test('a SCIM client of no legal entity provisions no one (403), unless CLEARANCE_SCIM_GLOBAL_CLIENTS names it', async (t) => {
      const s = await firms(t, dialect);
      assertScimError(await s.call(s.hrNone, 'GET', '/Users'), 403);
      assertScimError(await s.call(s.hrNone, 'GET', `/Users/${s.alice}`), 403);
      assertScimError(await s.call(s.hrNone, 'POST', '/Users', { schemas: [userSchema], userName: 'carol' }), 403);
      assertScimError(await s.call(s.hrNone, 'PATCH', `/Users/${s.bob}`, { schemas: [patchOp], Operations: [{ op: 'replace', path: 'active', value: false }] }), 403);
      assert.equal((await personRow(s.f, s.bob)).status, 'active');
      assert.deepEqual(
        (await s.f.auditEvents('scim.refused')).map((e) => [e.client, e.details?.reason, e.details?.operation]),
        [
          ['hr-none', 'no_legal_entity', 'create'],
          ['hr-none', 'no_legal_entity', 'patch'],
        ],
        'refused writes are on the record; refused reads are not reads',
      );

      const global = await firms(t, dialect, { CLEARANCE_SCIM_GLOBAL_CLIENTS: 'hr-none' });
      assert.deepEqual(userNames(await global.call(global.hrNone, 'GET', '/Users')), ['alice', 'bob']);
      // A client with a legal entity stays within it, named there or not.
      const scoped = await firms(t, dialect, { CLEARANCE_SCIM_GLOBAL_CLIENTS: 'hr-none,hr-a' });
      assert.deepEqual(userNames(await scoped.call(scoped.hrA, 'GET', '/Users')), ['alice']);
    });
  });
}
