import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { adminAudience } from '../../src/admin/authorize.ts';
import { recoveryKind } from '../../src/approvals/kinds/recovery.ts';
import { decideApprovalRequest } from '../../src/approvals/requests.ts';
import { secondFactorsOf } from '../../src/identity/factors/index.ts';
import { listPasskeys } from '../../src/identity/passkeys/store.ts';
import { openRecoveryByHelpDesk } from '../../src/identity/recovery/requests.ts';
import { enrolThroughLink } from '../../src/identity/recovery/enrolment.ts';
import { planApply } from '../../src/apply/index.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { enrolTotp } from '../identity/factors/fixture.ts';
import { approverOf, person, recoveryPeople, storedPasskey, strongProof } from '../identity/recovery/fixture.ts';
import { Jar, startAuthorization, submitPassword } from '../endpoints/people-browser.ts';
import { assertOAuthError } from '../endpoints/fixture.ts';

// "No path lets one person alone reset another's factors" (issue 15 item 4): an administrator's
// every write to a person — the admin API's PUT and PATCH, a password reset, apply — leaves the
// person's passkeys and authenticator alone, and the only way to remove them for someone else is
// a recovery request, which a second, independent person approves (docs/recovery.md).

const password = 'alice-correct-horse-42';
const alice = { username: 'alice', password, name: 'Alice Trader', desks: ['rates'] };

async function fixture(t: Parameters<typeof codeFlowFixture>[0]): Promise<{ f: CodeFlowFixture; userId: string; factorId: string; admin: string }> {
  const f = await codeFlowFixture(t);
  await f.apply({ users: [alice, ...recoveryPeople] });
  const { userId, factorId } = await enrolTotp(f, 'alice');
  await storedPasskey(f.ctx, userId, 'cred-alice');
  return { f, userId, factorId, admin: await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) }) };
}

function call(f: CodeFlowFixture, method: 'PUT' | 'PATCH', token: string, body: unknown): Promise<LightMyRequestResponse> {
  return f.inject({
    method,
    url: '/admin/users/alice',
    headers: { authorization: `Bearer ${token}`, 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' },
    payload: JSON.stringify(body),
  });
}

async function assertFactorsIntact(f: CodeFlowFixture, userId: string, factorId: string): Promise<void> {
  assert.deepEqual((await secondFactorsOf(f.ctx, userId)).map((s) => s.id), [factorId]);
  assert.deepEqual((await listPasskeys(f.ctx, userId)).map((p) => p.credentialId), ['cred-alice']);
}

describe('one administrator alone', () => {
  test('cannot remove or replace a person’s passkeys or authenticator through PUT, PATCH or apply', async (t) => {
    const { f, userId, factorId, admin } = await fixture(t);
    const current = { name: 'Alice Trader', email: null, desks: ['rates'], roles: [], attributes: {}, status: 'active' };
    for (const member of [{ passkeys: [] }, { totp: null }, { factors: [] }, { recovery_codes: [] }, { has_password: false }]) {
      // Refused; or, for a null (no such member to clear), nothing changes.
      for (const answer of [await call(f, 'PUT', admin, { ...current, ...member }), await call(f, 'PATCH', admin, member)]) {
        if (Object.values(member)[0] === null) assert.equal(answer.json().outcome, 'unchanged', answer.body);
        else assert.equal(answer.statusCode, 400, `${JSON.stringify(member)}: ${answer.body}`);
      }
    }
    const { problems } = await planApply(f.ctx, { users: [{ ...alice, passkeys: [], totp: null }] });
    assert.ok(problems.some((p) => p.path === 'users[0].passkeys'), JSON.stringify(problems));
    await assertFactorsIntact(f, userId, factorId);
  });

  test('resets a password, and the person’s factors still stand between that password and their account', async (t) => {
    const { f, userId, factorId, admin } = await fixture(t);
    const known = 'administrator-knows-1';
    const reset = await call(f, 'PATCH', admin, { password: known });
    assert.equal(reset.statusCode, 200, reset.body);
    await assertFactorsIntact(f, userId, factorId);
    // The administrator's password opens no session: the authenticator's code is asked next.
    const jar = new Jar();
    const { id } = await startAuthorization(f, jar);
    const signedIn = await submitPassword(f, jar, id, 'alice', known);
    assert.equal(signedIn.statusCode, 303, signedIn.body);
    assert.match(String(signedIn.headers.location), new RegExp(`/interaction/${id}/second-factor$`));
    assert.doesNotMatch(String(signedIn.headers['set-cookie'] ?? ''), /clearance_session=[^;]/);
  });

  test('cannot open a recovery with an administrator client’s token, and cannot use a link with a password set after it was opened', async (t) => {
    const { f, userId, admin } = await fixture(t);
    const refused = await f.inject({
      method: 'POST',
      url: '/admin/users/alice/recovery',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ verification_method: 'in_person_id_check', evidence_ref: 'HD-1' }),
    });
    assertOAuthError(refused, 403, 'insufficient_scope');
    // A help desk and an approver agreed; then an administrator tries to set a password they know:
    // the approval left alice no factor above the password, so her credentials are held until the
    // link's enrolment (docs/recovery.md "What approval does") and the write is refused.
    const opened = await openRecoveryByHelpDesk(f.ctx, { helpDesk: await person(f.ctx, 'helen'), subject: await person(f.ctx, 'alice'), verificationMethod: 'video_id_check', evidenceRef: 'HD-77' });
    assert.ok(opened.ok);
    assert.ok((await decideApprovalRequest(f.ctx, recoveryKind, { requestId: opened.request.id, approver: await approverOf(f.ctx, 'rita'), proof: strongProof, decision: 'approve' })).ok);
    const known = 'administrator-knows-2';
    assert.equal((await call(f, 'PATCH', admin, { password: known })).statusCode, 400);
    const used = await enrolThroughLink(f.ctx, { token: opened.token, password: known, name: 'Theirs', credential: '{}', sourceAddress: '203.0.113.5' });
    assert.deepEqual(used, { ok: false, reason: 'wrong_password', killed: false });
    assert.deepEqual(await listPasskeys(f.ctx, userId), []);
  });
});
