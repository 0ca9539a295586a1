import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { adminAudience } from '../../../src/admin/authorize.ts';
import { scimAudience } from '../../../src/resource-servers/builtins.ts';
import { protocolFixture, secretClient, type ProtocolFixture } from '../fixture.ts';
import { testDialects, type TestDialect } from '../../helpers/storage.ts';

const userSchema = 'urn:ietf:params:scim:schemas:core:2.0:User';
const errorSchema = 'urn:ietf:params:scim:api:messages:2.0:Error';
const patchOp = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const institution = 'urn:clearance:params:scim:schemas:extension:institution:2.0:User';
const enterprise = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

/** RFC 7644 §3.3's example User (userName lowercased: Clearance's login names are). */
const bjensen = {
  schemas: [userSchema],
  userName: 'bjensen',
  externalId: 'bjensen',
  name: { formatted: 'Ms. Barbara J Jensen III', familyName: 'Jensen', givenName: 'Barbara' },
};

interface Scim {
  f: ProtocolFixture;
  writer: string;
  reader: string;
  call(method: string, path: string, options?: { token?: string | null; body?: unknown; headers?: Record<string, string> }): Promise<LightMyRequestResponse>;
}

async function scim(t: Parameters<typeof protocolFixture>[0], dialect?: TestDialect): Promise<Scim> {
  // A single-firm deployment's HR system: of no legal entity, deliberately given every person (docs/lifecycle.md "SCIM 2.0").
  const f = await protocolFixture(t, { ...(dialect ? { dialect } : {}), risk: 'off', env: { CLEARANCE_SCIM_GLOBAL_CLIENTS: 'hr-system,hr-reader' } });
  await f.apply({ clients: [secretClient('hr-system', 'scim:read scim:write'), secretClient('hr-reader', 'scim:read')] });
  const writer = await f.accessToken('hr-system', { resource: scimAudience(f.issuer) });
  const reader = await f.accessToken('hr-reader', { resource: scimAudience(f.issuer) });
  return {
    f,
    writer,
    reader,
    call(method, path, options = {}) {
      const token = options.token === undefined ? writer : options.token;
      return f.inject({
        method: method as 'GET',
        url: `/scim/v2${path}`,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(options.body !== undefined ? { 'content-type': 'application/scim+json' } : {}), ...options.headers },
        ...(options.body !== undefined ? { payload: JSON.stringify(options.body) } : {}),
      });
    },
  };
}

/** A SCIM error (RFC 7644 §3.12): schemas, status as a string, scimType when given; never a 5xx. */
function assertScimError(response: LightMyRequestResponse, status: number, scimType?: string): Record<string, unknown> {
  assert.equal(response.statusCode, status, response.body);
  assert.match(String(response.headers['content-type']), /^application\/scim\+json/);
  const body = response.json() as Record<string, unknown>;
  assert.deepEqual(body.schemas, [errorSchema]);
  assert.equal(body.status, String(status));
  if (scimType) assert.equal(body.scimType, scimType);
  assert.equal(typeof body.detail, 'string');
  return body;
}

for (const dialect of testDialects()) {
  describe(`SCIM Users on ${dialect.name}`, () => {
    test('creates the RFC 7644 §3.3 example User: 201, Location, ETag and meta.version', async (t) => {
      const s = await scim(t, dialect);
      const created = await s.call('POST', '/Users', { body: bjensen });
      assert.equal(created.statusCode, 201, created.body);
      assert.match(String(created.headers['content-type']), /^application\/scim\+json/);
      assert.equal(created.headers['cache-control'], 'no-store');
      const body = created.json() as Record<string, any>;
      assert.equal(body.userName, 'bjensen');
      assert.equal(body.externalId, 'bjensen');
      assert.deepEqual(body.name, { formatted: 'Ms. Barbara J Jensen III', givenName: 'Barbara', familyName: 'Jensen' });
      assert.equal(body.active, true);
      assert.equal(body.meta.resourceType, 'User');
      assert.equal(created.headers.location, `${s.f.issuer}/scim/v2/Users/${body.id}`);
      assert.equal(created.headers.etag, body.meta.version);
      assert.match(body.meta.version, /^W\/"/);
      const read = await s.call('GET', `/Users/${body.id}`, { token: s.reader });
      assert.equal(read.statusCode, 200);
      assert.deepEqual(read.json(), body);
    });

    test('refuses a duplicate userName with 409 uniqueness', async (t) => {
      const s = await scim(t, dialect);
      assert.equal((await s.call('POST', '/Users', { body: bjensen })).statusCode, 201);
      assertScimError(await s.call('POST', '/Users', { body: { ...bjensen, userName: 'BJensen', externalId: 'other' } }), 409, 'uniqueness');
    });

    test('filters with eq, sw, co, and, or (RFC 7644 §3.4.2.2), case-insensitively for userName, and pages', async (t) => {
      const s = await scim(t, dialect);
      for (const [userName, family] of [['bjensen', 'Jensen'], ['jsmith', 'Smith'], ['jdoe', 'Doe'], ['jsmithers', 'Smithers']] as const) {
        const r = await s.call('POST', '/Users', { body: { schemas: [userSchema], userName, name: { familyName: family, givenName: 'X' }, emails: [{ value: `${userName}@example.com`, type: 'work' }], externalId: `hr-${userName}` } });
        assert.equal(r.statusCode, 201, r.body);
      }
      const names = async (filter: string, extra = '') => {
        const r = await s.call('GET', `/Users?filter=${encodeURIComponent(filter)}${extra}`, { token: s.reader });
        assert.equal(r.statusCode, 200, r.body);
        const body = r.json() as { totalResults: number; Resources: { userName: string }[]; schemas: string[] };
        assert.deepEqual(body.schemas, ['urn:ietf:params:scim:api:messages:2.0:ListResponse']);
        return { total: body.totalResults, names: body.Resources.map((u) => u.userName) };
      };
      assert.deepEqual((await names('userName eq "BJENSEN"')).names, ['bjensen']);
      assert.deepEqual((await names('userName sw "J"')).names, ['jdoe', 'jsmith', 'jsmithers']);
      assert.deepEqual((await names('name.familyName co "smith"')).names, ['jsmith', 'jsmithers']);
      assert.deepEqual((await names('userName sw "j" and name.familyName eq "doe"')).names, ['jdoe']);
      assert.deepEqual((await names('externalId eq "hr-jdoe" or emails.value eq "bjensen@example.com"')).names, ['bjensen', 'jdoe']);
      assert.deepEqual((await names('emails[type eq "work" and value co "smith"]')).names, ['jsmith', 'jsmithers']);
      assert.deepEqual((await names('active eq true')).total, 4);
      assert.deepEqual((await names('meta.lastModified gt "2000-01-01T00:00:00Z"')).total, 4);
      // externalId is caseExact (RFC 7643 §3.1).
      assert.deepEqual((await names('externalId eq "HR-JDOE"')).names, []);
      const page = await names('userName sw "j"', '&startIndex=2&count=1');
      assert.deepEqual(page, { total: 3, names: ['jsmith'] });
    });

    test('answers a bad filter and an unknown attribute with 400 invalidFilter', async (t) => {
      const s = await scim(t, dialect);
      assertScimError(await s.call('GET', `/Users?filter=${encodeURIComponent('userName eq')}`), 400, 'invalidFilter');
      assertScimError(await s.call('GET', `/Users?filter=${encodeURIComponent('userName zz "x"')}`), 400, 'invalidFilter');
      assertScimError(await s.call('GET', `/Users?filter=${encodeURIComponent('shoeSize eq "42"')}`), 400, 'invalidFilter');
      assertScimError(await s.call('GET', `/Users?filter=${encodeURIComponent('password eq "x"')}`), 400, 'invalidFilter');
    });

    test('replaces a User with PUT (RFC 7644 §3.5.1) and keeps what SCIM does not manage', async (t) => {
      const s = await scim(t, dialect);
      const created = (await s.call('POST', '/Users', { body: bjensen })).json() as Record<string, any>;
      const replaced = await s.call('PUT', `/Users/${created.id}`, {
        body: {
          schemas: [userSchema, enterprise, institution],
          id: created.id,
          userName: 'bjensen',
          externalId: 'bjensen',
          name: { formatted: 'Ms. Barbara J Jensen III', familyName: 'Jensen', givenName: 'Barbara' },
          emails: [{ value: 'bjensen@example.com', type: 'work', primary: true }],
          [enterprise]: { department: 'Rates', employeeNumber: '701984' },
          [institution]: { legalEntity: '5493001KJTIIGC8Y1R12', desks: ['fx-spot'], kycReference: 'case-42' },
        },
        headers: { 'if-match': created.meta.version },
      });
      assert.equal(replaced.statusCode, 200, replaced.body);
      const body = replaced.json() as Record<string, any>;
      assert.deepEqual(body.emails, [{ value: 'bjensen@example.com', type: 'work', primary: true }]);
      assert.deepEqual(body[enterprise], { employeeNumber: '701984', department: 'Rates' });
      assert.deepEqual(body[institution], { legalEntity: '5493001KJTIIGC8Y1R12', desks: ['fx-spot'], kycReference: 'case-42' });
      assert.notEqual(body.meta.version, created.meta.version);
      const stored = await s.f.ctx.storage.db.selectFrom('users').select(['attributes', 'desks', 'email']).where('id', '=', created.id).executeTakeFirstOrThrow();
      assert.deepEqual(JSON.parse(stored.desks), ['fx-spot']);
      assert.equal(JSON.parse(stored.attributes).lei, '5493001KJTIIGC8Y1R12');
      const events = await s.f.auditEvents('config.applied');
      assert.ok(events.some((e) => e.details?.via === 'scim' && e.subject === created.id));
    });

    test('patches with the RFC 7644 §3.5.2 operations and refuses a stale ETag with 412', async (t) => {
      const s = await scim(t, dialect);
      const created = (await s.call('POST', '/Users', { body: bjensen })).json() as Record<string, any>;
      const added = await s.call('PATCH', `/Users/${created.id}`, {
        body: { schemas: [patchOp], Operations: [{ op: 'add', path: 'emails', value: [{ value: 'babs@jensen.org', type: 'work' }] }, { op: 'replace', path: 'name.givenName', value: 'Babs' }] },
        headers: { 'if-match': created.meta.version },
      });
      assert.equal(added.statusCode, 200, added.body);
      assert.equal(added.json().emails[0].value, 'babs@jensen.org');
      assert.equal(added.json().name.givenName, 'Babs');
      const replaced = await s.call('PATCH', `/Users/${created.id}`, { body: { schemas: [patchOp], Operations: [{ op: 'replace', path: 'emails[type eq "work"].value', value: 'bj@example.com' }] } });
      assert.equal(replaced.statusCode, 200, replaced.body);
      assert.equal(replaced.json().emails[0].value, 'bj@example.com');
      const removed = await s.call('PATCH', `/Users/${created.id}`, { body: { schemas: [patchOp], Operations: [{ op: 'remove', path: 'name.givenName' }] } });
      assert.equal(removed.statusCode, 200, removed.body);
      assert.equal(removed.json().name.givenName, undefined);
      // The first version is stale now.
      assertScimError(await s.call('PATCH', `/Users/${created.id}`, { body: { schemas: [patchOp], Operations: [{ op: 'replace', path: 'displayName', value: 'B' }] }, headers: { 'if-match': created.meta.version } }), 412);
      assertScimError(await s.call('PUT', `/Users/${created.id}`, { body: bjensen, headers: { 'if-match': created.meta.version } }), 412);
      assertScimError(await s.call('DELETE', `/Users/${created.id}`, { headers: { 'if-match': created.meta.version } }), 412);
    });

    test('answers bad PATCH and PUT bodies with 400 SCIM errors, never a 5xx', async (t) => {
      const s = await scim(t, dialect);
      const { id } = (await s.call('POST', '/Users', { body: bjensen })).json() as { id: string };
      const patch = (Operations: unknown, schemas: unknown = [patchOp]) => s.call('PATCH', `/Users/${id}`, { body: { schemas, Operations } });
      assertScimError(await patch([{ op: 'replace', path: 'shoeSize', value: 1 }]), 400, 'invalidPath');
      assertScimError(await patch([{ op: 'replace', path: 'id', value: 'x' }]), 400, 'mutability');
      assertScimError(await patch([{ op: 'replace', value: { id: 'other' } }]), 400, 'mutability');
      assertScimError(await patch([{ op: 'jump', path: 'active' }]), 400, 'invalidSyntax');
      assertScimError(await patch([{ op: 'remove' }]), 400);
      assertScimError(await patch([], ['wrong']), 400, 'invalidSyntax');
      assertScimError(await patch([{ op: 'replace', path: 'userName.x', value: 1 }]), 400);
      assertScimError(await patch([{ op: 'replace', path: 'emails', value: 'not-an-array' }]), 400);
      assertScimError(await s.call('PUT', `/Users/${id}`, { body: { ...bjensen, shoeSize: 42 } }), 400, 'invalidSyntax');
      assertScimError(await s.call('PUT', `/Users/${id}`, { body: { ...bjensen, [institution]: { desks: ['x'] } } }), 400, 'invalidSyntax');
      assertScimError(await s.call('PUT', `/Users/${id}`, { body: { ...bjensen, emails: [{ value: 'not an email' }] } }), 400, 'invalidValue');
      assertScimError(await s.call('PUT', `/Users/${id}`, { body: { ...bjensen, userName: 'someone-else' } }), 400, 'mutability');
      assertScimError(await s.call('POST', '/Users', { body: { schemas: [userSchema] } }), 400, 'invalidValue');
      assertScimError(await s.f.inject({ method: 'POST', url: '/scim/v2/Users', headers: { authorization: `Bearer ${s.writer}`, 'content-type': 'application/scim+json' }, payload: '{not json' }), 400, 'invalidSyntax');
      assertScimError(await s.call('GET', '/Users/no-such-id'), 404);
      assertScimError(await s.call('GET', '/Nothing'), 404);
    });

    test('needs a token for the SCIM audience, scim:read to read and scim:write to write', async (t) => {
      const s = await scim(t, dialect);
      const none = assertScimError(await s.call('GET', '/Users', { token: null }), 401);
      assert.ok(none);
      assert.match(String((await s.call('GET', '/Users', { token: null })).headers['www-authenticate']), /^Bearer/);
      await s.f.apply({ clients: [secretClient('admin-writer', 'admin:read')] });
      const admin = await s.f.accessToken('admin-writer', { resource: adminAudience(s.f.issuer) });
      assertScimError(await s.call('GET', '/Users', { token: admin }), 401);
      assertScimError(await s.call('POST', '/Users', { token: s.reader, body: bjensen }), 403);
      // Discovery needs no token.
      const config = await s.call('GET', '/ServiceProviderConfig', { token: null });
      assert.equal(config.statusCode, 200);
      assert.deepEqual([config.json().patch.supported, config.json().bulk.supported, config.json().etag.supported, config.json().filter.maxResults], [true, false, true, 200]);
      assert.equal(config.json().authenticationSchemes[0].type, 'oauthbearertoken');
      const types = (await s.call('GET', '/ResourceTypes', { token: null })).json() as { Resources: { id: string }[] };
      assert.deepEqual(types.Resources.map((r) => r.id), ['User', 'Group']);
      const schemas = (await s.call('GET', '/Schemas', { token: null })).json() as { Resources: { id: string }[] };
      assert.deepEqual(schemas.Resources.map((r) => r.id), [userSchema, enterprise, institution, 'urn:ietf:params:scim:schemas:core:2.0:Group']);
      assert.equal((await s.call('GET', `/Schemas/${userSchema}`, { token: null })).statusCode, 200);
    });

    test('deletes a User as a leaver: offboarded, then 404 to SCIM, and its userName stays taken', async (t) => {
      const s = await scim(t, dialect);
      const { id } = (await s.call('POST', '/Users', { body: bjensen })).json() as { id: string };
      const deleted = await s.call('DELETE', `/Users/${id}`);
      assert.equal(deleted.statusCode, 204, deleted.body);
      assertScimError(await s.call('GET', `/Users/${id}`), 404);
      assert.equal((await s.call('GET', '/Users')).json().totalResults, 0);
      assertScimError(await s.call('POST', '/Users', { body: bjensen }), 409, 'uniqueness');
      const offboarded = await s.f.auditEvents('user.offboarded' as never);
      assert.equal(offboarded.length, 1);
      assert.equal(offboarded[0]!.subject, id);
    });
  });
}

for (const dialect of testDialects()) {
  describe(`what SCIM may not do, on ${dialect.name}`, () => {
    test('a filter with a control character is a 400 SCIM error, never a 5xx; a backslash escape is only text', async (t) => {
      const s = await scim(t, dialect);
      for (const filter of ['userName eq "\u0000"', 'externalId eq "a\u0000b"', 'id eq "\u001f"']) {
        const refused = await s.call('GET', `/Users?filter=${encodeURIComponent(filter)}`);
        assert.equal(refused.statusCode, 400, refused.body);
        assert.match(String(refused.headers['content-type']), /json/);
      }
      // scim2-parse-filter keeps `\u0000` as the six characters it is: nobody has that userName.
      const escaped = await s.call('GET', `/Users?filter=${encodeURIComponent('userName eq "\\u0000"')}`);
      assert.equal(escaped.statusCode, 200, escaped.body);
      assert.equal(escaped.json().totalResults, 0);
    });

    test('sets no password of a person it created who has since been given a guarded role: 400 mutability, on the record, nothing written', async (t) => {
      const s = await scim(t, dialect);
      const created = (await s.call('POST', '/Users', { body: { ...bjensen, password: 'her first passphrase 1' } })).json() as { id: string };
      // A guarded role, given by the operator (or through a role grant a second administrator approved).
      await s.f.apply({ users: [{ username: 'bjensen', name: 'Ms. Barbara J Jensen III', roles: ['approver'] }] });
      const hashBefore = (await s.f.ctx.storage.db.selectFrom('users').select('password_hash').where('id', '=', created.id).executeTakeFirstOrThrow()).password_hash;
      const body = assertScimError(
        await s.call('PATCH', `/Users/${created.id}`, { body: { schemas: [patchOp], Operations: [{ op: 'replace', path: 'password', value: 'taken over by hr 12345' }] } }),
        400,
        'mutability',
      );
      assert.match(String(body.detail), /holds approver/);
      const after = await s.f.ctx.storage.db.selectFrom('users').select('password_hash').where('id', '=', created.id).executeTakeFirstOrThrow();
      assert.equal(after.password_hash, hashBefore, 'the password is unchanged');
      const refused = await s.f.auditEvents('user.password_reset_refused');
      assert.equal(refused.length, 1);
      assert.equal(refused[0]!.subject, created.id);
      assert.deepEqual(refused[0]!.decision?.reasons, ['guarded_role']);
      assert.equal((refused[0]!.details as { via: string }).via, 'scim');
    });

    test('sets no password of, and re-activates no, person it did not create; lifts no administrator lock', async (t) => {
      const s = await scim(t, dialect);
      await s.f.apply({ users: [{ username: 'ops-admin', name: 'Ops Admin', password: 'a long admin passphrase 1', roles: ['admin'] }] });
      const admin = (await s.call('GET', `/Users?filter=${encodeURIComponent('userName eq "ops-admin"')}`)).json().Resources[0].id as string;
      const replace = (value: unknown, path: string) => s.call('PATCH', `/Users/${admin}`, { body: { schemas: [patchOp], Operations: [{ op: 'replace', path, value }] } });
      assertScimError(await replace('taken over 12345', 'password'), 400, 'mutability');
      // The leaver operation works on anyone; undoing it is the admin API's.
      assert.equal((await replace(false, 'active')).statusCode, 200);
      assertScimError(await replace(true, 'active'), 400, 'mutability');
      const row = await s.f.ctx.storage.db.selectFrom('users').select(['status', 'offboarded_at']).where('id', '=', admin).executeTakeFirstOrThrow();
      assert.equal(row.status, 'disabled');
      assert.notEqual(row.offboarded_at, null);

      // A person SCIM created: re-hired after leaving, but not over an administrator's lock.
      const created = (await s.call('POST', '/Users', { body: bjensen })).json() as { id: string };
      const patch = (value: boolean) => s.call('PATCH', `/Users/${created.id}`, { body: { schemas: [patchOp], Operations: [{ op: 'replace', path: 'active', value }] } });
      assert.equal((await patch(false)).statusCode, 200);
      assert.equal((await patch(true)).json().active, true);
      await s.f.apply({ users: [{ username: 'bjensen', name: 'Ms. Barbara J Jensen III', status: 'locked' }] });
      assertScimError(await patch(true), 400, 'mutability');
      assert.equal((await s.f.ctx.storage.db.selectFrom('users').select('status').where('id', '=', created.id).executeTakeFirstOrThrow()).status, 'locked');
    });
  });
}
