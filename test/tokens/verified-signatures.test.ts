import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import { epochSeconds } from '../../src/clock.ts';
import { maxTokenLifetimeSeconds } from '../../src/config.ts';
import type { Context } from '../../src/context.ts';
import { publishMarginMs } from '../../src/keys/keystore.ts';
import { verifyAccessToken } from '../../src/tokens/access-token.ts';
import { VerifiedSignatures, verifiedSignatures } from '../../src/tokens/verified-signatures.ts';
import { testContext } from '../helpers/storage.ts';

function accessToken(ctx: Context, lifetime = 300): Promise<string> {
  const now = epochSeconds(ctx.clock);
  return ctx.keys.signJwt(
    { typ: 'at+jwt' },
    { iss: ctx.config.issuer, sub: 'desk-7', aud: 'https://orders.example', client_id: 'c1', jti: `j-${now}-${lifetime}`, iat: now, exp: now + lifetime },
  );
}

describe('the verified-signature cache', () => {
  test('holds a token only for the key object that verified it', () => {
    const cache = new VerifiedSignatures(4);
    const a = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    const b = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    cache.add('t1', a);
    assert.equal(cache.has('t1', a), true);
    assert.equal(cache.has('t1', b), false, 'another key (a reloaded or different store) never matches');
    assert.equal(cache.has('t1x', a), false, 'other bytes never match');
  });

  test('makes room by dropping the oldest entry when full', () => {
    const cache = new VerifiedSignatures(2);
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    cache.add('t1', key);
    cache.add('t2', key);
    cache.add('t3', key);
    assert.equal(cache.size, 2);
    assert.equal(cache.has('t1', key), false);
    assert.equal(cache.has('t2', key), true);
    assert.equal(cache.has('t3', key), true);
  });

  test('a token verified before is still refused once expired: only the signature is remembered', async (t) => {
    const { ctx, clock } = await testContext({ t });
    const token = await accessToken(ctx, 60);
    assert.equal((await verifyAccessToken(ctx.keys, ctx.config.issuer, token, epochSeconds(clock))).ok, true);
    clock.advance(60_000);
    assert.deepEqual(await verifyAccessToken(ctx.keys, ctx.config.issuer, token, epochSeconds(clock)), { ok: false, reason: 'expired' });
  });

  test('a token with a signature that does not verify is never remembered, and a tampered copy of a remembered one is refused', async (t) => {
    const { ctx, clock } = await testContext({ t });
    const token = await accessToken(ctx);
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const forged = `${header}.${payload}.${signature.slice(0, -4)}${signature.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
    assert.deepEqual(await verifyAccessToken(ctx.keys, ctx.config.issuer, forged, epochSeconds(clock)), { ok: false, reason: 'signature verification failed' });
    assert.deepEqual(await verifyAccessToken(ctx.keys, ctx.config.issuer, forged, epochSeconds(clock)), { ok: false, reason: 'signature verification failed' });
    assert.equal((await verifyAccessToken(ctx.keys, ctx.config.issuer, token, epochSeconds(clock))).ok, true);
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const widened = Buffer.from(JSON.stringify({ ...claims, sub: 'desk-8' })).toString('base64url');
    assert.deepEqual(await verifyAccessToken(ctx.keys, ctx.config.issuer, `${header}.${widened}.${signature}`, epochSeconds(clock)), {
      ok: false,
      reason: 'signature verification failed',
    });
  });

  test('a token verified before is refused once its key is retired', async (t) => {
    const { ctx, clock } = await testContext({ t });
    const token = await accessToken(ctx);
    assert.equal((await verifyAccessToken(ctx.keys, ctx.config.issuer, token, epochSeconds(clock))).ok, true);
    const oldKid = (await ctx.keys.list())[0]!.kid;
    await ctx.keys.rotate('ES256', 0);
    clock.advance(publishMarginMs + maxTokenLifetimeSeconds * 1000 + 60_000);
    await ctx.keys.retire(oldKid);
    assert.deepEqual(await verifyAccessToken(ctx.keys, ctx.config.issuer, token, epochSeconds(clock) - maxTokenLifetimeSeconds - 70), { ok: false, reason: 'unknown kid' });
  });

  test('remembers what the process verified, for the next presentation of the same token', async (t) => {
    const { ctx, clock } = await testContext({ t });
    const token = await accessToken(ctx);
    assert.equal((await verifyAccessToken(ctx.keys, ctx.config.issuer, token, epochSeconds(clock))).ok, true);
    const kid = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid as string;
    const published = await ctx.keys.verificationKey(kid);
    assert.equal(verifiedSignatures.has(token, published!.key), true);
  });
});
