import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { adminAudience } from '../../../src/admin/authorize.ts';
import { linkedPerson, linkIdentity } from '../../../src/federation/upstream/linking.ts';
import { findProvider } from '../../../src/federation/upstream/providers.ts';
import { consumeUpstreamLogin, openUpstreamLogin, upstreamLoginTtlMs } from '../../../src/federation/upstream/upstream-logins.ts';
import type { Context } from '../../../src/context.ts';
import { decidePassword, upsertUser } from '../../../src/identity/users.ts';
import { protocolFixture } from '../../endpoints/fixture.ts';
import { planApply } from '../../../src/apply/index.ts';
import { cliWorkspace } from '../../helpers/cli.ts';
import { testDialects } from '../../helpers/storage.ts';

/**
 * Linking upstream identities to people and the single use of upstream sign-ins, on the database
 * (every dialect), and the administrator's link through the admin API and the CLI. The sign-in
 * itself, over HTTP against node-oidc-provider, is in ./oidc-sign-in.test.ts.
 */

const fundLei = '529900T8BM49AURSDO55';
const issuer = 'https://idp.fund-a.example';

function providerDocument(extra: Record<string, unknown> = {}) {
  return {
    regions: [{ id: 'eu', name: 'Europe' }],
    legal_entities: [{ lei: fundLei, name: 'Fund A', jurisdiction: 'GB', home_region: 'eu', roles: ['asset_manager'], desks: [{ id: 'fund-a-pm', name: 'PM', product_classes: ['bond'] }] }],
    identity_providers: [{ id: 'fund-a', name: 'Fund A', issuer, client_id: 'clearance', client_secret: 'a-client-secret-of-fund-a-0123', legal_entity: fundLei, desks: ['fund-a-pm'], domains: ['fund-a.example'] }],
    ...extra,
  };
}

async function localPerson(ctx: Context, username: string, email: string): Promise<string> {
  const entry = { username, email, password: 'a long local password 123' };
  const decision = await decidePassword(ctx.storage.db, entry);
  return (await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), entry, decision))).id;
}

for (const dialect of testDialects()) {
  describe(`linking upstream identities (${dialect.name})`, () => {
    test('first sign-ins of one identity at once provision one person, each signed in as them', async (t) => {
      const f = await protocolFixture(t, { dialect, risk: 'off' });
      await f.apply(providerDocument());
      const provider = (await findProvider(f.ctx.storage.db, 'fund-a'))!.provider;
      const identity = { issuer, subject: 'pm-1', claims: { email: 'petra@fund-a.example' }, amr: [] };
      // Four at once: one provisions; the others find its link, also when it commits between their
      // read of the link and their check of the email.
      const outcomes = await Promise.all([1, 2, 3, 4].map(() => linkedPerson(f.ctx, provider, identity)));
      assert.deepEqual(outcomes.map((o) => (o.ok ? 'ok' : o.reason)), ['ok', 'ok', 'ok', 'ok']);
      assert.equal(new Set(outcomes.map((o) => (o.ok ? o.user.id : ''))).size, 1);
      const links = await f.ctx.storage.db.selectFrom('user_links').selectAll().execute();
      assert.equal(links.length, 1);
      assert.equal((await f.ctx.storage.db.selectFrom('users').select('id').where('email', '=', 'petra@fund-a.example').execute()).length, 1);
    });

    test('an email a local person has, in any case, is refused to a new upstream identity', async (t) => {
      const f = await protocolFixture(t, { dialect, risk: 'off' });
      await f.apply(providerDocument());
      const ritaId = await localPerson(f.ctx, 'rita', 'Rita@Fund-A.example');
      const provider = (await findProvider(f.ctx.storage.db, 'fund-a'))!.provider;
      const refused = await linkedPerson(f.ctx, provider, { issuer, subject: 'pm-2', claims: { email: 'RITA@fund-a.example' }, amr: [] });
      assert.deepEqual(refused, { ok: false, reason: 'email_taken', userId: ritaId });
      assert.equal((await f.ctx.storage.db.selectFrom('user_links').selectAll().execute()).length, 0);
    });

    test('a later sign-in never gives a person another person’s email, and never renames a person it did not provision', async (t) => {
      const f = await protocolFixture(t, { dialect, risk: 'off' });
      await f.apply(providerDocument());
      await localPerson(f.ctx, 'ceo', 'ceo@bank.example');
      const rita = await localPerson(f.ctx, 'rita', 'rita@fund-a.example');
      const provider = (await findProvider(f.ctx.storage.db, 'fund-a'))!.provider;
      const first = await linkedPerson(f.ctx, provider, { issuer, subject: 'pm-3', claims: { email: 'pia@fund-a.example', name: 'Pia' }, amr: [] });
      assert.ok(first.ok);
      const later = await linkedPerson(f.ctx, provider, { issuer, subject: 'pm-3', claims: { email: 'CEO@bank.example', name: 'Pia P.' }, amr: [] });
      assert.ok(later.ok);
      const pia = await f.ctx.storage.db.selectFrom('users').select(['email', 'name']).where('id', '=', first.user.id).executeTakeFirstOrThrow();
      assert.deepEqual({ ...pia }, { email: 'pia@fund-a.example', name: 'Pia P.' }, 'the name follows the upstream; the email another person has does not');
      // Rita, linked by an administrator, keeps her own name and email.
      assert.deepEqual(await linkIdentity(f.ctx, { userId: rita, provider, subject: 'pm-4', actor: 'admin-1' }), { ok: true });
      const ritaLater = await linkedPerson(f.ctx, provider, { issuer, subject: 'pm-4', claims: { email: 'r.other@fund-a.example', name: 'Someone Else' }, amr: [] });
      assert.ok(ritaLater.ok && ritaLater.user.id === rita);
      assert.deepEqual({ ...(await f.ctx.storage.db.selectFrom('users').select(['email', 'name']).where('id', '=', rita).executeTakeFirstOrThrow()) }, { email: 'rita@fund-a.example', name: null });
    });

    test('an upstream sign-in is taken once, by the browser that left, before it expires', async (t) => {
      const f = await protocolFixture(t, { dialect, risk: 'off' });
      const opened = f.ctx.clock.now();
      const secrets = await openUpstreamLogin(f.ctx, { interactionId: 'i-1', providerId: 'fund-a', browserId: 'browser-1' });
      f.clock.advance(5_000);
      const [first, second] = await Promise.all([consumeUpstreamLogin(f.ctx, secrets.state, 'browser-1'), consumeUpstreamLogin(f.ctx, secrets.state, 'browser-1')]);
      const outcomes = [first, second].map((c) => (c.ok ? 'ok' : c.reason)).sort();
      assert.deepEqual(outcomes, ['ok', 'replayed']);
      const taken = first.ok ? first : second;
      assert.ok(taken.ok);
      assert.deepEqual(taken.secrets, secrets, 'the nonce and verifier are derived again from the state');
      assert.equal(taken.sentAt, opened, 'it says when the person was sent to the upstream (a prompt=login answer must be later)');
      assert.equal((await f.ctx.storage.db.selectFrom('upstream_logins').selectAll().execute()).some((r) => JSON.stringify(r).includes(secrets.nonce) || JSON.stringify(r).includes(secrets.state)), false, 'neither state nor nonce is stored');

      const late = await openUpstreamLogin(f.ctx, { interactionId: 'i-2', providerId: 'fund-a', browserId: 'browser-1' });
      f.clock.advance(upstreamLoginTtlMs + 1);
      assert.deepEqual(await consumeUpstreamLogin(f.ctx, late.state, 'browser-1'), { ok: false, reason: 'expired' });
      const lured = await openUpstreamLogin(f.ctx, { interactionId: 'i-3', providerId: 'fund-a', browserId: 'browser-1' });
      assert.deepEqual(await consumeUpstreamLogin(f.ctx, lured.state, 'browser-2'), { ok: false, reason: 'other_browser' });
      assert.deepEqual(await consumeUpstreamLogin(f.ctx, lured.state, 'browser-1'), { ok: false, reason: 'replayed' });
    });

    test('an upstream sign-in keeps what the upstream was asked, and gives it back with the sign-in', async (t) => {
      const f = await protocolFixture(t, { dialect, risk: 'off' });
      const asked = await openUpstreamLogin(f.ctx, { interactionId: 'i-1', providerId: 'fund-a', browserId: 'browser-1', asked: { maxAge: 60, login: true, because: 'risk_step_up' } });
      const taken = await consumeUpstreamLogin(f.ctx, asked.state, 'browser-1');
      assert.ok(taken.ok);
      assert.deepEqual(taken.asked, { maxAge: 60, login: true, because: 'risk_step_up' });
      const nothing = await openUpstreamLogin(f.ctx, { interactionId: 'i-2', providerId: 'fund-a', browserId: 'browser-1' });
      const plain = await consumeUpstreamLogin(f.ctx, nothing.state, 'browser-1');
      assert.ok(plain.ok);
      assert.equal(plain.asked, undefined, 'nothing asked, nothing kept');
    });
  });
}

describe('declaring identity providers', () => {
  test('an email domain belongs to one provider: another provider claiming it, in a later document, is refused', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    await f.apply(providerDocument());
    const second = { id: 'fund-b', name: 'Fund B', issuer: 'https://idp.fund-b.example', client_id: 'clearance', client_secret: 'a-client-secret-of-fund-b-0123', legal_entity: fundLei, domains: ['fund-a.example'] };
    const { problems } = await planApply(f.ctx, { identity_providers: [second] });
    assert.deepEqual(problems, [{ path: 'identity_providers[0].domains[0]', message: '"fund-a.example" is already a domain of identity provider fund-a' }]);
    // The same document moving the domain from one to the other is accepted.
    const moved = await planApply(f.ctx, { identity_providers: [{ ...providerDocument().identity_providers[0], domains: [] }, second] });
    assert.deepEqual(moved.problems, []);
  });
});

describe('an administrator links an upstream identity', () => {
  test('through the admin API: 201 and user.linked, 409 when already linked, 404 for an unknown provider; GET lists the links', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    await f.apply(providerDocument());
    const ritaId = await localPerson(f.ctx, 'rita', 'rita@fund-a.example');
    const token = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
    const post = (body: unknown) =>
      f.inject({ method: 'POST', url: '/admin/users/rita/links', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
    const created = await post({ provider: 'fund-a', subject: 'pm-6' });
    assert.equal(created.statusCode, 201, created.body);
    assert.deepEqual(created.json(), { provider: 'fund-a', issuer, subject: 'pm-6' });
    const again = await post({ provider: 'fund-a', subject: 'pm-6' });
    assert.equal(again.statusCode, 409);
    assert.equal(again.json().error, 'invalid_request');
    assert.equal((await post({ provider: 'nobody', subject: 'pm-6' })).statusCode, 404);
    assert.equal((await post({ provider: 'fund-a' })).statusCode, 400);
    const listed = await f.inject({ method: 'GET', url: '/admin/users/rita/links', headers: { authorization: `Bearer ${token}` } });
    assert.deepEqual(listed.json().links.map((l: Record<string, unknown>) => [l.provider, l.subject, l.linked_by]), [['fund-a', 'pm-6', 'admin']]);
    const event = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'user.linked').executeTakeFirstOrThrow();
    assert.equal(JSON.parse(event.event).subject, ritaId);
    // Deleting the person deletes their links: the upstream identity is nobody's again.
    const deleted = await f.inject({ method: 'DELETE', url: '/admin/users/rita', headers: { authorization: `Bearer ${token}` } });
    assert.equal(deleted.statusCode, 204);
    assert.equal(await f.ctx.storage.db.selectFrom('user_links').selectAll().executeTakeFirst(), undefined);
  });

  test('through the CLI: clearance users link, and users links lists it', async (t) => {
    const { dir, run } = cliWorkspace(t);
    const file = join(dir, 'providers.json');
    writeFileSync(file, JSON.stringify(providerDocument({ users: [{ username: 'rita', email: 'rita@fund-a.example', password: 'a long local password 123' }] })));
    assert.equal((await run('apply', '-f', file)).code, 0);
    const linked = await run('users', 'link', 'rita', '--provider', 'fund-a', '--subject', 'pm-6');
    assert.equal(linked.code, 0, linked.err);
    assert.match(linked.out, /linked fund-a subject pm-6 to rita/);
    assert.equal((await run('users', 'link', 'rita', '--provider', 'fund-a', '--subject', 'pm-6')).code, 1);
    assert.equal((await run('users', 'link', 'rita', '--provider', 'nobody', '--subject', 'pm-6')).code, 1);
    assert.equal((await run('users', 'link', 'rita')).code, 2);
    const links = await run('users', 'links', 'rita');
    assert.match(links.out, /fund-a {2}https:\/\/idp\.fund-a\.example {2}pm-6 {2}admin/);
  });
});
