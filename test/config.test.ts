import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.ts';
import { resolveMasterKey } from '../src/keys/master-key.ts';
import { createLogger } from '../src/log.ts';
import { openContext } from '../src/server.ts';

const httpsProduction = { CLEARANCE_MODE: 'production', CLEARANCE_ISSUER: 'https://auth.example.com' };

/** Asserts loadConfig refuses `env` with a ConfigError whose message matches. */
function refuses(env: NodeJS.ProcessEnv, message: RegExp): void {
  assert.throws(() => loadConfig(env), (error: unknown) => error instanceof ConfigError && message.test(error.message), JSON.stringify(env));
}

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('loadConfig', () => {
  test('defaults to development on port 9000 with issuer http://localhost:9000 and ./data resolved', () => {
    const config = loadConfig({});
    assert.equal(config.mode, 'development');
    assert.equal(config.port, 9000);
    assert.equal(config.host, 'localhost');
    assert.equal(config.issuer, 'http://localhost:9000');
    assert.equal(config.dataDir, resolve('data'));
    assert.ok(config.dataDir.startsWith('/'), 'an absolute path');
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.masterKey, undefined);
    assert.equal(config.logLevel, 'info');
    assert.equal(config.bodyLimit, 65536);
    assert.equal(config.signingAlg, 'ES256');
    assert.equal(config.keyOverlapSeconds, 600);
  });

  test('derives the default issuer from PORT, and resolves a relative data directory', () => {
    const config = loadConfig({ PORT: '8080', CLEARANCE_DATA_DIR: 'var/clearance' });
    assert.equal(config.issuer, 'http://localhost:8080');
    assert.equal(config.dataDir, resolve('var/clearance'));
  });

  test('treats an empty DATABASE_URL as unset', () => {
    assert.equal(loadConfig({ DATABASE_URL: '' }).databaseUrl, undefined);
    assert.equal(loadConfig({ DATABASE_URL: 'postgres://db/x' }).databaseUrl, 'postgres://db/x');
  });

  test('requires an https issuer in production mode', () => {
    refuses({ CLEARANCE_MODE: 'production', CLEARANCE_ISSUER: 'http://auth.example.com' }, /CLEARANCE_ISSUER must use https/);
    refuses({ CLEARANCE_MODE: 'production' }, /CLEARANCE_ISSUER must use https/);
    refuses({ NODE_ENV: 'production' }, /CLEARANCE_ISSUER must use https/);
    const config = loadConfig(httpsProduction);
    assert.equal(config.mode, 'production');
    assert.equal(config.host, '0.0.0.0');
    assert.equal(config.issuer, 'https://auth.example.com');
  });

  test('lets CLEARANCE_MODE=development override NODE_ENV=production', () => {
    assert.equal(loadConfig({ NODE_ENV: 'production', CLEARANCE_MODE: 'development' }).mode, 'development');
  });

  test('refuses an unknown mode', () => {
    refuses({ CLEARANCE_MODE: 'staging' }, /CLEARANCE_MODE must be "development" or "production", not "staging"/);
  });

  test('refuses an issuer with a query or a fragment, or that is not an absolute URL', () => {
    for (const issuer of ['https://auth.example.com?tenant=a', 'https://auth.example.com/?', 'https://auth.example.com#x', 'https://auth.example.com/#']) {
      refuses({ CLEARANCE_ISSUER: issuer }, /CLEARANCE_ISSUER must not have a query or fragment/);
    }
    for (const issuer of ['auth.example.com', '/tenant', '']) {
      refuses({ CLEARANCE_ISSUER: issuer }, /CLEARANCE_ISSUER must be an absolute URL/);
    }
    refuses({ CLEARANCE_ISSUER: 'ftp://auth.example.com' }, /https/);
  });

  test('drops a trailing slash from the issuer and keeps its path', () => {
    assert.equal(loadConfig({ CLEARANCE_ISSUER: 'https://auth.example.com/' }).issuer, 'https://auth.example.com');
    assert.equal(loadConfig({ CLEARANCE_ISSUER: 'https://example.com/tenant/' }).issuer, 'https://example.com/tenant');
  });

  test('reads a master key given as 64 hex digits or as base64', () => {
    const key = randomBytes(32);
    assert.deepEqual(loadConfig({ CLEARANCE_MASTER_KEY: key.toString('hex') }).masterKey, key);
    assert.deepEqual(loadConfig({ CLEARANCE_MASTER_KEY: key.toString('hex').toUpperCase() }).masterKey, key);
    assert.deepEqual(loadConfig({ CLEARANCE_MASTER_KEY: key.toString('base64') }).masterKey, key);
    assert.deepEqual(loadConfig({ CLEARANCE_MASTER_KEY: key.toString('base64url') }).masterKey, key);
  });

  test('reads the master key, the database URL and the Redis URL from the files their _FILE variables name', () => {
    const dir = mkdtempSync(join(tmpdir(), 'clearance-secrets-'));
    try {
      const key = randomBytes(32);
      writeFileSync(join(dir, 'master-key'), `${key.toString('hex')}\n`);
      writeFileSync(join(dir, 'database-url'), 'postgres://clearance:s3cret@db.internal:5432/clearance\n');
      writeFileSync(join(dir, 'redis-url'), 'redis://:s3cret@cache.internal:6379');
      const config = loadConfig({
        CLEARANCE_MASTER_KEY_FILE: join(dir, 'master-key'),
        DATABASE_URL_FILE: join(dir, 'database-url'),
        REDIS_URL_FILE: join(dir, 'redis-url'),
      });
      assert.deepEqual(config.masterKey, key);
      assert.equal(config.databaseUrl, 'postgres://clearance:s3cret@db.internal:5432/clearance');
      assert.equal(config.redisUrl, 'redis://:s3cret@cache.internal:6379');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('refuses a secret given both directly and as a file, a missing file and an empty one, without echoing a secret', () => {
    const dir = mkdtempSync(join(tmpdir(), 'clearance-secrets-'));
    try {
      const secret = randomBytes(32).toString('hex');
      writeFileSync(join(dir, 'master-key'), secret);
      writeFileSync(join(dir, 'empty'), '\n');
      const refusals: [NodeJS.ProcessEnv, RegExp][] = [
        [{ CLEARANCE_MASTER_KEY: secret, CLEARANCE_MASTER_KEY_FILE: join(dir, 'master-key') }, /set CLEARANCE_MASTER_KEY or CLEARANCE_MASTER_KEY_FILE, not both/],
        [{ DATABASE_URL_FILE: join(dir, 'absent') }, /^DATABASE_URL_FILE: .*ENOENT/],
        [{ REDIS_URL_FILE: join(dir, 'empty') }, /^REDIS_URL_FILE: .* is empty/],
      ];
      for (const [env, message] of refusals) {
        assert.throws(
          () => loadConfig(env),
          (error: unknown) => error instanceof ConfigError && message.test(error.message) && !error.message.includes(secret),
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('refuses a master key that is not 32 bytes, without echoing it', () => {
    for (const raw of [randomBytes(31).toString('hex'), randomBytes(33).toString('base64'), 'password', randomBytes(32).toString('hex') + 'ab']) {
      assert.throws(
        () => loadConfig({ CLEARANCE_MASTER_KEY: raw }),
        (error: unknown) => error instanceof ConfigError && /CLEARANCE_MASTER_KEY must be 32 bytes/.test(error.message) && !error.message.includes(raw),
      );
    }
  });

  test('refuses a bad PORT, naming it', () => {
    for (const port of ['abc', '-1', '65536', '80.5', '0x50', '1e3', ' 80', '+80']) {
      refuses({ PORT: port }, /^PORT must be an integer from 0 to 65535/);
    }
    assert.equal(loadConfig({ PORT: '' }).port, 9000, 'empty means unset');
  });

  test('accepts PORT=0 (the OS picks) only with an explicit issuer, which cannot be derived from it', () => {
    refuses({ PORT: '0' }, /CLEARANCE_ISSUER must be set when PORT is 0/);
    const config = loadConfig({ PORT: '0', CLEARANCE_ISSUER: 'http://127.0.0.1:9999' });
    assert.equal(config.port, 0);
    assert.equal(config.issuer, 'http://127.0.0.1:9999');
  });

  test('refuses an unknown signing algorithm and out-of-range limits', () => {
    for (const alg of ['RS256', 'HS256', 'none', 'es256']) refuses({ CLEARANCE_SIGNING_ALG: alg }, /CLEARANCE_SIGNING_ALG must be one of ES256, EdDSA, PS256/);
    assert.equal(loadConfig({ CLEARANCE_SIGNING_ALG: 'PS256' }).signingAlg, 'PS256');
    refuses({ CLEARANCE_BODY_LIMIT: '100' }, /^CLEARANCE_BODY_LIMIT must be an integer/);
    refuses({ CLEARANCE_KEY_OVERLAP: '-1' }, /^CLEARANCE_KEY_OVERLAP must be an integer/);
  });

  test('reads the database timeouts, pool size and prepared statements, a few seconds at most by default, and refuses nonsense', () => {
    const defaults = loadConfig({});
    assert.deepEqual(
      [defaults.dbStatementTimeoutMs, defaults.dbAcquireTimeoutMs, defaults.readyTimeoutMs, defaults.sqliteBusyTimeoutMs, defaults.dbPoolSize, defaults.dbPreparedStatements],
      [3000, 2000, 1000, 2000, 10, true],
    );
    assert.equal(loadConfig({ CLEARANCE_DB_PREPARED_STATEMENTS: 'false' }).dbPreparedStatements, false);
    refuses({ CLEARANCE_DB_PREPARED_STATEMENTS: 'no' }, /^CLEARANCE_DB_PREPARED_STATEMENTS/);
    const set = loadConfig({
      CLEARANCE_DB_STATEMENT_TIMEOUT_MS: '0',
      CLEARANCE_DB_ACQUIRE_TIMEOUT_MS: '500',
      CLEARANCE_READY_TIMEOUT_MS: '250',
      CLEARANCE_SQLITE_BUSY_TIMEOUT_MS: '100',
      CLEARANCE_DB_POOL_SIZE: '4',
    });
    assert.deepEqual([set.dbStatementTimeoutMs, set.dbAcquireTimeoutMs, set.readyTimeoutMs, set.sqliteBusyTimeoutMs, set.dbPoolSize], [0, 500, 250, 100, 4]);
    refuses({ CLEARANCE_DB_ACQUIRE_TIMEOUT_MS: '0' }, /^CLEARANCE_DB_ACQUIRE_TIMEOUT_MS must be an integer/);
    refuses({ CLEARANCE_DB_STATEMENT_TIMEOUT_MS: '5s' }, /^CLEARANCE_DB_STATEMENT_TIMEOUT_MS must be an integer/);
    refuses({ CLEARANCE_DB_POOL_SIZE: '1' }, /^CLEARANCE_DB_POOL_SIZE must be an integer/);
  });

  test("reads the audit sealer's interval, leaving it to the dialect unless set, and refuses nonsense", () => {
    assert.equal(loadConfig({}).auditSealIntervalMs, undefined);
    assert.equal(loadConfig({ CLEARANCE_AUDIT_SEAL_INTERVAL_MS: '' }).auditSealIntervalMs, undefined);
    assert.equal(loadConfig({ CLEARANCE_AUDIT_SEAL_INTERVAL_MS: '1000' }).auditSealIntervalMs, 1000);
    refuses({ CLEARANCE_AUDIT_SEAL_INTERVAL_MS: '5' }, /^CLEARANCE_AUDIT_SEAL_INTERVAL_MS must be an integer from 10 to 60000/);
    refuses({ CLEARANCE_AUDIT_SEAL_INTERVAL_MS: '0.5s' }, /^CLEARANCE_AUDIT_SEAL_INTERVAL_MS must be an integer/);
  });

  test('reads the security profile and the DPoP nonce policy, off and default unless set', () => {
    const defaults = loadConfig({});
    assert.equal(defaults.profile, 'default');
    assert.equal(defaults.dpopNonce, 'off');
    assert.equal(defaults.mtlsOrigin, undefined);
    const fapi = loadConfig({ CLEARANCE_PROFILE: 'fapi2', CLEARANCE_DPOP_NONCE: 'required' });
    assert.equal(fapi.profile, 'fapi2');
    assert.equal(fapi.dpopNonce, 'required');
    refuses({ CLEARANCE_PROFILE: 'fapi1' }, /^CLEARANCE_PROFILE must be one of default, fapi2/);
    refuses({ CLEARANCE_DPOP_NONCE: 'yes' }, /^CLEARANCE_DPOP_NONCE must be one of off, required/);
  });

  test('reads CLEARANCE_MTLS_ORIGIN as an origin only, https outside development', () => {
    assert.equal(loadConfig({ CLEARANCE_MTLS_ORIGIN: 'https://MTLS.example.com/' }).mtlsOrigin, 'https://mtls.example.com');
    assert.equal(loadConfig({ ...httpsProduction, CLEARANCE_MASTER_KEY: randomBytes(32).toString('hex'), CLEARANCE_MTLS_ORIGIN: 'https://mtls.example.com:8443' }).mtlsOrigin, 'https://mtls.example.com:8443');
    refuses({ CLEARANCE_MTLS_ORIGIN: 'https://mtls.example.com/token' }, /^CLEARANCE_MTLS_ORIGIN must be an origin/);
    refuses({ CLEARANCE_MTLS_ORIGIN: 'https://mtls.example.com?x=1' }, /^CLEARANCE_MTLS_ORIGIN must be an origin/);
    refuses({ CLEARANCE_MTLS_ORIGIN: 'mtls.example.com' }, /^CLEARANCE_MTLS_ORIGIN must be an absolute URL/);
    refuses({ ...httpsProduction, CLEARANCE_MTLS_ORIGIN: 'http://mtls.example.com' }, /^CLEARANCE_MTLS_ORIGIN must use https/);
  });
});

describe('the master key', () => {
  test('is required in production: resolveMasterKey and openContext refuse without it, writing nothing', async (t) => {
    const dir = tempDir(t);
    const config = loadConfig({ ...httpsProduction, CLEARANCE_DATA_DIR: join(dir, 'data') });
    assert.throws(() => resolveMasterKey(config), (error: unknown) => error instanceof ConfigError && /CLEARANCE_MASTER_KEY \(or .*\) is required/.test(error.message));
    await assert.rejects(openContext(config, { log: createLogger('silent') }), ConfigError);
    assert.ok(!existsSync(join(dir, 'data')), 'no data directory, database or key file was created');
  });

  test('comes from the environment in production, without a warning', (t) => {
    const key = randomBytes(32);
    const config = loadConfig({ ...httpsProduction, CLEARANCE_DATA_DIR: tempDir(t), CLEARANCE_MASTER_KEY: key.toString('base64') });
    assert.deepEqual(resolveMasterKey(config), { key, source: 'environment' });
  });

  test('is generated once into the data directory in development, readable by the owner only, with a warning', (t) => {
    const dir = join(tempDir(t), 'data');
    const config = loadConfig({ CLEARANCE_DATA_DIR: dir });
    const first = resolveMasterKey(config);
    assert.equal(first.source, 'development-file');
    assert.equal(first.key.length, 32);
    assert.match(first.warning ?? '', /development master key/);
    assert.equal(statSync(join(dir, 'master.key')).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o077, 0, 'the data directory is private');
    assert.deepEqual(resolveMasterKey(config).key, first.key, 'the next start reads the same key');
    assert.deepEqual(readdirSync(dir), ['master.key']);
  });

  test('refuses a development key file that does not hold 32 bytes', (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'master.key'), 'abcd\n');
    assert.throws(() => resolveMasterKey(loadConfig({ CLEARANCE_DATA_DIR: dir })), /does not hold a 32-byte hex key/);
  });
});
