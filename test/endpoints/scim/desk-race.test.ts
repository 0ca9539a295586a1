import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sql } from 'kysely';
import { scimAudience } from '../../../src/resource-servers/builtins.ts';
import { protocolFixture, secretClient, type ProtocolFixture } from '../fixture.ts';
import { testDialects } from '../../helpers/storage.ts';

const patchOp = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const institution = 'urn:clearance:params:scim:schemas:extension:institution:2.0:User';
const firm = '5493001KJTIIGC8Y1R12';

/**
 * A role given to a person (an administrator's write, committed by another transaction) while a
 * SCIM desk change of the same person is under way: the desk change must not write back the roles
 * it read before that write committed. PostgreSQL only: it runs transactions side by side (READ
 * COMMITTED); SQLite has one writer, so the two never interleave there.
 */
const postgres = testDialects().find((d) => d.name === 'postgres');

async function scene(t: Parameters<typeof protocolFixture>[0]) {
  const f = await protocolFixture(t, { dialect: postgres!, risk: 'off' });
  await f.apply({
    regions: [{ id: 'uk' }],
    legal_entities: [{ lei: firm, name: 'Broker Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'fx-spot' }, { id: 'rates' }, { id: 'fx-options' }] }],
    clients: [secretClient('hr-system', 'scim:read scim:write', { owner_lei: firm })],
    users: [{ username: 'alice', name: 'Alice', desks: ['fx-spot'], attributes: { lei: firm } }],
  });
  const token = await f.accessToken('hr-system', { resource: scimAudience(f.issuer) });
  const alice = (await f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', 'alice').executeTakeFirstOrThrow()).id;
  const call = (method: 'PATCH', path: string, body: unknown) =>
    f.inject({ method, url: `/scim/v2${path}`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/scim+json' }, payload: JSON.stringify(body) });
  return { f, alice, call };
}

/**
 * Gives `userId` the role `trader` in a transaction of its own that holds the row until `scimChange`
 * is waiting on it, then commits; answers the SCIM change's response.
 */
async function roleGivenDuring(f: ProtocolFixture, userId: string, scimChange: () => Promise<{ statusCode: number; body: string }>) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let holder!: (pid: number) => void;
  const held = new Promise<number>((resolve) => (holder = resolve));
  const administrator = f.ctx.storage.db.transaction().execute(async (trx) => {
    await trx.updateTable('users').set({ roles: JSON.stringify(['trader']) }).where('id', '=', userId).execute();
    holder((await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)).rows[0]!.pid);
    await released;
  });
  const pid = await held;
  const change = scimChange();
  // Until the SCIM transaction waits on the row the administrator's transaction holds.
  for (let i = 0; ; i++) {
    const { rows } = await sql<{ n: string }>`select count(*) as n from pg_stat_activity where ${pid} = any(pg_blocking_pids(pid))`.execute(f.ctx.storage.db);
    if (Number(rows[0]!.n) > 0) break;
    if (i > 200) assert.fail('the SCIM change never waited on the row');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  release();
  await administrator;
  return change;
}

/** How many backends wait on a lock another holds. */
async function waiting(f: ProtocolFixture): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*) as n from pg_stat_activity where cardinality(pg_blocking_pids(pid)) > 0`.execute(f.ctx.storage.db);
  return Number(rows[0]!.n);
}

/**
 * Holds `userId`'s row in a transaction of its own while `changes` start one after the other, each
 * once the one before waits on a lock; then lets go, and answers their responses.
 */
async function rowHeldWhile(f: ProtocolFixture, userId: string, changes: (() => Promise<{ statusCode: number; body: string }>)[]) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let locked!: () => void;
  const held = new Promise<void>((resolve) => (locked = resolve));
  const holder = f.ctx.storage.db.transaction().execute(async (trx) => {
    await sql`select id from users where id = ${userId} for update`.execute(trx);
    locked();
    await released;
  });
  await held;
  const started: Promise<{ statusCode: number; body: string }>[] = [];
  for (const change of changes) {
    started.push(change());
    for (let i = 0; (await waiting(f)) < started.length; i++) {
      if (i > 300) assert.fail(`change ${started.length} never waited on a lock`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
  release();
  await holder;
  return Promise.all(started);
}

const rolesOf = async (f: ProtocolFixture, id: string) => JSON.parse((await f.ctx.storage.db.selectFrom('users').select('roles').where('id', '=', id).executeTakeFirstOrThrow()).roles) as string[];

describe('SCIM desk changes against a concurrent role change, on postgres', { skip: postgres ? false : 'PostgreSQL only (TEST_DATABASE_URL)' }, () => {
  test('a Group PATCH that moves a person keeps the role an administrator gave them while it ran', async (t) => {
    const { f, alice, call } = await scene(t);
    const moved = await roleGivenDuring(f, alice, () => call('PATCH', '/Groups/rates', { schemas: [patchOp], Operations: [{ op: 'add', path: 'members', value: [{ value: alice }] }] }));
    assert.equal(moved.statusCode, 200, moved.body);
    const row = await f.ctx.storage.db.selectFrom('users').select('desks').where('id', '=', alice).executeTakeFirstOrThrow();
    assert.deepEqual(JSON.parse(row.desks), ['fx-spot', 'rates']);
    assert.deepEqual(await rolesOf(f, alice), ['trader'], 'the role given while the desk change ran');
  });

  test('two Group PATCHes naming the same people in opposite orders both complete: the people are locked in one order, not the request’s', async (t) => {
    const { f, alice, call } = await scene(t);
    await f.apply({ users: [{ username: 'bob', name: 'Bob', desks: ['fx-spot'], attributes: { lei: firm } }] });
    const bob = (await f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', 'bob').executeTakeFirstOrThrow()).id;
    const add = (desk: string, members: string[]) => () => call('PATCH', `/Groups/${desk}`, { schemas: [patchOp], Operations: [{ op: 'add', path: 'members', value: members.map((value) => ({ value })) }] });
    // Bob's row is held by another transaction; the first PATCH (Bob, then Alice) queues on it, the
    // second (Alice, then Bob) comes after. Locked in the request's order, the second holds Alice
    // while it waits for Bob, and the first, given Bob, waits for Alice: a deadlock.
    const answers = await rowHeldWhile(f, bob, [add('rates', [bob, alice]), add('fx-options', [alice, bob])]);
    assert.deepEqual(answers.map((a) => a.statusCode), [200, 200], answers.map((a) => a.body).join('\n'));
    for (const id of [alice, bob]) {
      const row = await f.ctx.storage.db.selectFrom('users').select('desks').where('id', '=', id).executeTakeFirstOrThrow();
      assert.deepEqual((JSON.parse(row.desks) as string[]).sort(), ['fx-options', 'fx-spot', 'rates']);
    }
  });

  test('a User PATCH of desks keeps the role an administrator gave the person while it ran', async (t) => {
    const { f, alice, call } = await scene(t);
    const moved = await roleGivenDuring(f, alice, () => call('PATCH', `/Users/${alice}`, { schemas: [patchOp], Operations: [{ op: 'replace', path: `${institution}:desks`, value: ['rates'] }] }));
    assert.equal(moved.statusCode, 200, moved.body);
    assert.deepEqual(await rolesOf(f, alice), ['trader'], 'the role given while the desk change ran');
  });
});
