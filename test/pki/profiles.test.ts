import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { pkiAudience } from '../../src/resource-servers/builtins.ts';
import { openStorage } from '../../src/storage/database.ts';
import { bumpGeneration } from '../../src/storage/generations.ts';
import { profilesGeneration } from '../../src/pki/index.ts';
import { cliWorkspace } from '../helpers/cli.ts';
import { assertOAuthError, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';
import { initTestCa, opensslCsr, scratch, tradingAgentProfile } from './fixture.ts';

// Certificate profiles may not grant an extended key usage reserved to the CA's own roles
// (src/pki/profiles.ts): OCSPSigning belongs to the delegated OCSP responder Clearance builds for
// each issuing CA (src/pki/authority.ts). A holder of any other certificate of the CA with that EKU
// could sign OCSP answers a relying party takes (RFC 6960 §4.2.2.2) — `good` for a revoked one.

const rogue = (ekus: string[]) => ({ ...tradingAgentProfile, name: 'rogue-agent', ekus, client_auth: ekus.includes('client_auth') });

async function applyAsAdmin(f: ProtocolFixture, document: unknown, query = '') {
  const token = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
  return f.inject({ method: 'POST', url: `/admin/apply${query}`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify(document) });
}

describe('certificate profiles and the CA’s own extended key usages', () => {
  test('POST /admin/apply refuses a profile granting ocsp_signing with 400 invalid_request naming the field, planned or applied, and stores nothing', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    for (const query of ['?dry_run=true', '']) {
      const body = assertOAuthError(await applyAsAdmin(f, { certificate_profiles: [rogue(['client_auth', 'ocsp_signing'])] }, query), 400, 'invalid_request', query);
      assert.match(String(body.error_description), /certificate_profiles\[0\]\.ekus\[1\]: ocsp_signing is reserved to the CA's own OCSP responder/);
    }
    assert.equal(await f.ctx.storage.db.selectFrom('pki_profiles').select('name').where('name', '=', 'rogue-agent').executeTakeFirst(), undefined);
  });

  test('the OCSPSigning OID written out, and anyExtendedKeyUsage, are refused the same way', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    const oid = assertOAuthError(await applyAsAdmin(f, { certificate_profiles: [rogue(['1.3.6.1.5.5.7.3.9'])] }), 400, 'invalid_request');
    assert.match(String(oid.error_description), /certificate_profiles\[0\]\.ekus\[0\]: 1\.3\.6\.1\.5\.5\.7\.3\.9 is reserved to the CA's own OCSP responder/);
    const any = assertOAuthError(await applyAsAdmin(f, { certificate_profiles: [rogue(['client_auth', '2.5.29.37.0'])] }), 400, 'invalid_request');
    assert.match(String(any.error_description), /certificate_profiles\[0\]\.ekus\[1\]: 2\.5\.29\.37\.0 is anyExtendedKeyUsage/);
    // The EKUs a workload may hold are still given.
    const allowed = await applyAsAdmin(f, { certificate_profiles: [rogue(['client_auth', 'server_auth', 'time_stamping'])] });
    assert.equal(allowed.statusCode, 200, allowed.body);
  });

  test('clearance apply refuses a document whose profile grants ocsp_signing, naming the field, and applies nothing', async (t) => {
    const { run, dir, env } = cliWorkspace(t);
    writeFileSync(join(dir, 'profiles.json'), JSON.stringify({ certificate_profiles: [rogue(['client_auth', 'ocsp_signing'])] }));
    // --plan (what CI runs before a rollout) exits 2 on an invalid document, an apply 1.
    for (const [flag, code] of [['--plan', 2], ['-f', 1]] as const) {
      const result = await run('apply', flag, join(dir, 'profiles.json'));
      assert.equal(result.code, code, result.out + result.err);
      assert.match(result.err, /certificate_profiles\[0\]\.ekus\[1\]: ocsp_signing is reserved to the CA's own OCSP responder/);
    }
    const storage = openStorage({ dataDir: env.CLEARANCE_DATA_DIR! });
    try {
      assert.deepEqual(await storage.db.selectFrom('pki_profiles').select('name').execute(), []);
    } finally {
      await storage.close();
    }
  });

  test('issuance under a stored profile granting ocsp_signing (from before the rule) is refused with 400, recorded, and signs nothing', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    await initTestCa(f.ctx);
    await f.apply({
      certificate_profiles: [rogue(['client_auth'])],
      clients: [{ client_id: 'enroller', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'pki:issue:rogue-agent' }],
    });
    // The profile as an older release stored it: ocsp_signing among its EKUs.
    const row = await f.ctx.storage.db.selectFrom('pki_profiles').selectAll().where('name', '=', 'rogue-agent').executeTakeFirstOrThrow();
    const definition = { ...JSON.parse(row.definition), ekus: ['client_auth', 'ocsp_signing'] };
    await f.ctx.storage.db.transaction().execute(async (trx) => {
      await trx.updateTable('pki_profiles').set({ definition: JSON.stringify(definition), version: Number(row.version) + 1 }).where('name', '=', 'rogue-agent').execute();
      await bumpGeneration(trx, profilesGeneration);
    });
    f.ctx.pki.invalidateProfiles();
    const token = await f.accessToken('enroller', { resource: pkiAudience(f.issuer), scope: 'pki:issue:rogue-agent' });
    const response = await f.inject({
      method: 'POST',
      url: '/pki/certificates',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ profile: 'rogue-agent', csr: opensslCsr(scratch(t), 'enroller').csrPem }),
    });
    const body = assertOAuthError(response, 400, 'invalid_request');
    assert.match(String(body.error_description), /profile rogue-agent grants ocsp_signing, which is reserved to the CA's own OCSP responder/);
    const refused = await f.auditEvents('pki.issuance_refused');
    assert.equal(refused.at(-1)?.details?.reason, 'reserved_eku');
    assert.equal((await f.ctx.storage.db.selectFrom('pki_certificates').select('serial').execute()).length, 0);
  });
});
