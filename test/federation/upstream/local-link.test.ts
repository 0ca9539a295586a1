import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { clearPendingLink, completeLocalLink } from '../../../src/federation/upstream/local-link.ts';

// The pending-link cookie names an upstream identity waiting to be linked to whoever signs in next
// in this browser: on https it is prefixed, so a sibling subdomain or an http page cannot plant one.

const ctxOf = (issuer: string) => ({ config: { issuer } }) as Parameters<typeof completeLocalLink>[0];
const request = (cookieHeader: string) => ({ cookieHeader, browserId: 'b', interactionId: 'i', requestId: 'r' });

describe('the pending-link cookie', () => {
  test('is __Host-clearance_link on an https issuer at the root, __Secure- with a path, bare on http', () => {
    assert.equal(clearPendingLink(ctxOf('https://id.broker.example')), '__Host-clearance_link=; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=0');
    assert.equal(clearPendingLink(ctxOf('https://id.broker.example/idp')), '__Secure-clearance_link=; Path=/idp; HttpOnly; SameSite=Lax; Secure; Max-Age=0');
    assert.equal(clearPendingLink(ctxOf('http://localhost:9000')), 'clearance_link=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0');
  });

  test('planted under the bare name on https, is not read at all (no storage is asked)', async () => {
    // The context has no storage: reading the planted state would throw.
    assert.equal(await completeLocalLink(ctxOf('https://id.broker.example'), request('clearance_link=planted-state'), 'person'), undefined);
  });
});
