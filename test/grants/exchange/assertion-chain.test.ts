import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Partner } from '../../../src/federation/definition.ts';
import type { VerifiedPartnerToken } from '../../../src/federation/verify.ts';
import { assertionChain, chainNames } from '../../../src/grants/exchange/assertion-chain.ts';

// What the JWT bearer grant keeps of a partner assertion's chain (src/grants/exchange/assertion-chain.ts).

const issuer = 'https://as.partner.example';
const verified = (claims: Record<string, unknown>): VerifiedPartnerToken => ({
  partner: { id: 'partner', issuer } as Partner,
  claims: { iss: issuer, sub: 's', ...claims },
  subject: 's',
  attributes: {},
  kind: 'jwt',
  expiresAt: 0,
});

test('the partner\'s actors are named with its issuer, where it left them implicit and where it named itself', () => {
  const chain = assertionChain(verified({ act: { sub: 'backend', act: { sub: 'gateway', iss: issuer } }, txn: 'trade-1', mandate: { id: 'm-1', v: 2 }, scope: 'order:create  settlement:submit' }));
  assert.deepEqual(chain, {
    act: { sub: 'backend', iss: issuer, act: { sub: 'gateway', iss: issuer } },
    txn: 'trade-1',
    mandate: { id: 'm-1', v: 2 },
    scopes: ['order:create', 'settlement:submit'],
  });
  assert.deepEqual(chainNames({ sub: 'ours', act: (chain as { act: Record<string, unknown> }).act }), ['ours', `backend (${issuer})`, `gateway (${issuer})`]);
});

test('an actor the partner names with another issuer — a third domain\'s, or ours — refuses the assertion: a partner vouches for its own actors only', () => {
  for (const other of ['https://third.example', 'https://clearance.example']) {
    const deep = assertionChain(verified({ act: { sub: 'backend', act: { sub: 'gateway', iss: other } } }));
    assert.deepEqual(deep, { error: 'its act claim names an actor of another issuer than the partner' }, other);
    assert.ok('error' in assertionChain(verified({ act: { sub: 'desk-backend', iss: other } })), `${other}, outermost`);
  }
});

test('an assertion without a chain brings none, and a malformed txn is dropped, not carried', () => {
  assert.deepEqual(assertionChain(verified({})), {});
  assert.deepEqual(assertionChain(verified({ txn: 'a b\nc' })), {});
});

test('a malformed act, scope or mandate refuses the assertion', () => {
  assert.ok('error' in assertionChain(verified({ act: { sub: 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln' } })), 'a token-shaped actor');
  assert.ok('error' in assertionChain(verified({ act: 'backend' })));
  assert.ok('error' in assertionChain(verified({ scope: ['order:create'] })));
  assert.ok('error' in assertionChain(verified({ mandate: 'm-1' })));
  assert.ok('error' in assertionChain(verified({ mandate: { id: 'm-1', v: 0 } })));
});
