import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkCounterpartyStatement } from '../../src/audit/bundle-counterparty.ts';
import type { StoredAuditEvent } from '../../src/audit/events.ts';

// verify-bundle's check of a counterparty's statement (src/audit/bundle-counterparty.ts): it must
// say exactly which of the bundle's hops the client took part in and which led to them.

let seq = 0;
const hop = (jti: string, parent?: string, extra: Partial<StoredAuditEvent> = {}): { event: StoredAuditEvent } => ({
  event: {
    v: 1,
    id: `e-${++seq}`,
    time: seq,
    node: 'n',
    txn: 'trade-1',
    type: parent ? 'token.exchanged' : 'token.issued',
    ...extra,
    details: { jti, ...(parent ? { parent_jti: parent } : {}), ...extra.details },
  },
});
const events = [hop('h1', undefined, { mandate: { id: 'm-1', v: 2 }, details: { grant_id: 'g-7' } }), hop('h2', 'h1'), hop('h3', 'h2')];
const good = {
  client: 'clearing-reader',
  lei: '5299000CLEARING00H44',
  hops: [
    { jti: 'h1', part: 'chain' },
    { jti: 'h2', part: 'chain' },
    { jti: 'h3', part: 'took_part', as: ['audience'] },
  ],
  withheld: 4,
};
const check = (statement: unknown, query: Record<string, string> = { txn: 'trade-1' }) => checkCounterpartyStatement(statement, events, query);

describe('a counterparty statement', () => {
  test('that states every hop of the bundle, why, and what leads to them, verifies and names the chain’s references', () => {
    const { problems, summary } = check(good);
    assert.deepEqual(problems, []);
    assert.deepEqual(summary, { client: 'clearing-reader', lei: '5299000CLEARING00H44', tookPart: 1, chain: 2, withheld: 4, mandates: ['m-1 v2'], grants: ['g-7'] });
  });

  test('is absent from every other bundle, and then nothing is checked', () => {
    assert.deepEqual(check(undefined), { problems: [] });
  });

  test('fails when it leaves a hop out, names one the bundle does not hold, or states one twice', () => {
    assert.match(check({ ...good, hops: good.hops.slice(1) }).problems.join('\n'), /the bundle's hop h1 is not stated/);
    assert.match(check({ ...good, hops: [...good.hops, { jti: 'h9', part: 'chain' }] }).problems.join('\n'), /hop h9 is stated, and the bundle holds no token event/);
    assert.match(check({ ...good, hops: [...good.hops, good.hops[0]] }).problems.join('\n'), /hop h1 is stated twice/);
  });

  test('fails when a chain hop leads to no hop taken part in, or none was taken part in', () => {
    const asChain = { ...good, hops: [{ jti: 'h1', part: 'took_part', as: ['client'] }, { jti: 'h2', part: 'took_part', as: ['audience'] }, { jti: 'h3', part: 'chain' }] };
    assert.match(check(asChain).problems.join('\n'), /hop h3 is stated as the chain, and leads to no hop taken part in/);
    const none = { ...good, hops: good.hops.map((h) => ({ jti: h.jti, part: 'chain' })) };
    assert.match(check(none).problems.join('\n'), /names no hop its client took part in/);
  });

  test('of a party with a pairwise client may hold no hop, when it says events naming a person were withheld', () => {
    const empty = { client: 'clearing-reader', hops: [], withheld: 7 };
    const own: { event: StoredAuditEvent }[] = [];
    assert.deepEqual(checkCounterpartyStatement({ ...empty, persons_withheld: 3 }, own, { txn: 'trade-1' }).problems, []);
    assert.equal(checkCounterpartyStatement({ ...empty, persons_withheld: 3 }, own, { txn: 'trade-1' }).summary?.personsWithheld, 3);
    assert.match(checkCounterpartyStatement(empty, own, { txn: 'trade-1' }).problems.join('\n'), /names no hop its client took part in/, 'without that, it names none');
    assert.match(checkCounterpartyStatement({ ...empty, persons_withheld: 0 }, own, { txn: 'trade-1' }).problems.join('\n'), /names no hop/);
    assert.match(checkCounterpartyStatement({ ...empty, persons_withheld: 8 }, own, { txn: 'trade-1' }).problems.join('\n'), /persons_withheld must be a count within withheld/);
    // A bundle holding hops still needs one taken part in.
    const none = { ...good, hops: good.hops.map((h) => ({ jti: h.jti, part: 'chain' })), persons_withheld: 2 };
    assert.match(check(none).problems.join('\n'), /names no hop its client took part in/);
  });

  test('fails when malformed: no client, a negative count, an unknown role, a role on a chain hop, another query than one txn', () => {
    assert.deepEqual(check({ ...good, client: '' }).problems, ['counterparty: not a counterparty statement (client, withheld, hops)']);
    assert.equal(check({ ...good, withheld: -1 }).problems.length, 1);
    assert.match(check({ ...good, hops: [good.hops[0], good.hops[1], { jti: 'h3', part: 'took_part', as: ['owner'] }] }).problems.join('\n'), /hop 2 is not a stated hop/);
    assert.match(check({ ...good, hops: [{ ...good.hops[0], as: ['client'] }, good.hops[1], good.hops[2]] }).problems.join('\n'), /hop 0 is not a stated hop/);
    assert.match(check(good, { txn: 'trade-1', client: 'x' }).problems.join('\n'), /the evidence of one txn/);
  });
});
