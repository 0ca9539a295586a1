import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { requestCertificate } from '../../src/pki/issuance.ts';
import { sealNow } from '../../src/audit/lifecycle.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { assertOAuthError, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';
import { applyDocument, initTestCa, opensslCsr, scratch, tradingAgentProfile } from '../pki/fixture.ts';

const get = (f: ProtocolFixture, url: string, token?: string) => f.inject({ method: 'GET', url, headers: token ? { authorization: `Bearer ${token}` } : {} });

interface Inventory {
  within_days: number;
  signing_keys: { kid: string; alg: string; state: string }[];
  audit_key: { key_id: string } | null;
  authorities: { role: string; subject: string; not_after: string; expires_soon: boolean }[];
  certificates: { valid: number; expiring: { holder: string; profile: string; not_after: string }[]; truncated: boolean };
}

describe('GET /admin/keys', () => {
  test('admits admin:read only', async (t) => {
    const f = await protocolFixture(t);
    assertOAuthError(await get(f, '/admin/keys'), 401, 'invalid_token');
    const writeOnly = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer), scope: 'admin:write' });
    assertOAuthError(await get(f, '/admin/keys', writeOnly), 403, 'insufficient_scope');
  });

  test('lists the signing keys with their state, the audit key, the CA’s authorities and the certificates that expire within the window — never a key', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
    const before = (await get(f, '/admin/keys', token)).json() as Inventory;
    assert.deepEqual(before.signing_keys.map((k) => k.state), ['active']);
    assert.equal(before.audit_key, null, 'no checkpoint, no audit key yet');
    assert.deepEqual(before.authorities, []);
    assert.deepEqual(before.certificates, { valid: 0, expiring: [], truncated: false });

    await sealNow(f.ctx, resolveMasterKey(f.ctx.config).key);
    await initTestCa(f.ctx);
    await applyDocument(f.ctx, { certificate_profiles: [tradingAgentProfile] });
    const files = scratch(t);
    for (const holder of ['algo-7', 'algo-8']) {
      await requestCertificate(f.ctx, { profile: 'trading-agent', csr: opensslCsr(files, holder).csrPem, holder, requestedBy: 'pipeline', requesterType: 'client' });
    }

    const response = await get(f, '/admin/keys', token);
    assert.equal(response.statusCode, 200, response.body);
    const inventory = response.json() as Inventory;
    assert.equal(inventory.within_days, 30);
    assert.match(String(inventory.audit_key?.key_id), /^[0-9a-f]{64}$/);
    // The test CA: a 30-day root and a 10-day issuing authority, both within 30 days.
    assert.deepEqual(inventory.authorities.map((a) => [a.role, a.expires_soon]).sort(), [['issuing', true], ['ocsp', true], ['root', true]].filter(([role]) => inventory.authorities.some((a) => a.role === role)));
    assert.ok(inventory.authorities.some((a) => a.role === 'root') && inventory.authorities.some((a) => a.role === 'issuing'));
    assert.equal(inventory.certificates.valid, 2);
    assert.deepEqual(inventory.certificates.expiring.map((c) => [c.holder, c.profile]), [['algo-7', 'trading-agent'], ['algo-8', 'trading-agent']], 'soonest first');
    assert.doesNotMatch(response.body, /PRIVATE KEY|"d":|BEGIN CERTIFICATE/, 'no key or certificate body');

    // A one-day window: the 8-hour certificates still, the 10-day authority no longer.
    const narrow = (await get(f, '/admin/keys?within_days=1', token)).json() as Inventory;
    assert.equal(narrow.certificates.expiring.length, 2);
    assert.equal(narrow.authorities.find((a) => a.role === 'issuing')!.expires_soon, false);
    for (const bad of ['0', '367', 'soon']) {
      assertOAuthError(await get(f, `/admin/keys?within_days=${bad}`, token), 400, 'invalid_request', bad);
    }
  });
});
