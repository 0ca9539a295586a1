import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { keyCompromiseKind } from '../../src/approvals/kinds/key-compromise.ts';
import type { ApproverProof } from '../../src/approvals/requests.ts';
import { revokeCompromisedKey } from '../../src/keys/compromise.ts';
import { keyCompromiseWindowMs, requestKeyRevocation } from '../../src/keys/compromise-request.ts';
import { grantProblem, presentedTokenKid, signerProblem } from '../../src/keys/compromise-signer.ts';
import { mintAccessToken, newJti } from '../../src/tokens/access-token.ts';
import { breakGlassFixture, type BreakGlassFixture } from '../approvals/break-glass-fixture.ts';
import { decodeJwt } from '../endpoints/fixture.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';

// Who may speak in a compromised key's revocation (src/keys/compromise-signer.ts, docs/keys.md
// "Token-signing keys: compromise"): the key that signed an admin token, read from the presented
// token; never a compromised key, nor another key whose revocation waits; the key in question
// asks and approves but never denies; a person's token counts only under that person's grant.

const password = 'a-long-enough-password-1';

async function harness(t: TestContext, dialect: TestDialect): Promise<BreakGlassFixture & { kid: string }> {
  const f = await breakGlassFixture(t, { dialect });
  await f.apply({
    users: [
      { username: 'sec-1', password, name: 'sec-1', roles: ['admin'] },
      { username: 'sec-2', password, name: 'sec-2', roles: ['admin'] },
    ],
  });
  f.clock.advance(2000);
  const [key] = await f.ctx.keys.list();
  return Object.assign(f, { kid: key!.kid });
}

/** The id of the consent grant personToken made for `username`. */
async function grantOf(f: BreakGlassFixture, username: string): Promise<string> {
  await f.personToken(username, 'approvals:decide');
  const row = await f.ctx.storage.db.selectFrom('grants').select('id').where('user_id', '=', await f.userId(username)).executeTakeFirstOrThrow();
  return row.id;
}

/** A fresh token proof as the admin approvals API builds it, naming the key that signed the token and its grant. */
const tokenProof = (f: BreakGlassFixture, kid: string | null | undefined, grantId: string | undefined): ApproverProof => {
  const proof = f.proof();
  return { ...proof, ...(kid !== undefined ? { kid } : {}), ...(grantId !== undefined ? { grantId } : {}) } as ApproverProof;
};

describe('the key of a presented admin token', () => {
  test('is the kid of a JWT (Bearer or DPoP), null for a reference token, and undefined when it cannot be read', async (t) => {
    const f = await breakGlassFixture(t);
    const token = await f.accessToken('admin-viewer', { resource: `${f.issuer}/admin` });
    const kid = decodeJwt(token).header.kid;
    assert.equal(typeof kid, 'string');
    assert.equal(presentedTokenKid(`Bearer ${token}`), kid);
    assert.equal(presentedTokenKid(`DPoP ${token}`), kid);
    assert.equal(presentedTokenKid(`bearer ${token}`), kid, 'the scheme is case-insensitive');
    assert.equal(presentedTokenKid('Bearer clr_at_0123456789abcdef'), null);
    assert.equal(presentedTokenKid(undefined), undefined);
    assert.equal(presentedTokenKid(`Basic ${Buffer.from('a:b').toString('base64')}`), undefined);
    assert.equal(presentedTokenKid('Bearer not-a-jwt'), undefined);
    // A JWS without a kid in its header: which key signed it cannot be said.
    const header = Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'at+jwt' })).toString('base64url');
    assert.equal(presentedTokenKid(`Bearer ${header}.${token.split('.')[1]}.${token.split('.')[2]}`), undefined);
  });
});

for (const dialect of testDialects()) {
  describe(`who may speak in a key's revocation on ${dialect.name}`, () => {
    test('a reference token passes; a token whose key cannot be read, or that no key of ours signed, does not', async (t) => {
      const f = await harness(t, dialect);
      assert.equal(await signerProblem(f.ctx, null, f.kid), undefined);
      assert.equal(await signerProblem(f.ctx, undefined, f.kid), 'which key signed the token could not be read');
      const staged = await f.ctx.keys.rotate('ES256', 600);
      assert.equal(await signerProblem(f.ctx, 'no-such-kid', staged.kid), 'the token was signed by no key of ours');
    });

    test('the key being revoked may ask for and approve its own revocation, never deny it', async (t) => {
      const f = await harness(t, dialect);
      assert.equal(await signerProblem(f.ctx, f.kid, f.kid, { sameKeyAllowed: true }), undefined);
      assert.equal(await signerProblem(f.ctx, f.kid, f.kid), 'the token was signed by the key being revoked: whoever holds that key could have made it');
      assert.equal(await signerProblem(f.ctx, f.kid, f.kid, { sameKeyAllowed: false }), 'the token was signed by the key being revoked: whoever holds that key could have made it');
    });

    test('a key revoked as compromised vouches for nobody, read from the database even when the cache has not heard', async (t) => {
      const f = await harness(t, dialect);
      const staged = await f.ctx.keys.rotate('ES256', 600);
      assert.equal(await signerProblem(f.ctx, f.kid, staged.kid), undefined, 'the signing key vouches while nobody doubts it');
      await f.ctx.storage.db.updateTable('signing_keys').set({ retired_at: f.clock.now(), compromised_at: f.clock.now() }).where('kid', '=', staged.kid).execute();
      // This process's key cache still has the key as staged: the signer check does not ask it.
      assert.equal((await f.ctx.keys.list()).find((k) => k.kid === staged.kid)!.state, 'next');
      assert.equal(await signerProblem(f.ctx, staged.kid, f.kid), 'the token was signed by a key revoked as compromised');
      assert.equal(await signerProblem(f.ctx, staged.kid, f.kid, { sameKeyAllowed: true }), 'the token was signed by a key revoked as compromised');
    });

    test('another key whose revocation waits for approval vouches for nobody until the request ends', async (t) => {
      const f = await harness(t, dialect);
      const staged = await f.ctx.keys.rotate('ES256', 600);
      const opened = await requestKeyRevocation(f.ctx, { kid: f.kid, reason: 'seen in a crash dump', requester: await f.userId('sec-1'), requesterType: 'user' });
      const waits = `the token was signed by a key whose revocation as compromised waits for approval (request ${opened.id})`;
      assert.equal(await signerProblem(f.ctx, f.kid, staged.kid), waits);
      assert.equal(await signerProblem(f.ctx, f.kid, staged.kid, { sameKeyAllowed: true }), waits, 'the allowance is for the key in question only');
      assert.equal(await signerProblem(f.ctx, f.kid, f.kid, { sameKeyAllowed: true }), undefined, 'it may still approve its own revocation');
      // A request that expired unapproved no longer casts doubt.
      f.clock.advance(keyCompromiseWindowMs + 1000);
      assert.equal(await signerProblem(f.ctx, f.kid, staged.kid), undefined);
    });

    test("a person's token counts only under a live grant of that person", async (t) => {
      const f = await harness(t, dialect);
      const sec1 = await f.userId('sec-1');
      const grant1 = await grantOf(f, 'sec-1');
      const grant2 = await grantOf(f, 'sec-2');
      assert.equal(await grantProblem(f.ctx, grant1, sec1), undefined);
      assert.equal(await grantProblem(f.ctx, grant2, sec1), "the token's consent grant is not its person's");
      assert.equal(await grantProblem(f.ctx, undefined, sec1), "the token names no person's consent grant");
      assert.equal(await grantProblem(f.ctx, 'x'.repeat(65), sec1), "the token names no person's consent grant");
      assert.equal(await grantProblem(f.ctx, '00000000-0000-4000-8000-000000000000', sec1), "the token's consent grant is not in force");
      await f.ctx.storage.db.updateTable('grants').set({ revoked_at: f.clock.now(), revoked_by: 'test', revoke_reason: 'test' }).where('id', '=', grant1).execute();
      assert.equal(await grantProblem(f.ctx, grant1, sec1), "the token's consent grant is not in force");
    });

    test('the approval kind: a token the key in question signed approves but does not deny; a doubtful key, or a grant not theirs, neither', async (t) => {
      const f = await harness(t, dialect);
      const staged = await f.ctx.keys.rotate('ES256', 600);
      const request = await requestKeyRevocation(f.ctx, { kid: staged.kid, reason: 'the HSM partition was exposed', requester: await f.userId('sec-1'), requesterType: 'user' });
      const approver = await f.approver('sec-2');
      const own = await grantOf(f, 'sec-2');
      const others = await grantOf(f, 'sec-1');
      const eligible = (proof: ApproverProof, decision?: 'approve' | 'deny') => keyCompromiseKind.eligible(f.ctx, request, approver, proof, decision ? { decision } : {});

      // The signing key, in doubt of nobody: approves and denies the staged key's revocation.
      assert.equal(await eligible(tokenProof(f, f.kid, own), 'approve'), undefined);
      assert.equal(await eligible(tokenProof(f, f.kid, own), 'deny'), undefined);
      // The staged key itself (a token it could have made): approves, never denies; listing shows the request.
      assert.equal(await eligible(tokenProof(f, staged.kid, own), 'approve'), undefined);
      assert.equal(await eligible(tokenProof(f, staged.kid, own)), undefined);
      assert.equal(await eligible(tokenProof(f, staged.kid, own), 'deny'), 'the token was signed by the key being revoked: whoever holds that key could have made it');
      // A reference token: no key vouches, none is in doubt.
      assert.equal(await eligible(tokenProof(f, null, own), 'deny'), undefined);
      // A token whose key was not read is refused (fail closed).
      assert.equal(await eligible(tokenProof(f, undefined, own), 'approve'), 'which key signed the token could not be read');
      // Someone else's grant, or none.
      assert.equal(await eligible(tokenProof(f, f.kid, others), 'approve'), "the token's consent grant is not its person's");
      assert.equal(await eligible(tokenProof(f, f.kid, undefined), 'approve'), "the token names no person's consent grant");
      // A passkey needs no signing key and names no grant.
      assert.equal(await eligible({ method: 'passkey', acr: 'urn:clearance:acr:phr', amr: ['hwk'], evidence: {} }, 'deny'), undefined);

      // Once the signing key's own revocation waits, its tokens decide nothing about another key.
      const doubt = await requestKeyRevocation(f.ctx, { kid: f.kid, reason: 'the signing host was breached', requester: await f.userId('sec-1'), requesterType: 'user' });
      const waits = `the token was signed by a key whose revocation as compromised waits for approval (request ${doubt.id})`;
      assert.equal(await eligible(tokenProof(f, f.kid, own), 'approve'), waits);
      assert.equal(await eligible(tokenProof(f, f.kid, own), 'deny'), waits);
      // Once revoked as compromised, its tokens (had the cache not heard) decide nothing either.
      await revokeCompromisedKey(f.ctx, { kid: f.kid, reason: 'the signing host was breached', authority: { via: 'cli', operator: 'cli:oncall' } });
      assert.equal(await eligible(tokenProof(f, f.kid, own), 'approve'), 'the token was signed by a key revoked as compromised');
    });

    test('a token minted with our own key for one admin under another admin’s grant is refused at the grant check', async (t) => {
      const f = await harness(t, dialect);
      const sec1 = await f.userId('sec-1');
      const others = await grantOf(f, 'sec-2');
      const iat = Math.floor(f.clock.now() / 1000);
      const forged = await mintAccessToken(f.ctx.keys, {
        iss: f.issuer,
        aud: `${f.issuer}/admin`,
        iat,
        exp: iat + 300,
        jti: newJti(),
        client_id: 'trading-ui',
        scope: 'admin:write',
        sub: sec1,
        grant_id: others,
        acr: 'urn:clearance:acr:phr',
        auth_time: iat,
        amr: ['hwk', 'user'],
      });
      const claims = decodeJwt(forged).payload;
      assert.equal(await signerProblem(f.ctx, presentedTokenKid(`Bearer ${forged}`), f.kid, { sameKeyAllowed: true }), undefined, 'the signer alone cannot tell');
      assert.equal(await grantProblem(f.ctx, claims.grant_id as string, claims.sub as string), "the token's consent grant is not its person's");
    });
  });
}
