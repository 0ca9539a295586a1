import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { sql, type Transaction } from 'kysely';
import { scimAudience } from '../../../src/resource-servers/builtins.ts';
import type { Database } from '../../../src/storage/schema.ts';
import { protocolFixture, secretClient, type ProtocolFixture } from '../fixture.ts';
import { testDialects } from '../../helpers/storage.ts';

const userSchema = 'urn:ietf:params:scim:schemas:core:2.0:User';
const firmA = '5493001KJTIIGC8Y1R12';
const firmB = '529900T8BM49AURSDO55';
const taken = { schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'], status: '409', scimType: 'uniqueness', detail: 'userName is taken: a userName is unique across every legal entity this service provider serves; choose another' };

/**
 * Firm A's HR system creates `carol` while firm B's write of its own `carol` commits. Usernames are
 * unique across every firm: A's create is answered 409 uniqueness, as it would have been had B's
 * carol been there first — never a 500, and never a write to B's person. PostgreSQL only: it runs
 * the two transactions side by side (READ COMMITTED); SQLite has one writer.
 */
const postgres = testDialects().find((d) => d.name === 'postgres');

async function scene(t: Parameters<typeof protocolFixture>[0]) {
  const f = await protocolFixture(t, { dialect: postgres!, risk: 'off' });
  await f.apply({
    regions: [{ id: 'uk' }],
    legal_entities: [
      { lei: firmA, name: 'Broker A Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'a-fx' }] },
      { lei: firmB, name: 'Broker B Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'b-fx' }] },
    ],
    clients: [secretClient('hr-a', 'scim:read scim:write', { owner_lei: firmA })],
  });
  const token = await f.accessToken('hr-a', { resource: scimAudience(f.issuer) });
  const create = (extra: Record<string, unknown> = {}) => () =>
    f.inject({ method: 'POST', url: '/scim/v2/Users', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/scim+json' }, payload: JSON.stringify({ schemas: [userSchema], userName: 'carol', name: { formatted: 'Carol of A' }, ...extra }) });
  return { f, create };
}

/** Firm B's carol, as its own write inserts her. */
async function insertCarolOfB(trx: Transaction<Database>, id: string, roles: string[] = []): Promise<void> {
  const now = Date.now();
  await trx
    .insertInto('users')
    .values({ id, username: 'carol', name: 'Carol of B', email: null, desks: '["b-fx"]', roles: JSON.stringify(roles), attributes: JSON.stringify({ lei: firmB }), password_hash: null, status: 'active', failed_logins: 0, locked_at: null, lock_reason: null, tokens_valid_after: null, last_login_at: null, created_at: now, updated_at: now })
    .execute();
}

/**
 * Runs `before` in a transaction of its own, starts `change` once it is there, waits until the
 * change waits on that transaction's locks, then runs `after` and commits; answers the change's response.
 */
async function whileOtherWrites(f: ProtocolFixture, before: (trx: Transaction<Database>) => Promise<void>, after: (trx: Transaction<Database>) => Promise<void>, change: () => Promise<{ statusCode: number; body: string }>) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let ready!: () => void;
  const there = new Promise<void>((resolve) => (ready = resolve));
  const other = f.ctx.storage.db.transaction().execute(async (trx) => {
    await before(trx);
    ready();
    await released;
    await after(trx);
  });
  await there;
  const answer = change();
  for (let i = 0; ; i++) {
    const { rows } = await sql<{ n: string }>`select count(*) as n from pg_stat_activity where cardinality(pg_blocking_pids(pid)) > 0`.execute(f.ctx.storage.db);
    if (Number(rows[0]!.n) > 0) break;
    if (i > 300) assert.fail('the create never waited on the other write');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  release();
  await other;
  return answer;
}

const carolOfB = async (f: ProtocolFixture, id: string) => {
  const row = await f.ctx.storage.db.selectFrom('users').select(['name', 'attributes', 'desks']).where('id', '=', id).executeTakeFirstOrThrow();
  return { name: row.name, attributes: JSON.parse(row.attributes), desks: JSON.parse(row.desks) };
};

describe('SCIM creates racing another firm’s write of the same userName, on postgres', { skip: postgres ? false : 'PostgreSQL only (TEST_DATABASE_URL)' }, () => {
  test('a create that finds the userName taken only as it inserts is answered 409 uniqueness, not 500', async (t) => {
    const { f, create } = await scene(t);
    const id = randomUUID();
    // B's carol inserted, not yet committed: A's create sees no carol, then waits on the unique index.
    const answer = await whileOtherWrites(f, (trx) => insertCarolOfB(trx, id), async () => {}, create());
    assert.equal(answer.statusCode, 409, answer.body);
    assert.deepEqual(JSON.parse(answer.body), taken);
    assert.deepEqual(await carolOfB(f, id), { name: 'Carol of B', attributes: { lei: firmB }, desks: ['b-fx'] });
  });

  for (const [what, extra, roles] of [
    ['', {}, []],
    [' — with a password, she holding compliance', { password: 'a-long-enough-passphrase-2026' }, ['compliance']],
  ] as const) {
    test(`a create that finds the userName taken only as it writes never changes the other firm’s person${what}: 409 uniqueness, nothing written, nothing said of her`, async (t) => {
      const { f, create } = await scene(t);
      const id = randomUUID();
      // The users table held against writers (not readers): A's create reads no carol, then waits to
      // lock the row it would write; B's carol commits meanwhile, and that lock read finds her.
      const answer = await whileOtherWrites(f, async (trx) => void (await sql`lock table users in exclusive mode`.execute(trx)), (trx) => insertCarolOfB(trx, id, [...roles]), create(extra));
      assert.equal(answer.statusCode, 409, answer.body);
      assert.deepEqual(JSON.parse(answer.body), taken);
      assert.deepEqual(await carolOfB(f, id), { name: 'Carol of B', attributes: { lei: firmB }, desks: ['b-fx'] });
      assert.deepEqual(await f.auditEvents('user.password_reset_refused' as never), []);
    });
  }
});
