import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { AuditGuardError, assertNoSecrets, containsJwt, isSecretName } from '../../src/audit/guard.ts';
import { AuditRecorder } from '../../src/audit/recorder.ts';
import { ManualClock } from '../../src/clock.ts';
import { migrate } from '../../src/storage/database.ts';
import { testDialects } from '../helpers/storage.ts';

const jws = 'eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJl';
const spacedHeader = `${Buffer.from('{ "alg": "none" }').toString('base64url')}.${Buffer.from('{"sub":"x"}').toString('base64url')}.`;
const jwe = 'eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..aXYtaXYtaXYtaXY.Y2lwaGVydGV4dA.dGFn';

test('recognises JWS, JWE and unsecured JWTs, also inside longer text', () => {
  for (const value of [jws, jwe, spacedHeader, `Bearer ${jws}`, `token=${jws}&x=1`]) assert.equal(containsJwt(value), true, value);
});

test('does not take URLs, hostnames, versions or scopes for JWTs', () => {
  for (const value of ['https://clearance.example.com/admin/audit', 'api.example.com', '1.2.3', 'order:create order:cancel', 'a.b.c', 'user@example.com']) {
    assert.equal(containsJwt(value), false, value);
  }
});

test('finds a JSON header after any whitespace trimStart takes from latin1, the first byte of the segment', () => {
  for (const space of ['\t', '\n', '\v', '\f', '\r', ' ', '\u00a0', '  \t']) {
    const header = Buffer.from(`${space}{"alg":"none"}`, 'latin1').toString('base64url');
    assert.equal(containsJwt(`x ${header}.${Buffer.from('{}').toString('base64url')}.`), true, JSON.stringify(space));
  }
});

test('answers a string the same when asked again, and as decoding every dotted segment does', () => {
  // The reference: every candidate's first segment decoded, none skipped, nothing remembered.
  const reference = (value: string) =>
    /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\./.test(value) ||
    [...value.matchAll(/[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*/g)].some((m) => {
      const decoded = Buffer.from(m[0].split('.')[0]!, 'base64url').toString('latin1').trimStart();
      return decoded.startsWith('{') && /"(alg|enc|typ)"\s*:/.test(decoded);
    });
  const header = fc.oneof(
    fc.constantFrom('{"alg":"ES256"}', ' {"typ":"JWT"}', '\u00a0{"enc":"A256GCM"}', '{"kid":"k"}', 'execution', '{'),
    fc.string({ maxLength: 12 }),
  ).map((text) => Buffer.from(text, 'latin1').toString('base64url'));
  const piece = fc.oneof(header, fc.constantFrom('.', '..', 'https://', 'api.example.com', 'eyJ', ' ', 'x'), fc.stringMatching(/^[A-Za-z0-9_.-]{0,8}$/));
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 8 }).map((pieces) => pieces.join('')), (value) => {
      const expected = reference(value);
      assert.equal(containsJwt(value), expected, value);
      assert.equal(containsJwt(value), expected, `${value} (asked again)`);
    }),
    { numRuns: 3000 },
  );
  const long = `${'https://a.example.com/'.repeat(30)} ${jws}`;
  assert.equal(containsJwt(long), true);
  assert.equal(containsJwt(long), true);
});

test('treats credential-like field names as secrets and ordinary ones as facts', () => {
  for (const name of ['client_secret', 'password', 'refresh_token', 'access_token', 'id_token', 'subject_token', 'code_verifier', 'client_assertion', 'privateKey', 'code', 'otp', 'Authorization', 'cookie', 'api_key', 'dpop', 'request_jwt', 'totpSeed']) {
    assert.equal(isSecretName(name), true, name);
  }
  for (const name of ['jti', 'token_type', 'tokenHash', 'authorization_details', 'kid', 'client_id', 'credentialId', 'method', 'scope', 'reasons', 'footprint']) {
    assert.equal(isSecretName(name), false, name);
  }
});

test('rejects an event with a raw token or a secret anywhere in it, naming the field', () => {
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const cases: [unknown, RegExp][] = [
    [{ type: 'token.issued', details: { access_token: 'opaque-value' } }, /details\.access_token/],
    [{ type: 'token.issued', details: { nested: [{ client_secret: 's3cr3t' }] } }, /client_secret/],
    [{ type: 'token.issued', details: { header: jws } }, /details\.header .*JWT/],
    [{ type: 'token.issued', subject: jws }, /event\.subject/],
    [{ type: 'token.issued', scopes: ['order:create', jwe] }, /scopes\[1\]/],
    [{ type: 'key.created', details: { pem } }, /private key/],
    [{ type: 'token.issued', details: { [jws]: 1 } }, /JWT/],
  ];
  for (const [event, message] of cases) assert.throws(() => assertNoSecrets(event), (e: Error) => e instanceof AuditGuardError && message.test(e.message));
});

test('accepts an event of facts: jti, digests, methods and decisions', () => {
  assertNoSecrets({
    type: 'token.issued',
    subject: 'user-1',
    details: { jti: 'a1b2', method: 'private_key_jwt', x5t: 'abc', token_type: 'DPoP', authorization_details: [{ type: 'order' }] },
    decision: { allow: true, reasons: [] },
  });
});

for (const dialect of testDialects()) {
  test(`the recorder refuses such events and writes nothing on ${dialect.name}`, async (t) => {
    const database = await dialect.create(t);
    await migrate(database.storage);
    const recorder = new AuditRecorder(database.storage.db, { clock: new ManualClock(), node: 'n' });
    await assert.rejects(recorder.record({ type: 'client.auth_failed', details: { client_assertion: jws } }), AuditGuardError);
    await assert.rejects(recorder.record({ type: 'token.issued', actor: jws }), AuditGuardError);
    await recorder.close();
    const rows = await database.storage.db.selectFrom('audit_events').selectAll().execute();
    assert.equal(rows.length, 0);
  });
}
