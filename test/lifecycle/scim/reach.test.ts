import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Context } from '../../../src/context.ts';
import { entryWithinReach, legalEntitiesOf, reaches, reachesDesk, scimReachOf, ScimRefusal, type ScimReach } from '../../../src/lifecycle/scim/reach.ts';
import { ScimError } from '../../../src/lifecycle/scim/errors.ts';
import type { UserAttributes } from '../../../src/identity/users.ts';
import type { AccessTokenClaims } from '../../../src/tokens/claims.ts';

const firmA = '5493001KJTIIGC8Y1R12';
const firmB = '529900T8BM49AURSDO55';
const deskLeis = new Map([
  ['a-fx', firmA],
  ['b-fx', firmB],
]);
const firmAOnly: ScimReach = { kind: 'entities', leis: new Set([firmA]), deskLeis };
const person = (attributes: UserAttributes, desks: string[]) => ({ attributes, desks });

/** Just enough of a Context for a client's own token. */
function clientsContext(owners: Record<string, string | undefined>, globalClients: string[] = []) {
  return {
    clients: { get: async (id: string) => (id in owners ? { metadata: { client_id: id, ...(owners[id] ? { owner_lei: owners[id] } : {}) } } : undefined) },
    entities: { snapshot: async () => ({ desks: new Map([['a-fx', { lei: firmA, desk: { id: 'a-fx' } }], ['b-fx', { lei: firmB, desk: { id: 'b-fx' } }]]) }) },
    config: { scimGlobalClients: globalClients },
    storage: {},
  } as unknown as Pick<Context, 'clients' | 'entities' | 'storage' | 'config'>;
}

const clientToken = (client: string, extra: Partial<AccessTokenClaims> = {}) => ({ client_id: client, sub: client, ...extra }) as AccessTokenClaims;

describe('whose people a SCIM caller reaches', () => {
  test('a person’s legal entities are their lei and their desks’ firms', () => {
    assert.deepEqual(legalEntitiesOf(person({ lei: firmA }, ['b-fx', 'undeclared']), deskLeis), [firmA, firmB].sort());
    assert.deepEqual(legalEntitiesOf(person({}, []), deskLeis), []);
  });

  test('a firm reaches a person only when every legal entity of theirs is its own, and they have one', () => {
    assert.equal(reaches(firmAOnly, person({ lei: firmA }, ['a-fx'])), true);
    assert.equal(reaches(firmAOnly, person({}, ['a-fx'])), true);
    assert.equal(reaches(firmAOnly, person({ lei: firmA }, ['b-fx'])), false, 'partly of another firm');
    assert.equal(reaches(firmAOnly, person({}, [])), false, 'of no firm');
    assert.equal(reaches({ kind: 'all' }, person({}, [])), true);
    assert.equal(reachesDesk(firmAOnly, 'a-fx'), true);
    assert.equal(reachesDesk(firmAOnly, 'b-fx'), false);
  });

  test('a write that names no legal entity is of the caller’s own; another firm named is a 403 refusal', () => {
    assert.deepEqual(entryWithinReach(firmAOnly, { username: 'carol', attributes: { department: 'Rates' } }, undefined).attributes, { department: 'Rates', lei: firmA });
    assert.throws(() => entryWithinReach(firmAOnly, { username: 'carol', desks: ['b-fx'] }, 'id-1'), (e: unknown) => e instanceof ScimRefusal && e.status === 403 && e.scimType === undefined && e.record.subject === 'id-1' && e.record.legalEntities?.[0] === firmB);
    const twoFirms: ScimReach = { kind: 'entities', leis: new Set([firmA, firmB]), deskLeis };
    assert.throws(() => entryWithinReach(twoFirms, { username: 'carol' }, undefined), (e: unknown) => e instanceof ScimError && e.status === 400 && e.scimType === 'invalidValue');
  });

  test('a client reaches its owner_lei; one of no legal entity no one, unless CLEARANCE_SCIM_GLOBAL_CLIENTS names it', async () => {
    const ctx = clientsContext({ 'hr-a': firmA, 'hr-none': undefined });
    const reach = await scimReachOf(ctx, clientToken('hr-a'));
    assert.equal(reach.kind, 'entities');
    assert.deepEqual(reach.kind === 'entities' ? [...reach.leis] : [], [firmA]);
    await assert.rejects(scimReachOf(ctx, clientToken('hr-none')), (e: unknown) => e instanceof ScimRefusal && e.status === 403 && e.record.reason === 'no_legal_entity');
    assert.deepEqual(await scimReachOf(clientsContext({ 'hr-none': undefined }, ['hr-none']), clientToken('hr-none')), { kind: 'all' });
    // An owner_lei wins over the list: a firm's client stays within its firm.
    assert.equal((await scimReachOf(clientsContext({ 'hr-a': firmA }, ['hr-a']), clientToken('hr-a'))).kind, 'entities');
    await assert.rejects(scimReachOf(ctx, clientToken('hr-a', { act: { sub: 'someone' } } as Partial<AccessTokenClaims>)), (e: unknown) => e instanceof ScimRefusal && e.status === 403);
    await assert.rejects(scimReachOf(ctx, clientToken('hr-a', { sub: 'another' })), (e: unknown) => e instanceof ScimRefusal && e.status === 403);
  });
});
