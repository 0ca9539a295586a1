import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { dpopIatWindowSeconds, maxDpopJtiLength, maxDpopProofBytes } from '../../src/tokens/dpop.ts';
import { dpopKey, dpopProof, type DpopKey, type ProofClaims } from '../helpers/dpop.ts';
import { assertOAuthError, decodeJwt, formBody, ordersApi, protocolFixture, type ProtocolFixture } from './fixture.ts';

// The bounds of what the server keeps and parses for a DPoP proof (RFC 9449 §11.1: a jti is
// remembered only while its iat is acceptable) and for a token exchange's subject_token: each
// oversized or out-of-window input is a 400 with a registered error, never a 5xx.

const exchange = 'urn:ietf:params:oauth:grant-type:token-exchange';
const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';

/** The caps these tests are written against (src/tokens/dpop.ts; src/grants/exchange/presented-token.ts). */
const proofCap = 8 * 1024;
const jtiCap = 256;
const subjectTokenCap = 16 * 1024;

const now = (f: ProtocolFixture) => Math.floor(f.clock.now() / 1000);

/** A proof for POST /token at the fixture's issuer, at the fixture clock's time. */
function tokenProof(f: ProtocolFixture, key: DpopKey, claims: Partial<ProofClaims> = {}): string {
  return dpopProof(key, { htm: 'POST', htu: `${f.issuer}/token`, iat: now(f), ...claims });
}

/** client_credentials for broker-1 with this DPoP header. */
function clientCredentials(f: ProtocolFixture, proof: string): Promise<LightMyRequestResponse> {
  return f.inject({
    method: 'POST',
    url: '/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: f.basic('broker-1'), dpop: proof },
    payload: formBody({ grant_type: 'client_credentials', resource: ordersApi, scope: 'order:create' }),
  });
}

/**
 * The shortest valid proof of at least `length` bytes, padded with a claim of its own (its jti,
 * a UUID, has a fixed length). base64url never makes a segment 4n + 1 characters long, so a
 * length it cannot reach gives the next one.
 */
function proofOfAtLeast(f: ProtocolFixture, key: DpopKey, length: number): string {
  const base = tokenProof(f, key, { pad: '' }).length;
  for (let pad = Math.max(0, Math.floor(((length - base) * 3) / 4) - 4); ; pad++) {
    const proof = tokenProof(f, key, { pad: 'x'.repeat(pad) });
    if (proof.length >= length) return proof;
  }
}

describe('the DPoP replay record is bounded by the iat window (RFC 9449 §11.1)', () => {
  test('a replayed proof is a replay while its iat is in the window, then is refused for its iat, and its record ends with the window', async (t) => {
    const f = await protocolFixture(t);
    assert.equal(dpopIatWindowSeconds, 60, 'the window these steps are written for');
    const key = dpopKey();
    const iat = now(f);
    const jti = 'replay-bound-1';
    const proof = tokenProof(f, key, { iat, jti });
    assert.equal((await clientCredentials(f, proof)).statusCode, 200, 'the first use is accepted');

    // §11.1: the jti is kept only as long as a proof with that iat could be accepted: the iat check
    // (|iat - now| <= 60 s, whole seconds) admits it until second iat + 61 begins, and the record
    // is held until exactly then.
    const row = await f.ctx.storage.db.selectFrom('jti_replay').selectAll().where('key', '=', `dpop:${key.jkt}:${jti}`).executeTakeFirstOrThrow();
    assert.equal(Number(row.expires_at), (iat + dpopIatWindowSeconds + 1) * 1000);

    // Within the window the replay rule answers: §11.1 a jti is used once.
    f.clock.advance(30_000);
    const replay = assertOAuthError(await clientCredentials(f, proof), 400, 'invalid_dpop_proof', 'replay at +30 s');
    assert.equal(replay.error_description, 'the DPoP proof was already used');
    // The last second of the window: still a replay, the record is still there.
    f.clock.advance(30_000);
    assert.equal(now(f), iat + dpopIatWindowSeconds);
    const last = assertOAuthError(await clientCredentials(f, proof), 400, 'invalid_dpop_proof', 'replay at +60 s');
    assert.equal(last.error_description, 'the DPoP proof was already used');

    // Past the window the iat rule answers (§4.3 (11)), before the replay record is looked at —
    // which has expired by then, so pruning it never lets the proof back in.
    f.clock.advance(1000);
    const stale = assertOAuthError(await clientCredentials(f, proof), 400, 'invalid_dpop_proof', 'replay at +61 s');
    assert.equal(stale.error_description, 'the DPoP proof is too old or too far in the future');
    assert.ok(Number(row.expires_at) <= f.clock.now(), 'the record is no longer needed once the iat rule refuses the proof');
  });
});

describe('the size caps of a DPoP proof (RFC 9449 §4.3)', () => {
  test('a proof of 8 KiB is accepted and the next longer one is invalid_dpop_proof, never a 5xx', async (t) => {
    const f = await protocolFixture(t);
    assert.equal(maxDpopProofBytes, proofCap);
    const key = dpopKey();
    const atCap = proofOfAtLeast(f, key, proofCap);
    assert.equal(atCap.length, proofCap);
    const accepted = await clientCredentials(f, atCap);
    assert.equal(accepted.statusCode, 200, accepted.body);
    assert.deepEqual(decodeJwt((accepted.json() as { access_token: string }).access_token).payload.cnf, { jkt: key.jkt });

    // Refused before it is parsed: the size is the first thing known of an untrusted proof.
    const justOver = proofOfAtLeast(f, key, proofCap + 1);
    assert.ok(justOver.length <= proofCap + 2, 'one or two bytes over');
    for (const [what, proof] of [
      ['just over', justOver],
      ['9 KB of padding', tokenProof(f, key, { pad: 'x'.repeat(9000) })],
    ] as const) {
      const body = assertOAuthError(await clientCredentials(f, proof), 400, 'invalid_dpop_proof', what);
      assert.equal(body.error_description, 'the DPoP proof is too large', what);
    }
  });

  test('a jti of 256 characters is accepted and one of 257 is invalid_dpop_proof', async (t) => {
    const f = await protocolFixture(t);
    // The jti becomes part of the replay record's key, so its length is bounded.
    assert.equal(maxDpopJtiLength, jtiCap);
    const key = dpopKey();
    assert.equal((await clientCredentials(f, tokenProof(f, key, { jti: 'j'.repeat(jtiCap) }))).statusCode, 200);
    const body = assertOAuthError(await clientCredentials(f, tokenProof(f, key, { jti: 'k'.repeat(jtiCap + 1) })), 400, 'invalid_dpop_proof');
    assert.equal(body.error_description, 'the DPoP proof jti is malformed');
  });
});

describe('the size cap of a subject_token (RFC 8693 §2.2.2)', () => {
  test('a subject_token over 16 KiB is invalid_request, never a 5xx, whatever it looks like', async (t) => {
    const f = await protocolFixture(t);
    await f.apply({ clients: [{ client_id: 'desk-exchanger', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials', exchange], scope: 'order:create' }] });
    const exchangeOf = (subjectToken: string) =>
      f.token({ auth: f.basic('desk-exchanger'), form: { grant_type: exchange, subject_token: subjectToken, subject_token_type: accessTokenType, resource: ordersApi } });

    // The good case: the client exchanges a token of its own.
    const own = await f.accessToken('desk-exchanger', { resource: ordersApi });
    const exchanged = await exchangeOf(own);
    assert.equal(exchanged.statusCode, 200, exchanged.body);

    const segment = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const oversized = {
      // Shaped like a JWT of ours: its claimed issuer would choose our own verification.
      'a JWT naming our issuer': `${segment({ alg: 'ES256', typ: 'at+jwt' })}.${segment({ iss: f.issuer, pad: 'x'.repeat(subjectTokenCap) })}.${'s'.repeat(86)}`,
      // Shaped like a reference token's handle, past its length.
      'a reference handle': `clr_at_${'A'.repeat(subjectTokenCap)}`,
    };
    for (const [what, token] of Object.entries(oversized)) {
      assert.ok(token.length > subjectTokenCap, what);
      // RFC 8693 §2.2.2: an unacceptable subject token is invalid_request.
      const body = assertOAuthError(await exchangeOf(token), 400, 'invalid_request', what);
      assert.match(String(body.error_description), /^subject_token is not acceptable/, what);
    }
  });
});
