import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { calculateJwkThumbprint, createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JWK } from 'jose';
import { epochSeconds } from '../../src/clock.ts';
import { loadConfig, maxTokenLifetimeSeconds } from '../../src/config.ts';
import type { Context } from '../../src/context.ts';
import { buildApp } from '../../src/http/app.ts';
import { masterKeyUnavailable, MasterKeyUnavailableError } from '../../src/keys/keyring.ts';
import { KeyError, KeyStore, publishMarginMs } from '../../src/keys/keystore.ts';
import { MasterKeyError, resolveMasterKey } from '../../src/keys/master-key.ts';
import { rewrap } from '../../src/keys/rewrap.ts';
import { masterKeyId, open, seal } from '../../src/keys/sealed-box.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';
import { testContext } from '../helpers/storage.ts';

/** An access-token-shaped JWT from the current signing key, valid for the longest token lifetime. */
function signToken(ctx: Context, sub = 'desk-7'): Promise<string> {
  const now = epochSeconds(ctx.clock);
  return ctx.keys.signJwt({ typ: 'at+jwt' }, { iss: ctx.config.issuer, sub, iat: now, exp: now + maxTokenLifetimeSeconds });
}

function kidOf(token: string): string {
  return JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid;
}

/** Error lines written to a logger, parsed. */
function errorLog(): { log: ReturnType<typeof createLogger>; errors: Record<string, unknown>[] } {
  const errors: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        if ((parsed.level as number) >= 50) errors.push(parsed);
      }
      done();
    },
  });
  return { log: createLogger('info', stream), errors };
}

/**
 * A signing key row whose private part does not open with the configured master key: sealed with
 * another master key (as after a rewrap this node has no key for), or damaged.
 */
async function insertUnopenableKey(ctx: Context, activatesAt: number, how: 'another master key' | 'damaged'): Promise<string> {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(jwk, 'sha256');
  const other = randomBytes(32);
  const master = resolveMasterKey(ctx.config).key;
  const sealed = seal(how === 'damaged' ? master : other, privateKey.export({ format: 'der', type: 'pkcs8' }), `signing_keys:${kid}`);
  await ctx.storage.db
    .insertInto('signing_keys')
    .values({
      kid,
      alg: 'ES256',
      public_jwk: JSON.stringify({ ...jwk, kid, alg: 'ES256', use: 'sig' }),
      // Damaged: the ciphertext's last character changed, so its tag no longer verifies.
      private_key: how === 'damaged' ? sealed.slice(0, -2) + (sealed.at(-2) === 'A' ? 'B' : 'A') + sealed.at(-1) : sealed,
      master_key_id: masterKeyId(how === 'damaged' ? master : other),
      created_at: ctx.clock.now(),
      activates_at: activatesAt,
      retired_at: null,
    })
    .execute();
  return kid;
}

describe('the key store', () => {
  test('creates exactly one active ES256 signing key on first start, and none on the next start', async (t) => {
    const { ctx, config, clock } = await testContext({ t });
    const keys = await ctx.keys.list();
    assert.equal(keys.length, 1);
    assert.deepEqual(keys[0], { kid: keys[0]!.kid, alg: 'ES256', state: 'active', createdAt: clock.now(), activatesAt: clock.now() });

    const { keys: published } = await ctx.keys.jwks();
    assert.equal(published.length, 1);
    const jwk = published[0]!;
    assert.equal(jwk.kty, 'EC');
    assert.equal(jwk.crv, 'P-256');
    assert.equal(jwk.alg, 'ES256');
    assert.equal(jwk.use, 'sig');
    assert.equal(jwk.kid, keys[0]!.kid);
    assert.equal(jwk.kid, await calculateJwkThumbprint(jwk, 'sha256'), 'the kid is the RFC 7638 thumbprint');

    // A restart on the same database keeps the key.
    const again = await openContext(config, { clock, log: createLogger('silent'), storage: ctx.storage });
    assert.deepEqual(await again.keys.list(), keys);
  });

  test('never stores a private key in the clear', async (t) => {
    const { ctx, config } = await testContext({ t });
    const row = await ctx.storage.db.selectFrom('signing_keys').selectAll().executeTakeFirstOrThrow();
    const master = resolveMasterKey(config).key;
    const pkcs8 = open(master, row.private_key, `signing_keys:${row.kid}`);
    const d = (createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ format: 'jwk' }) as JWK).d!;
    const scalar = Buffer.from(d, 'base64url');

    assert.match(row.private_key, new RegExp(`^v2\\.${masterKeyId(master)}\\.`), 'sealed, naming the master key that sealed it');
    assert.ok(!row.private_key.includes('PRIVATE KEY'), 'not PEM');
    assert.throws(() => createPrivateKey({ key: Buffer.from(row.private_key), format: 'der', type: 'pkcs8' }));
    const everything = JSON.stringify(row);
    for (const secret of [pkcs8, scalar]) {
      for (const encoding of ['base64', 'base64url', 'hex'] as const) {
        assert.ok(!everything.includes(secret.toString(encoding)), `no ${encoding} key bytes in the row`);
      }
    }
    assert.ok(!('d' in JSON.parse(row.public_jwk)));
    assert.equal(row.master_key_id, masterKeyId(master));
  });

  test('refuses to open with a wrong master key, naming both master key ids and what to set', async (t) => {
    const { ctx, config, clock, dataDir } = await testContext({ t });
    await ctx.keys.rotate('ES256', 600);
    const kids = (await ctx.keys.list()).map((k) => k.kid);
    const wrong = randomBytes(32);
    const wrongConfig = loadConfig({ CLEARANCE_DATA_DIR: dataDir, CLEARANCE_MASTER_KEY: wrong.toString('hex') });

    const error = await openContext(wrongConfig, { clock, log: createLogger('silent'), storage: ctx.storage }).then(
      () => assert.fail('opened with the wrong master key'),
      (e: unknown) => e,
    );
    // The derivation root does not open with it (src/keys/master-key-state.ts): refused before any key is loaded.
    assert.ok(error instanceof MasterKeyError, String(error));
    assert.ok(error.message.includes(masterKeyId(resolveMasterKey(config).key)), error.message);
    assert.ok(error.message.includes(masterKeyId(wrong)), error.message);
    assert.match(error.message, /CLEARANCE_MASTER_KEY/);
    assert.ok(!error.message.includes(wrong.toString('hex')), 'the key itself is never echoed');

    // The data is untouched: the right key still opens it.
    const keys = new KeyStore(ctx.storage.db, resolveMasterKey(config).key, clock);
    assert.deepEqual((await keys.list()).map((k) => k.kid), kids);
  });

  test('refuses to retire a key that does not exist', async (t) => {
    const { ctx } = await testContext({ t });
    await assert.rejects(ctx.keys.retire('no-such-kid'), (e: unknown) => e instanceof KeyError && /no key with kid "no-such-kid"/.test(e.message));
  });

  for (const alg of ['EdDSA', 'PS256'] as const) {
    test(`creates ${alg} signing keys when CLEARANCE_SIGNING_ALG=${alg}, and signs tokens jose verifies`, async (t) => {
      const { ctx, clock } = await testContext({ t, env: { CLEARANCE_SIGNING_ALG: alg } });
      const jwks = await ctx.keys.jwks();
      assert.equal(jwks.keys.length, 1);
      const jwk = jwks.keys[0]!;
      assert.equal(jwk.alg, alg);
      if (alg === 'EdDSA') assert.deepEqual([jwk.kty, jwk.crv], ['OKP', 'Ed25519']);
      else assert.ok(jwk.kty === 'RSA' && Buffer.from(jwk.n!, 'base64url').length >= 256);
      const token = await signToken(ctx);
      const { protectedHeader, payload } = await jwtVerify(token, createLocalJWKSet(jwks), {
        algorithms: [alg],
        issuer: ctx.config.issuer,
        currentDate: new Date(ctx.clock.now()),
      });
      assert.deepEqual(protectedHeader, { typ: 'at+jwt', alg, kid: jwk.kid });
      assert.equal(payload.sub, 'desk-7');

      // A rotation may change the algorithm; the new key uses the one asked for.
      clock.advance(1);
      const next = await ctx.keys.rotate('ES256', 0);
      assert.equal(next.alg, 'ES256');
      clock.advance(publishMarginMs);
      assert.equal(kidOf(await signToken(ctx)), next.kid);
    });
  }

  test('rotates end to end: publishes first, signs after the overlap, retires only after every old token expired', async (t) => {
    const { ctx, clock } = await testContext({ t });
    const app = buildApp(ctx);
    t.after(() => app.close());
    const base = await app.listen({ host: '127.0.0.1', port: 0 });
    /** A verifier that fetches the JWKS from the listening server now (no cached copy). */
    const verify = (token: string) =>
      jwtVerify(token, createRemoteJWKSet(new URL('/jwks', base)), {
        algorithms: ['ES256'],
        issuer: ctx.config.issuer,
        currentDate: new Date(clock.now()),
      });
    const publishedKids = async () => ((await (await fetch(new URL('/jwks', base))).json()) as { keys: JWK[] }).keys.map((k) => k.kid);
    const state = async (kid: string) => (await ctx.keys.list()).find((k) => k.kid === kid)?.state;

    const [old] = await ctx.keys.list();
    const oldKid = old!.kid;
    const oldToken = await signToken(ctx, 'before-rotation');
    assert.equal(kidOf(oldToken), oldKid);
    await verify(oldToken);
    await assert.rejects(ctx.keys.retire(oldKid), /cannot be retired yet: it is the current signing key/);

    // Rotate with a 10-minute overlap: the new key is in JWKS at once, but does not sign yet.
    const rotated = await ctx.keys.rotate('ES256', 600);
    const newKid = rotated.kid;
    assert.equal(rotated.state, 'next');
    assert.equal(rotated.activatesAt, clock.now() + 600_000);
    assert.deepEqual(await publishedKids(), [oldKid, newKid]);
    assert.equal(kidOf(await signToken(ctx)), oldKid);
    await assert.rejects(ctx.keys.retire(newKid), /cannot be retired yet: it is the next signing key/);

    clock.advance(600_000 - 1);
    assert.equal(kidOf(await signToken(ctx)), oldKid, 'the old key signs until the overlap has passed');
    clock.advance(1);
    const rotatedAt = clock.now();
    const newToken = await signToken(ctx, 'after-rotation');
    assert.equal(kidOf(newToken), newKid, 'then the new key signs');
    assert.equal(await state(newKid), 'active');
    assert.equal(await state(oldKid), 'superseded');
    const superseded = (await ctx.keys.list()).find((k) => k.kid === oldKid)!;
    assert.equal(superseded.supersededAt, rotatedAt);
    assert.equal(superseded.retirableAt, rotatedAt + maxTokenLifetimeSeconds * 1000 + 60_000);

    // Both tokens verify against the published JWKS while the old key is superseded.
    assert.equal((await verify(oldToken)).payload.sub, 'before-rotation');
    assert.equal((await verify(newToken)).payload.sub, 'after-rotation');

    // Retirement is refused until the longest token lifetime plus 60 s of skew has passed.
    clock.advance(maxTokenLifetimeSeconds * 1000 + 60_000 - 1);
    await assert.rejects(ctx.keys.retire(oldKid), (e: unknown) => e instanceof KeyError && /tokens it signed may be valid until/.test(e.message));
    assert.deepEqual(await publishedKids(), [oldKid, newKid]);
    clock.advance(1);
    assert.equal(await state(oldKid), 'retirable');
    const retired = await ctx.keys.retire(oldKid);
    assert.equal(retired.state, 'retired');
    assert.equal(retired.retiredAt, clock.now());
    await assert.rejects(ctx.keys.retire(oldKid), /already retired/);

    // Gone from JWKS: a token the old key signed no longer verifies (an attacker holding the
    // old key could not mint accepted tokens); tokens of the new key still do.
    assert.deepEqual(await publishedKids(), [newKid]);
    await assert.rejects(verify(oldToken), errors.JWKSNoMatchingKey);
    clock.set(rotatedAt); // the new token is still within its lifetime
    assert.equal((await verify(newToken)).payload.sub, 'after-rotation');
    assert.equal((await ctx.keys.list()).find((k) => k.kid === oldKid)?.state, 'retired');
  });

  test('sees a rotation made through another handle (the CLI) once its cache interval has passed', async (t) => {
    const { ctx, config, clock, database } = await testContext({ t });
    const [current] = await ctx.keys.list();
    const cli = new KeyStore(database.connect().db, resolveMasterKey(config).key, clock);
    clock.advance(1);
    const next = await cli.rotate('ES256', 0);
    assert.equal(kidOf(await signToken(ctx)), current!.kid, 'the cached keys serve until the next check');
    clock.advance(1000);
    assert.ok((await ctx.keys.jwks()).keys.some((k) => k.kid === next.kid), 'published after one check interval');
    assert.equal(kidOf(await signToken(ctx)), current!.kid, 'and not yet signing: every node publishes it first');
    clock.advance(publishMarginMs);
    assert.equal(kidOf(await signToken(ctx)), next.kid);
  });

  test('keeps a signing key that does not open here without its key material: listed, logged, never published, verifying or signing; the other keys serve on', async (t) => {
    const { ctx, clock } = await testContext({ t });
    const [genuine] = await ctx.keys.list();
    const token = await signToken(ctx);
    // Older than the genuine key, so the genuine key still signs.
    const foreign = await insertUnopenableKey(ctx, genuine!.activatesAt - 2, 'another master key');
    const damaged = await insertUnopenableKey(ctx, genuine!.activatesAt - 1, 'damaged');
    const { log, errors } = errorLog();
    const keys = new KeyStore(ctx.storage.db, resolveMasterKey(ctx.config).key, clock, undefined, { log });

    assert.deepEqual((await keys.list()).map((k) => [k.kid, k.state]), [[foreign, 'superseded'], [damaged, 'superseded'], [genuine!.kid, 'active']], 'every key counts for the states');
    assert.deepEqual((await keys.jwks()).keys.map((k) => k.kid), [genuine!.kid], 'only the key that opens is published');
    assert.deepEqual((await keys.jwksInForce(0, clock.now())).keys.map((k) => k.kid), [genuine!.kid]);
    assert.equal(await keys.verificationKey(foreign), undefined, 'its public part from the row alone verifies nothing');
    assert.equal(await keys.verificationKey(damaged), undefined);
    assert.ok(await keys.verificationKey(genuine!.kid));
    assert.equal(kidOf(await keys.signJwt({ typ: 'at+jwt' }, { sub: 'x' })), genuine!.kid);
    const verified = await jwtVerify(token, createLocalJWKSet(await keys.jwks()), { algorithms: ['ES256'], currentDate: new Date(clock.now()) });
    assert.equal(verified.payload.sub, 'desk-7');

    assert.deepEqual(errors.map((e) => e.kid).sort(), [foreign, damaged].sort(), 'each logged, by kid');
    const logged = errors.find((e) => e.kid === foreign)!;
    assert.equal(logged.sealedWith, (await ctx.storage.db.selectFrom('signing_keys').select('master_key_id').where('kid', '=', foreign).executeTakeFirstOrThrow()).master_key_id);
    assert.match(String(logged.problem), /sealed with master key [0-9a-f]{16}, and the configured master key is/);
    assert.match(String(errors.find((e) => e.kid === damaged)!.problem), /does not open/);

    // Over HTTP too: /jwks publishes the genuine key alone, a server with the key set loaded.
    const app = buildApp(ctx);
    t.after(() => app.close());
    ctx.keys.invalidate();
    const jwks = await app.inject({ method: 'GET', url: '/jwks' });
    assert.equal(jwks.statusCode, 200);
    assert.deepEqual((jwks.json() as { keys: JWK[] }).keys.map((k) => k.kid), [genuine!.kid]);
  });

  test('signing fails closed when the active key does not open here: never another key in its place', async (t) => {
    const { ctx, clock } = await testContext({ t });
    const [genuine] = await ctx.keys.list();
    const foreign = await insertUnopenableKey(ctx, clock.now() + 1, 'another master key');
    clock.advance(1);
    const keys = new KeyStore(ctx.storage.db, resolveMasterKey(ctx.config).key, clock);
    assert.equal((await keys.list()).find((k) => k.kid === foreign)!.state, 'active');
    assert.equal((await keys.list()).find((k) => k.kid === genuine!.kid)!.state, 'superseded');
    await assert.rejects(
      keys.signJwt({ typ: 'at+jwt' }, { sub: 'x' }),
      (e: unknown) => e instanceof KeyError && e.message.includes(foreign) && /does not open here/.test(e.message),
      'a KeyError naming the kid: the master key is available, the row is not this database’s',
    );
  });

  test('on a node left without the master key the database seals with, signing, publishing and verifying with a key the rewrap re-sealed fail closed with MasterKeyUnavailableError', async (t) => {
    const oldKey = randomBytes(32).toString('hex');
    const newKey = randomBytes(32).toString('hex');
    const { ctx, clock, dataDir, database } = await testContext({ t, env: { CLEARANCE_MASTER_KEY: oldKey } });
    const master = resolveMasterKey(ctx.config).key;
    const kids = (await ctx.keys.list()).map((k) => k.kid);
    const cli = await openContext(loadConfig({ CLEARANCE_DATA_DIR: dataDir, CLEARANCE_MASTER_KEY: newKey, CLEARANCE_PREVIOUS_MASTER_KEY: oldKey }), { clock, log: createLogger('silent'), storage: database.connect() });
    t.after(async () => {
      await cli.risk.activity.close();
      await (cli.audit as { close?: () => Promise<void> }).close?.();
    });
    await rewrap(cli, resolveMasterKey(cli.config).key, { actor: 'cli:test', settleMs: 0 });
    // This node looks at the root every second (master-key-state.ts): a bounded wait for it.
    for (let i = 0; i < 500 && !masterKeyUnavailable(master); i++) await sleep(20);
    assert.ok(masterKeyUnavailable(master), 'this node learnt that the database seals with the new key');

    const { log, errors } = errorLog();
    const keys = new KeyStore(ctx.storage.db, master, clock, undefined, { log });
    const unavailable = (e: unknown) => e instanceof MasterKeyUnavailableError && e.message.includes(masterKeyId(Buffer.from(newKey, 'hex')));
    assert.deepEqual((await keys.list()).map((k) => k.kid), kids, 'the key is still known');
    await assert.rejects(keys.signJwt({ typ: 'at+jwt' }, { sub: 'x' }), unavailable, 'signing: 503, never another key');
    // It is this database's key, not a stray row: no JWKS without it, no valid token called invalid — 503.
    await assert.rejects(keys.jwks(), unavailable);
    await assert.rejects(keys.jwksInForce(0, clock.now()), unavailable);
    await assert.rejects(keys.verificationKey(kids[0]!), unavailable);
    assert.equal(await keys.verificationKey('no-such-kid'), undefined, 'an unknown kid is still unknown');
    assert.equal(errors.length, 1);
    // The node with the new key signs with it.
    assert.equal(kidOf(await new KeyStore(cli.storage.db, resolveMasterKey(cli.config).key, clock).signJwt({ typ: 'at+jwt' }, { sub: 'x' })), kids[0]);
  });
});
