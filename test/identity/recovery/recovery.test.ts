import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { recoveryKind } from '../../../src/approvals/kinds/recovery.ts';
import { approvalKindOf } from '../../../src/approvals/kinds/index.ts';
import { decideApprovalRequest, findApprovalRequest } from '../../../src/approvals/requests.ts';
import { acr } from '../../../src/identity/acr.ts';
import { totpFactorOf } from '../../../src/identity/factors/totp.ts';
import { isPersonTokenLive } from '../../../src/identity/lifecycle.ts';
import { listPasskeys } from '../../../src/identity/passkeys/store.ts';
import { enrolThroughLink, enrolmentBinding, enrolmentOptions, maxLinkFailures, maxLiveChallengesPerLink, readEnrolmentLink } from '../../../src/identity/recovery/enrolment.ts';
import { handleDigest } from '../../../src/authorization/digest.ts';
import { openOwnRecovery, openRecoveryByHelpDesk, type OpenOutcome } from '../../../src/identity/recovery/requests.ts';
import { readSession, startSession } from '../../../src/identity/sessions.ts';
import { SoftwareAuthenticator } from '../../helpers/authenticator.ts';
import { testDialects, type TestDialect } from '../../helpers/storage.ts';
import { enrolTotp } from '../factors/fixture.ts';
import { alicePassword, peopleFixture, type PeopleFixture } from '../fixture.ts';
import { approverOf, holdBothRoles, person, recoveryPeople, storedPasskey, strongProof, weakProof } from './fixture.ts';

async function fixture(t: Parameters<typeof peopleFixture>[0], dialect: TestDialect): Promise<PeopleFixture> {
  const f = await peopleFixture(t, { dialect });
  await f.apply({ users: recoveryPeople });
  return f;
}

/** Helen opens a recovery of alice: identity checked in person, ticket HD-1234. */
async function helpDeskOpens(f: PeopleFixture, extra: { lost?: string[]; evidenceRef?: string; method?: string } = {}): Promise<OpenOutcome> {
  return openRecoveryByHelpDesk(f.ctx, {
    helpDesk: await person(f.ctx, 'helen'),
    subject: await person(f.ctx, 'alice'),
    verificationMethod: extra.method ?? 'in_person_id_check',
    evidenceRef: extra.evidenceRef ?? 'HD-1234',
    ...(extra.lost ? { lost: extra.lost } : {}),
  });
}

async function decide(f: PeopleFixture, requestId: string, username: string, proof = strongProof) {
  return decideApprovalRequest(f.ctx, recoveryKind, { requestId, approver: await approverOf(f.ctx, username), proof, decision: 'approve' });
}

async function alerts(f: PeopleFixture, type: string) {
  return f.ctx.storage.db.selectFrom('alerts').selectAll().where('type', '=', type).execute();
}

for (const dialect of testDialects()) {
  describe(`recovery of a lost authenticator on ${dialect.name}`, () => {
    test('the help desk opens a request that names the identity check, changes nothing, keeps only the link’s digest, and alerts', async (t) => {
      const f = await fixture(t, dialect);
      const alice = await person(f.ctx, 'alice');
      await storedPasskey(f.ctx, alice.id, 'cred-lost');
      const session = await startSession(f.ctx, { userId: alice.id, acr: acr.password, amr: ['pwd'], cookieHeader: undefined });
      const opened = await helpDeskOpens(f);
      assert.ok(opened.ok, JSON.stringify(opened));
      assert.equal(approvalKindOf('recovery'), recoveryKind);
      assert.equal(opened.request.status, 'pending');
      assert.equal(opened.request.kind, 'recovery');
      assert.deepEqual(opened.request.content, {
        type: 'recovery',
        person: { id: alice.id, username: 'alice' },
        opened_by: 'help_desk',
        requester: { id: (await person(f.ctx, 'helen')).id, username: 'helen' },
        verification_method: 'in_person_id_check',
        evidence_ref: 'HD-1234',
        lost: ['passkeys', 'authenticator'],
        request_id: opened.request.id,
      });
      assert.match(opened.token, /^[A-Za-z0-9_-]{43}$/);
      const link = await f.ctx.storage.db.selectFrom('recovery_links').selectAll().executeTakeFirstOrThrow();
      assert.equal(link.link_digest, handleDigest(opened.token));
      assert.equal(link.expires_at, null, 'inert until approved');
      assert.deepEqual(await readEnrolmentLink(f.ctx, opened.token), { ok: false, reason: 'not_approved', requestId: opened.request.id, userId: alice.id });
      // Nothing changed for alice.
      assert.equal((await listPasskeys(f.ctx, alice.id)).length, 1);
      assert.equal((await readSession(f.ctx, session.setCookie.split(';')[0]))?.userId, alice.id);
      const [requested] = await f.events('approval.requested');
      assert.equal(requested!.txn, opened.request.id);
      assert.equal((requested!.details!.content as { verification_method: string }).verification_method, 'in_person_id_check');
      const [alert] = await alerts(f, 'recovery.requested');
      assert.equal(alert!.subject, alice.id);
      assert.equal(JSON.parse(alert!.data).opened_by, 'help_desk');
      assert.doesNotMatch(await f.auditText(), new RegExp(opened.token));
      assert.doesNotMatch(alert!.data, new RegExp(opened.token));
    });

    test('refuses openings without a help-desk requester, an identity check, a password, or while another waits — each on the record', async (t) => {
      const f = await fixture(t, dialect);
      const alice = await person(f.ctx, 'alice');
      const bob = await person(f.ctx, 'bob');
      const helen = await person(f.ctx, 'helen');
      const base = { subject: alice, verificationMethod: 'video_id_check', evidenceRef: 'HD-9' };
      assert.deepEqual(await openRecoveryByHelpDesk(f.ctx, { ...base, helpDesk: bob }), { ok: false, reason: 'not_help_desk' });
      assert.deepEqual(await openRecoveryByHelpDesk(f.ctx, { ...base, helpDesk: helen, subject: helen }), { ok: false, reason: 'own_account' });
      assert.equal((await openRecoveryByHelpDesk(f.ctx, { ...base, helpDesk: helen, verificationMethod: 'trust_me' })).ok, false);
      assert.equal((await openRecoveryByHelpDesk(f.ctx, { ...base, helpDesk: helen, evidenceRef: '  ' })).ok, false);
      const jwtLike = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';
      assert.equal((await openRecoveryByHelpDesk(f.ctx, { ...base, helpDesk: helen, evidenceRef: jwtLike })).ok, false);
      assert.equal((await openRecoveryByHelpDesk(f.ctx, { ...base, helpDesk: helen, lost: ['password'] })).ok, false);
      assert.equal((await openRecoveryByHelpDesk(f.ctx, { ...base, helpDesk: helen, lost: [] })).ok, false);
      await f.apply({ users: [{ username: 'nopass', name: 'No Password' }] });
      assert.deepEqual(await openRecoveryByHelpDesk(f.ctx, { ...base, helpDesk: helen, subject: await person(f.ctx, 'nopass') }), { ok: false, reason: 'no_password' });
      assert.ok((await openRecoveryByHelpDesk(f.ctx, { ...base, helpDesk: helen })).ok);
      assert.deepEqual(await openRecoveryByHelpDesk(f.ctx, { ...base, helpDesk: helen }), { ok: false, reason: 'already_pending' });
      const refused = await f.events('recovery.refused');
      assert.deepEqual(refused.map((e) => e.decision!.reasons[0]), ['not_help_desk', 'own_account', 'invalid_request', 'invalid_request', 'invalid_request', 'invalid_request', 'invalid_request', 'no_password', 'already_pending']);
      assert.doesNotMatch(await f.auditText(), /eyJhbGciOiJFUzI1NiJ9/);
      assert.equal((await f.ctx.storage.db.selectFrom('recovery_links').select('request_id').execute()).length, 1);
    });

    test('the person opens their own only from a session that proved two factors', async (t) => {
      const f = await fixture(t, dialect);
      const alice = await person(f.ctx, 'alice');
      const weak = await openOwnRecovery(f.ctx, { user: alice, session: { userId: alice.id, acr: acr.password, amr: ['pwd'], authTime: 1_700_000_000 } });
      assert.deepEqual(weak, { ok: false, reason: 'session_too_weak' });
      const own = await openOwnRecovery(f.ctx, { user: alice, session: { userId: alice.id, acr: acr.multiFactor, amr: ['pwd', 'mfa', 'urn:clearance:amr:recovery-code'], authTime: 1_700_000_000 }, lost: ['authenticator'] });
      assert.ok(own.ok);
      const content = own.request.content as Record<string, unknown>;
      assert.equal(content.opened_by, 'self');
      assert.equal(content.verification_method, 'remaining_factors');
      assert.equal(content.evidence_ref, 'sign-in at 2023-11-14T22:13:20.000Z with pwd+mfa+urn:clearance:amr:recovery-code');
      assert.deepEqual(content.lost, ['authenticator']);
    });

    test('the approver must hold recovery-approver, be independent, never of the help desk, and prove it phishing-resistantly', async (t) => {
      const f = await fixture(t, dialect);
      const opened = await helpDeskOpens(f);
      assert.ok(opened.ok);
      const id = opened.request.id;
      assert.deepEqual(await decide(f, id, 'helen'), { ok: false, refusal: 'approver_is_requester' });
      assert.deepEqual(await decide(f, id, 'alice'), { ok: false, refusal: 'approver_is_subject' });
      // Hank holds recovery-approver too (from before apply kept the two apart): still of the help desk.
      await holdBothRoles(f.ctx, 'hank');
      assert.deepEqual(await decide(f, id, 'hank'), { ok: false, refusal: 'not_eligible: the help desk never approves a recovery' });
      assert.deepEqual(await decide(f, id, 'bob'), { ok: false, refusal: 'not_eligible: the approver does not hold recovery-approver' });
      // Sam shares the help desk's desk: a request the help desk opened needs someone outside it.
      assert.deepEqual(await decide(f, id, 'sam'), { ok: false, refusal: 'approver_on_requesters_desk' });
      assert.deepEqual(await decide(f, id, 'rita', weakProof), { ok: false, refusal: 'insufficient_authentication' });
      assert.equal((await findApprovalRequest(f.ctx.storage.db, id))!.status, 'pending');
      assert.equal((await f.events('approval.refused')).length, 6);
      // Fiona is on alice's desk: fine by default, refused when apply asks for distinct desks.
      await f.apply({ recovery: { distinct_desks: true } });
      assert.deepEqual(await decide(f, id, 'fiona'), { ok: false, refusal: 'approver_on_requesters_desk' });
      // The eligibility reads stored desks too: an approver described without them is still refused.
      const fiona = { ...(await approverOf(f.ctx, 'fiona')), desks: [] };
      assert.deepEqual(await decideApprovalRequest(f.ctx, recoveryKind, { requestId: id, approver: fiona, proof: strongProof, decision: 'approve' }), {
        ok: false,
        refusal: 'not_eligible: the approver shares a desk with the person or the help desk that asked',
      });
      const approved = await decide(f, id, 'rita');
      assert.ok(approved.ok);
      assert.equal(approved.settled, 'approved');
    });

    test('approval ends all the person’s access, removes what was lost, wakes the link for the configured time, and alerts', async (t) => {
      const f = await fixture(t, dialect);
      await f.apply({ recovery: { enrolment_ttl: 600 } });
      const alice = await person(f.ctx, 'alice');
      const { factorId } = await enrolTotp(f, 'alice');
      await storedPasskey(f.ctx, alice.id, 'cred-lost-1');
      await storedPasskey(f.ctx, alice.id, 'cred-lost-2');
      const session = await startSession(f.ctx, { userId: alice.id, acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'], cookieHeader: undefined });
      const issuedBefore = f.clock.now();
      f.clock.advance(2000);
      const opened = await helpDeskOpens(f);
      assert.ok(opened.ok);
      const approved = await decide(f, opened.request.id, 'rita');
      assert.ok(approved.ok && approved.settled === 'approved');
      assert.equal(await readSession(f.ctx, session.setCookie.split(';')[0]), undefined, 'signed out everywhere');
      assert.equal(await isPersonTokenLive(f.ctx.storage.db, alice.id, issuedBefore), false, 'access tokens issued before are dead');
      assert.deepEqual(await listPasskeys(f.ctx, alice.id), []);
      assert.equal(await totpFactorOf(f.ctx, alice.id), undefined);
      assert.equal((await f.ctx.storage.db.selectFrom('recovery_codes').select('digest').where('user_id', '=', alice.id).execute()).length, 0);
      const state = await readEnrolmentLink(f.ctx, opened.token);
      assert.ok(state.ok);
      assert.equal(state.link.expiresAt, f.clock.now() + 600_000);
      const [ended] = await f.events('recovery.access_ended');
      assert.equal(ended!.txn, opened.request.id);
      assert.equal(ended!.details!.sessions_ended, 1);
      const [disabled] = await f.events('recovery.factors_disabled');
      assert.deepEqual((disabled!.details!.passkeys as { credential: string }[]).map((p) => p.credential).sort(), ['cred-lost-1', 'cred-lost-2']);
      assert.deepEqual(disabled!.details!.authenticator, [factorId]);
      assert.equal(disabled!.actor, (await person(f.ctx, 'rita')).id);
      const [alert] = await alerts(f, 'recovery.approved');
      assert.equal(JSON.parse(alert!.data).passkeys_removed, 2);
      assert.doesNotMatch(await f.auditText(), new RegExp(opened.token));
    });

    test('only the lost credentials go: a recovery of the authenticator keeps the passkeys', async (t) => {
      const f = await fixture(t, dialect);
      const alice = await person(f.ctx, 'alice');
      await enrolTotp(f, 'alice');
      await storedPasskey(f.ctx, alice.id, 'cred-kept');
      const opened = await helpDeskOpens(f, { lost: ['authenticator'] });
      assert.ok(opened.ok);
      assert.ok((await decide(f, opened.request.id, 'rita')).ok);
      assert.equal((await listPasskeys(f.ctx, alice.id)).length, 1);
      assert.equal(await totpFactorOf(f.ctx, alice.id), undefined);
    });

    test('approval ends every upstream link of the person, however it was made, and no one else’s, on the record', async (t) => {
      const f = await fixture(t, dialect);
      const alice = await person(f.ctx, 'alice');
      const bob = await person(f.ctx, 'bob');
      const link = (userId: string, subject: string, linkedBy: string) => ({ issuer: 'https://idp.fund-a.example', subject, user_id: userId, provider_id: 'fund-a', linked_by: linkedBy, created_at: 1_700_000_000_000, last_login_at: null });
      await f.ctx.storage.db.insertInto('user_links').values([link(alice.id, 'by-admin', 'admin'), link(alice.id, 'by-sign-in', 'local_sign_in'), link(alice.id, 'first', 'provisioned'), link(bob.id, 'bobs', 'local_sign_in')]).execute();
      const opened = await helpDeskOpens(f);
      assert.ok(opened.ok);
      const denied = await decideApprovalRequest(f.ctx, recoveryKind, { requestId: opened.request.id, approver: await approverOf(f.ctx, 'fiona'), proof: weakProof, decision: 'approve' });
      assert.equal(denied.ok, false);
      assert.equal((await f.ctx.storage.db.selectFrom('user_links').select('subject').where('user_id', '=', alice.id).execute()).length, 3, 'a refused decision ends nothing');
      assert.ok((await decide(f, opened.request.id, 'rita')).ok);
      assert.deepEqual((await f.ctx.storage.db.selectFrom('user_links').select(['user_id', 'subject']).execute()).map((l) => [l.user_id, l.subject]), [[bob.id, 'bobs']]);
      const [disabled] = await f.events('recovery.factors_disabled');
      const ended = disabled!.details!.upstream_links_ended as { upstream_subject: string; linked_by: string; linked_at: number; provider: string }[];
      assert.deepEqual(ended.map((l) => [l.upstream_subject, l.linked_by, l.provider, l.linked_at]).sort(), [
        ['by-admin', 'admin', 'fund-a', 1_700_000_000_000],
        ['by-sign-in', 'local_sign_in', 'fund-a', 1_700_000_000_000],
        ['first', 'provisioned', 'fund-a', 1_700_000_000_000],
      ]);
      const [alert] = await alerts(f, 'recovery.approved');
      assert.equal(JSON.parse(alert!.data).upstream_links_ended, 3);
      // The person is told on /account: the opening, then the approval with the links it ended.
      const notices = await f.ctx.storage.db.selectFrom('account_notices').select(['kind', 'details']).where('user_id', '=', alice.id).orderBy('created_at').orderBy('kind', 'desc').execute();
      assert.deepEqual(notices.map((n) => [n.kind, JSON.parse(n.details)]), [
        ['recovery_opened', { opened_by: 'help_desk', lost: ['passkeys', 'authenticator'] }],
        ['recovery_approved', { lost: ['passkeys', 'authenticator'], upstream_links_ended: 3 }],
      ]);
    });

    test('a link keeps at most a few live passkey challenges, the newest, asked one after another or all at once', async (t) => {
      const f = await fixture(t, dialect);
      const opened = await helpDeskOpens(f);
      assert.ok(opened.ok);
      assert.ok((await decide(f, opened.request.id, 'rita')).ok);
      const state = await readEnrolmentLink(f.ctx, opened.token);
      assert.ok(state.ok);
      const live = async () => (await f.ctx.storage.db.selectFrom('passkey_challenges').select('id').where('binding', '=', enrolmentBinding(opened.request.id)).execute()).map((r) => r.id);
      const digest = (challenge: string) => createHash('sha256').update(challenge, 'utf8').digest('base64url');
      const asked: string[] = [];
      for (let i = 0; i < 6; i++) {
        asked.push((await enrolmentOptions(f.ctx, state.link)).challenge);
        f.clock.advance(1);
      }
      assert.deepEqual((await live()).sort(), asked.slice(-maxLiveChallengesPerLink).map(digest).sort(), 'the newest are kept');
      const atOnce = await Promise.all(Array.from({ length: 8 }, () => enrolmentOptions(f.ctx, state.link)));
      const left = await live();
      assert.ok(left.length <= maxLiveChallengesPerLink, `${left.length} live challenges for one link`);
      assert.ok(left.every((id) => atOnce.some((o) => digest(o.challenge) === id)), 'those asked at once replaced the older ones');
    });

    test('a denied request leaves everything and its link never works', async (t) => {
      const f = await fixture(t, dialect);
      const alice = await person(f.ctx, 'alice');
      await storedPasskey(f.ctx, alice.id, 'cred-kept');
      const opened = await helpDeskOpens(f);
      assert.ok(opened.ok);
      const denied = await decideApprovalRequest(f.ctx, recoveryKind, { requestId: opened.request.id, approver: await approverOf(f.ctx, 'rita'), proof: strongProof, decision: 'deny', reason: 'the caller could not answer the callback' });
      assert.ok(denied.ok && denied.settled === 'denied');
      assert.equal((await listPasskeys(f.ctx, alice.id)).length, 1);
      assert.equal((await readEnrolmentLink(f.ctx, opened.token)).ok, false);
      assert.equal((await alerts(f, 'recovery.approved')).length, 0);
    });

    test('the link enrols one passkey, with the person’s password, once, before it expires', async (t) => {
      const f = await fixture(t, dialect);
      const opened = await helpDeskOpens(f);
      assert.ok(opened.ok);
      assert.ok((await decide(f, opened.request.id, 'rita')).ok);
      const state = await readEnrolmentLink(f.ctx, opened.token);
      assert.ok(state.ok);
      const authenticator = new SoftwareAuthenticator({ origin: f.ctx.config.issuer });
      const credential = async () => JSON.stringify(authenticator.register((await enrolmentOptions(f.ctx, state.link)) as never));
      const enrol = async (password: string) => enrolThroughLink(f.ctx, { token: opened.token, password, name: 'New key', credential: await credential(), sourceAddress: '198.51.100.9' });
      // The help desk holds the link, not the password: alone, it gets nothing.
      assert.deepEqual(await enrol('helen-guesses-this'), { ok: false, reason: 'wrong_password', killed: false });
      const done = await enrol(alicePassword);
      assert.ok(done.ok, JSON.stringify(done));
      const alice = await person(f.ctx, 'alice');
      assert.deepEqual((await listPasskeys(f.ctx, alice.id)).map((p) => p.name), ['New key']);
      assert.equal((await findApprovalRequest(f.ctx.storage.db, opened.request.id))!.status, 'consumed');
      assert.deepEqual(await enrol(alicePassword), { ok: false, reason: 'used' });
      const [enrolled] = await f.events('recovery.enrolled');
      assert.equal(enrolled!.txn, opened.request.id);
      assert.deepEqual((await f.events('recovery.link_refused')).map((e) => e.decision!.reasons[0]), ['wrong_password', 'used']);
      // The recovery's evidence names the passkey it enrolled: both events carry its txn.
      const registered = await f.events('passkey.registered');
      assert.equal(registered.length, 1);
      assert.equal(registered[0]!.txn, opened.request.id);
      assert.equal(registered[0]!.details!.passkey, (await listPasskeys(f.ctx, alice.id))[0]!.id);
      assert.doesNotMatch(await f.auditText(), new RegExp(opened.token));
    });

    test('the link expires, dies after too many wrong passwords, and dies when the password changes after approval', async (t) => {
      const f = await fixture(t, dialect);
      // She keeps a passkey and recovers her authenticator, so no approval holds her credentials (one
      // left with no factor above the password is held until the link's enrolment, and no password
      // is set for her meanwhile: test/endpoints/recovery.test.ts).
      await storedPasskey(f.ctx, (await person(f.ctx, 'alice')).id, 'cred-kept');
      const first = await helpDeskOpens(f, { lost: ['authenticator'] });
      assert.ok(first.ok);
      assert.ok((await decide(f, first.request.id, 'rita')).ok);
      f.clock.advance(15 * 60_000);
      assert.deepEqual(await readEnrolmentLink(f.ctx, first.token), { ok: false, reason: 'expired', requestId: first.request.id, userId: (await person(f.ctx, 'alice')).id });
      assert.deepEqual(await enrolThroughLink(f.ctx, { token: first.token, password: alicePassword, name: 'x', credential: '{}', sourceAddress: '198.51.100.9' }), { ok: false, reason: 'expired' });

      const second = await helpDeskOpens(f, { evidenceRef: 'HD-2', lost: ['authenticator'] });
      assert.ok(second.ok);
      assert.ok((await decide(f, second.request.id, 'rita')).ok);
      for (let i = 1; i <= maxLinkFailures; i++) {
        const outcome = await enrolThroughLink(f.ctx, { token: second.token, password: `guess-number-${i}`, name: 'x', credential: '{}', sourceAddress: '198.51.100.9' });
        assert.deepEqual(outcome, { ok: false, reason: 'wrong_password', killed: i === maxLinkFailures });
      }
      assert.equal((await readEnrolmentLink(f.ctx, second.token)).ok, false);
      assert.deepEqual(await enrolThroughLink(f.ctx, { token: second.token, password: alicePassword, name: 'x', credential: '{}', sourceAddress: '198.51.100.9' }), { ok: false, reason: 'unknown' });

      const third = await helpDeskOpens(f, { evidenceRef: 'HD-3', lost: ['authenticator'] });
      assert.ok(third.ok);
      assert.ok((await decide(f, third.request.id, 'rita')).ok);
      // An administrator sets a password they know after the approval: the link no longer opens with it, nor with the old one.
      const adminsChoice = 'administrator-chosen-1';
      await f.apply({ users: [{ username: 'alice', password: adminsChoice, name: 'Alice Trader', email: 'alice@broker.example', desks: ['fx-spot', 'rates'], attributes: { kyc_status: 'verified', suitability: ['fx', 'rates'] } }] });
      for (const password of [adminsChoice, alicePassword]) {
        assert.deepEqual(await enrolThroughLink(f.ctx, { token: third.token, password, name: 'x', credential: '{}', sourceAddress: '198.51.100.9' }), { ok: false, reason: 'password_changed' });
      }
      assert.deepEqual(await readEnrolmentLink(f.ctx, 'A'.repeat(43)), { ok: false, reason: 'unknown' });
      assert.deepEqual(await readEnrolmentLink(f.ctx, 'not a token'), { ok: false, reason: 'unknown' });
    });
    test('checks at most five passwords against a link when the guesses come all at once', async (t) => {
      const f = await fixture(t, dialect);
      const opened = await helpDeskOpens(f);
      assert.ok(opened.ok);
      assert.ok((await decide(f, opened.request.id, 'rita')).ok);
      const guesses = await Promise.all(
        Array.from({ length: 12 }, (_, i) => enrolThroughLink(f.ctx, { token: opened.token, password: `parallel-guess-${i}`, name: 'x', credential: '{}', sourceAddress: '198.51.100.9' })),
      );
      const checked = guesses.filter((g) => !g.ok && g.reason === 'wrong_password');
      assert.equal(checked.length, maxLinkFailures, 'five checked, the rest refused unchecked');
      assert.ok(guesses.every((g) => !g.ok && (g.reason === 'wrong_password' || g.reason === 'unknown')));
      const row = await f.ctx.storage.db.selectFrom('recovery_links').select('failures').where('request_id', '=', opened.request.id).executeTakeFirstOrThrow();
      assert.equal(Number(row.failures), maxLinkFailures);
      assert.deepEqual(await enrolThroughLink(f.ctx, { token: opened.token, password: alicePassword, name: 'x', credential: '{}', sourceAddress: '198.51.100.9' }), { ok: false, reason: 'unknown' });
    });

    test('a password set while the request waits voids the link: the approval does not bind it to the new password', async (t) => {
      const f = await fixture(t, dialect);
      const alice = await person(f.ctx, 'alice');
      const opened = await helpDeskOpens(f);
      assert.ok(opened.ok);
      // Someone who can set passwords sets one they know while the request waits for its approver.
      const adminsChoice = 'administrator-knows-it-1';
      await f.apply({ users: [{ username: 'alice', password: adminsChoice, name: 'Alice Trader', email: 'alice@broker.example', desks: ['fx-spot', 'rates'], attributes: { kyc_status: 'verified', suitability: ['fx', 'rates'] } }] });
      assert.ok((await decide(f, opened.request.id, 'rita')).ok);
      assert.deepEqual(await readEnrolmentLink(f.ctx, opened.token), { ok: false, reason: 'password_changed', requestId: opened.request.id, userId: alice.id });
      for (const password of [adminsChoice, alicePassword]) {
        assert.deepEqual(await enrolThroughLink(f.ctx, { token: opened.token, password, name: 'Attacker key', credential: '{}', sourceAddress: '203.0.113.5' }), { ok: false, reason: 'password_changed' });
      }
      assert.deepEqual(await listPasskeys(f.ctx, alice.id), []);
      const refused = await f.events('recovery.link_refused');
      assert.deepEqual(refused.map((e) => [e.decision!.reasons[0], e.txn]), [['password_changed', opened.request.id], ['password_changed', opened.request.id]]);
    });
  });
}
