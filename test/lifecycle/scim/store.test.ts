import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { User } from '../../../src/identity/users.ts';
import { inLockOrder } from '../../../src/lifecycle/scim/store.ts';

const person = (id: string) => ({ id }) as User;

describe('a Group change of several people', () => {
  test('locks them in the order of their ids, whatever order the request named them in and whether they join or leave', () => {
    const one = [{ person: person('b'), on: true }, { person: person('c'), on: true }, { person: person('a'), on: false }];
    const other = [{ person: person('a'), on: true }, { person: person('c'), on: false }, { person: person('b'), on: true }];
    assert.deepEqual(inLockOrder(one).map((m) => m.person.id), ['a', 'b', 'c']);
    assert.deepEqual(inLockOrder(other).map((m) => m.person.id), ['a', 'b', 'c']);
    assert.deepEqual(inLockOrder(one).map((m) => m.on), [false, true, true], 'each keeps its own change');
  });
});
