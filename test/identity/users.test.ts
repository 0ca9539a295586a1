import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ApplyRefusedError, planApply } from '../../src/apply/index.ts';
import { parseDocument } from '../../src/apply/parse.ts';
import type { Context } from '../../src/context.ts';
import { verifyPassword } from '../../src/identity/passwords.ts';
import { readSession, startSession } from '../../src/identity/sessions.ts';
import { findUser, findUserByUsername, listUsers, upsertUser } from '../../src/identity/users.ts';
import { formatProblem } from '../../src/validation.ts';
import { alicePassword, peopleFixture, people } from './fixture.ts';
import { testDialects } from '../helpers/storage.ts';

async function row(ctx: Context, username: string) {
  return ctx.storage.db.selectFrom('users').selectAll().where('username', '=', username).executeTakeFirstOrThrow();
}

/** Every text cell of the users table, to search for a leaked password. */
async function usersTableText(ctx: Context): Promise<string> {
  return JSON.stringify(await ctx.storage.db.selectFrom('users').selectAll().execute());
}

for (const dialect of testDialects()) {
  describe(`the users section of apply on ${dialect.name}`, () => {
    test('creates users with an Argon2id hash of their password, never the password itself', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const alice = await row(f.ctx, 'alice');
      assert.match(alice.password_hash!, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
      assert.equal(await verifyPassword(alicePassword, alice.password_hash!), true);
      assert.doesNotMatch(await usersTableText(f.ctx), new RegExp(alicePassword));
      assert.doesNotMatch(await f.auditText(), new RegExp(alicePassword));
      assert.doesNotMatch(await f.auditText(), /argon2id/, 'the audit log holds no hash either');
      assert.equal(alice.status, 'active');
      assert.deepEqual(JSON.parse(alice.desks), ['fx-spot', 'rates']);
      // The KYC status of an older document's attributes is the person's KYC record (src/risk/kyc).
      assert.deepEqual(JSON.parse(alice.attributes), { suitability: ['fx', 'rates'] });
      assert.equal((await f.ctx.risk.kyc.get({ type: 'User', id: alice.id }))?.status, 'verified');
    });

    test('finds users by id and by username, case-insensitively, without their hash', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const alice = await findUserByUsername(f.ctx, '  Alice ');
      assert.ok(alice);
      assert.equal(alice.username, 'alice');
      assert.equal(alice.name, 'Alice Trader');
      assert.equal(alice.hasPassword, true);
      assert.equal('passwordHash' in alice || 'password_hash' in alice, false);
      assert.deepEqual(await findUser(f.ctx, alice.id), alice);
      assert.equal(await findUser(f.ctx, 'no-such-id'), undefined);
      assert.equal(await findUserByUsername(f.ctx, 'carol'), undefined);
      assert.deepEqual((await listUsers(f.ctx)).map((u) => u.username), ['alice', 'bob']);
    });

    test('reports a re-applied document unchanged, plain passwords included, and keeps the hashes', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const before = (await row(f.ctx, 'alice')).password_hash;
      const again = await f.apply({ users: people });
      assert.deepEqual(again.changes, [
        { kind: 'user', id: 'alice', outcome: 'unchanged' },
        { kind: 'user', id: 'bob', outcome: 'unchanged' },
      ]);
      assert.equal((await row(f.ctx, 'alice')).password_hash, before);
      assert.equal((await f.events('config.applied')).length, 1, 'only the first apply changed anything');
    });

    test('does not depend on the order of attribute keys for "unchanged"', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const reordered = { ...people[0]!, attributes: { suitability: ['fx', 'rates'], kyc_status: 'verified' } };
      const result = await f.apply({ users: [reordered] });
      assert.equal(result.changes[0]!.outcome, 'unchanged');
    });

    test('rehashes a changed password and ends the user’s sessions', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const alice = (await findUserByUsername(f.ctx, 'alice'))!;
      const session = await startSession(f.ctx, { userId: alice.id, acr: 'x', amr: ['pwd'], cookieHeader: undefined });
      const cookie = session.setCookie.split(';')[0]!;
      assert.ok(await readSession(f.ctx, cookie));
      const result = await f.apply({ users: [{ ...people[0]!, password: 'a brand new passphrase' }] });
      assert.equal(result.changes[0]!.outcome, 'updated');
      const hash = (await row(f.ctx, 'alice')).password_hash!;
      assert.equal(await verifyPassword('a brand new passphrase', hash), true);
      assert.equal(await verifyPassword(alicePassword, hash), false);
      assert.equal(await readSession(f.ctx, cookie), undefined, 'a password change ends the sessions');
    });

    test('stores a ready Argon2id password_hash as given, and keeps the password when neither is given', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const imported = '$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc';
      const created = await f.apply({ users: [{ username: 'carol', password_hash: imported }] });
      assert.equal(created.changes[0]!.outcome, 'created');
      assert.equal((await row(f.ctx, 'carol')).password_hash, imported);
      assert.equal((await f.apply({ users: [{ username: 'carol', password_hash: imported }] })).changes[0]!.outcome, 'unchanged');
      assert.equal((await f.apply({ users: [{ username: 'carol' }] })).changes[0]!.outcome, 'unchanged', 'no password given: kept');
      assert.equal((await row(f.ctx, 'carol')).password_hash, imported);
    });

    test('creates a user without a password, who has no password login', async (t) => {
      const f = await peopleFixture(t, { dialect });
      await f.apply({ users: [{ username: 'dave', name: 'Dave' }] });
      assert.equal((await findUserByUsername(f.ctx, 'dave'))!.hasPassword, false);
    });

    test('clears omitted profile fields but keeps a lockout unless status is given', async (t) => {
      const f = await peopleFixture(t, { dialect });
      await f.apply({ users: [{ ...people[1]!, status: 'locked' }] });
      assert.equal((await row(f.ctx, 'bob')).status, 'locked');
      assert.ok((await row(f.ctx, 'bob')).locked_at);
      // A document without status (say, the nightly re-apply) does not undo the lock.
      const { username, password } = people[1]!;
      await f.apply({ users: [{ username, password }] });
      const bob = await row(f.ctx, 'bob');
      assert.equal(bob.status, 'locked');
      assert.equal(bob.name, null, 'an omitted name is cleared');
      assert.equal(bob.desks, '[]');
      await f.ctx.storage.db.updateTable('users').set({ failed_logins: 7 }).where('username', '=', 'bob').execute();
      await f.apply({ users: [{ username, status: 'active' }] });
      const unlocked = await row(f.ctx, 'bob');
      assert.equal(unlocked.status, 'active');
      assert.equal(unlocked.failed_logins, 0);
      assert.equal(unlocked.locked_at, null);
    });

    test('names users by id, not username, in the config.applied audit event', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const [event] = await f.events('config.applied');
      const alice = (await findUserByUsername(f.ctx, 'alice'))!;
      const changes = (event!.details as { changes: { kind: string; id: string }[] }).changes;
      assert.deepEqual(changes.find((c) => c.kind === 'user' && c.id === alice.id), { kind: 'user', id: alice.id, outcome: 'created' });
      assert.doesNotMatch(JSON.stringify(event), /"alice"/);
    });

    test('reports every problem in a users section with its path, and writes nothing', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const text = `users:
  - username: Carol
    password: short
  - username: dave
    password: long enough password
    password_hash: $argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc
  - username: erin
    password_hash: $argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc
    email: not-an-email
    desks: [fx, fx]
    status: suspended
    colour: blue
  - username: frank
    password: frankfrankfrank
    attributes:
      kyc_status: done
      suitability: [FX]
      api_secret: s3cr3t
      Region: eu
      limits: { notional: 5 }
  - username: grace
    name: "Tab\\tin name"
  - username: henry
  - username: henry
`;
      const parsed = parseDocument(text, 'people.yaml');
      assert.deepEqual(parsed.problems, []);
      const { plan, problems } = await planApply(f.ctx, parsed.value);
      assert.equal(plan, undefined);
      assert.deepEqual(problems.map(formatProblem), [
        'users[0].username: must be lowercase letters, digits and . _ @ + - (starting with a letter or digit)',
        'users[0].password: must be at least 12 characters',
        'users[1].password_hash: give either password or password_hash, not both',
        'users[2].colour: is not a recognised field',
        'users[2].password_hash: must be an Argon2id PHC string: $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>',
        'users[2].email: must be an email address',
        'users[2].desks[1]: is listed twice',
        'users[2].status: must be one of active, locked, disabled',
        'users[3].attributes.Region: attribute names are lowercase letters, digits and _, starting with a letter',
        'users[3].attributes.api_secret: attributes are facts about a person, never secrets',
        'users[3].attributes.kyc_status: must be one of pending, verified, expired, rejected, frozen',
        'users[3].attributes.limits: must be a string, a number, true or false, or an array of strings',
        'users[3].attributes.suitability[0]: must be a lowercase product class such as equities or crypto_derivatives',
        'users[4].name: must not contain control characters',
        'users[6].username: "henry" is also defined at users[5]',
      ]);
      assert.equal(await findUserByUsername(f.ctx, 'frank'), undefined);
    });

    test('refuses one person holding both help-desk and recovery-approver, on creating them as on changing them, and writes nothing', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const problem = 'users[0].roles: help-desk and recovery-approver are never held by one person: the help desk opens recoveries, and never approves one (docs/recovery.md)';
      const created = await planApply(f.ctx, { users: [{ username: 'hank', name: 'Hank Both', roles: ['recovery-approver', 'trader', 'help-desk'] }] });
      assert.deepEqual(created.problems.map(formatProblem), [problem]);
      assert.equal(created.plan, undefined);
      const changed = await planApply(f.ctx, { users: [{ ...people[1]!, roles: ['help-desk', 'recovery-approver'] }, people[0]!] });
      assert.deepEqual(changed.problems.map(formatProblem), [problem]);
      await assert.rejects(f.apply({ users: [...people, { username: 'hank', roles: ['help-desk', 'recovery-approver'] }] }));
      assert.equal(await findUserByUsername(f.ctx, 'hank'), undefined);
      // Either one alone is fine.
      assert.deepEqual((await planApply(f.ctx, { users: [{ username: 'hank', roles: ['help-desk'] }, { username: 'rita', roles: ['recovery-approver'] }] })).problems, []);
      // The write itself refuses them too, whatever read the entry (nothing lands).
      await assert.rejects(
        f.ctx.storage.db.transaction().execute((trx) => upsertUser(trx, f.ctx.clock.now(), { username: 'bob', roles: ['help-desk', 'recovery-approver'] }, { keep: true })),
        (error: Error) => error instanceof ApplyRefusedError && /never held by one person/.test(error.message),
      );
      assert.deepEqual((await findUserByUsername(f.ctx, 'bob'))!.roles, [], 'bob’s roles as they were');
    });

    test('refuses a password equal to the username', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { problems } = await planApply(f.ctx, { users: [{ username: 'margaret.smith', password: 'Margaret.Smith' }] });
      assert.deepEqual(problems.map(formatProblem), ['users[0].password: must not be the username']);
    });
  });
}
