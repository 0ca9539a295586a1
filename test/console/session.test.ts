import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { consoleCookies, type ConsoleSession } from '../../src/console/session.ts';

// The console's cookies carry an admin API token: on https they are __Secure- (Path=/console rules
// out __Host-), so no plain-http page of the host can plant one (src/identity/sessions.ts cookieName).

const masterKey = randomBytes(32);
const now = 1_800_000_000_000;
const ctxOf = (issuer: string) => ({ config: { issuer }, clock: { now: () => now } }) as Parameters<typeof consoleCookies.writeSession>[0];
const session: ConsoleSession = { accessToken: 'at', expiresAt: now + 600_000, userId: 'u1', username: 'olga', roles: [], scopes: [], acr: 'urn:example:acr', csrf: 'c' };

describe('the console cookies', () => {
  test('are named __Secure- with Path=/console on an https issuer, and read back only under that name', () => {
    const https = ctxOf('https://id.broker.example');
    const line = consoleCookies.writeSession(https, masterKey, session);
    assert.match(line, /^__Secure-clearance_console=[^;]+; Path=\/console; HttpOnly; SameSite=Lax; Secure; Max-Age=600$/);
    const pair = line.split(';')[0]!;
    assert.deepEqual(consoleCookies.readSession(https, masterKey, pair), session);
    assert.equal(consoleCookies.readSession(https, masterKey, pair.replace(/^__Secure-/, '')), undefined, 'the same sealed value planted under the bare name');
    assert.match(consoleCookies.clearSession(https), /^__Secure-clearance_console=; Path=\/console; HttpOnly; SameSite=Lax; Secure; Max-Age=0$/);
    assert.match(consoleCookies.clearSignIn(https), /^__Secure-clearance_console_signin=; Path=\/console;/);
  });

  test('keep the bare names and the issuer path on a development http issuer', () => {
    const http = ctxOf('http://localhost:9000/idp');
    const line = consoleCookies.writeSession(http, masterKey, session);
    assert.match(line, /^clearance_console=[^;]+; Path=\/idp\/console; HttpOnly; SameSite=Lax; Max-Age=600$/);
    assert.deepEqual(consoleCookies.readSession(http, masterKey, line.split(';')[0]!), session);
  });
});
