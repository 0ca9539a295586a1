import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ScimError } from '../../../src/lifecycle/scim/errors.ts';
import { parseFilter, requiredEqualities } from '../../../src/lifecycle/scim/filter.ts';
import { userResource, userSchemas, readUserWrite } from '../../../src/lifecycle/scim/users.ts';

const user = { id: 'u1', username: 'bjensen', name: 'Barbara Jensen', email: 'bjensen@example.com', desks: ['fx-spot'], roles: [], attributes: { family_name: 'Jensen', suitability: ['fx'] }, status: 'active' as const, hasPassword: false, createdAt: 0, updatedAt: 1_000, lastLoginAt: null, lockedAt: null, lockReason: null };
const resource = userResource({ user, externalId: 'W-1', provisioned: true }, 'https://as.example/scim/v2', new Map());

test('matches the RFC 7644 §3.4.2.2 examples by the schema: userName without case, externalId with it, dates as instants', () => {
  const matches = (f: string) => parseFilter(f, userSchemas).matches(resource);
  assert.equal(matches('userName eq "BJensen"'), true);
  assert.equal(matches('name.familyName co "ens"'), true);
  assert.equal(matches('userName sw "J"'), false);
  assert.equal(matches('externalId eq "w-1"'), false);
  assert.equal(matches('emails[type eq "work" and value co "@example.com"]'), true);
  assert.equal(matches('meta.lastModified ge "1970-01-01T00:00:01Z"'), true);
  assert.equal(matches('urn:clearance:params:scim:schemas:extension:institution:2.0:User:desks eq "fx-spot"'), true);
});

test('refuses an unknown attribute and bad syntax as invalidFilter', () => {
  for (const f of ['title pr', 'userName eq', 'emails[nope eq "x"]', '(userName eq "a"']) {
    assert.throws(() => parseFilter(f, userSchemas), (e: unknown) => e instanceof ScimError && e.scimType === 'invalidFilter', f);
  }
});

test('names the equalities every match needs, for narrowing the read', () => {
  assert.deepEqual([...requiredEqualities(parseFilter('userName eq "a" and active eq true', userSchemas).tree)], [['username', 'a'], ['active', true]]);
  assert.equal(requiredEqualities(parseFilter('userName eq "a" or userName eq "b"', userSchemas).tree).size, 0);
});

test('maps a User write onto apply entry fields and keeps attributes SCIM does not manage', () => {
  const write = readUserWrite({ schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'BJensen', name: { givenName: 'Barbara', familyName: 'Jensen' }, active: false }, user);
  assert.equal(write.entry.username, 'bjensen');
  assert.equal(write.entry.name, 'Barbara Jensen');
  assert.deepEqual(write.entry.attributes, { suitability: ['fx'], given_name: 'Barbara', family_name: 'Jensen' });
  assert.deepEqual(write.entry.desks, ['fx-spot']);
  assert.equal(write.leaver, true);
});
