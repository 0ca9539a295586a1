/**
 * Shared setup for the client authentication tests: a migrated SQLite database with a real
 * ClientStore and replay cache, a manual clock, key pairs, assertion signers and certificates
 * made with the machine's openssl (node:crypto cannot create X.509 certificates).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  X509Certificate,
  createHmac,
  createPrivateKey,
  generateKeyPairSync,
  randomUUID,
  sign,
  type KeyObject,
} from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { ManualClock } from '../../../src/clock.ts';
import { authenticateClient, type AuthDeps } from '../../../src/clients/authentication/index.ts';
import type { AuthFailureThrottle } from '../../../src/clients/authentication/throttle.ts';
import type { AuthenticatedClient, ClientAuthInput } from '../../../src/clients/authentication/types.ts';
import { readClientMetadata } from '../../../src/clients/metadata.ts';
import { ClientStore } from '../../../src/clients/store.ts';
import { signCompact } from '../../../src/keys/jws.ts';
import { OAuthError } from '../../../src/oauth-error.ts';
import { FormParameters } from '../../../src/parameters.ts';
import { migrate } from '../../../src/storage/database.ts';
import { DatabaseReplayCache } from '../../../src/tokens/replay-cache.ts';
import { Validator } from '../../../src/validation.ts';
import { testDialects } from '../../helpers/storage.ts';

export const issuer = 'https://as.clearance.example';
export const tokenEndpoint = `${issuer}/token`;
export const parEndpoint = `${issuer}/par`;

export type Alg = 'ES256' | 'EdDSA' | 'PS256';

export interface KeyPair {
  alg: Alg;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** The public JWK as a client registers it (no kid). */
  jwk: Record<string, unknown>;
}

export function keyPair(alg: Alg): KeyPair {
  const pair =
    alg === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : alg === 'EdDSA'
        ? generateKeyPairSync('ed25519')
        : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { alg, ...pair, jwk: pair.publicKey.export({ format: 'jwk' }) as Record<string, unknown> };
}

export interface Harness {
  clock: ManualClock;
  clients: ClientStore;
  replay: DatabaseReplayCache;
  deps: AuthDeps;
  /** Registers (or updates) a client from apply-style metadata; resolves its generated secret, if any. */
  register(metadata: Record<string, unknown>): Promise<string | undefined>;
  /** authenticateClient with this harness's deps. */
  authenticate(input: Partial<ClientAuthInput> & { body?: string | Record<string, string> }): Promise<AuthenticatedClient>;
}

/** A fresh migrated SQLite database, removed when the test ends. */
export async function harness(
  t: Pick<TestContext, 'after'>,
  options: { throttle?: (clock: ManualClock) => AuthFailureThrottle } = {},
): Promise<Harness> {
  const database = await testDialects()[0]!.create(t);
  const storage = database.storage;
  await migrate(storage);
  // A minute ahead of the real clock, in whole seconds: certificates openssl makes during the test
  // are valid from the real "now", which must not be later than the test's clock.
  const clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000 + 60_000);
  const clients = new ClientStore(storage.db, clock);
  const replay = new DatabaseReplayCache(storage.db, clock);
  t.after(() => replay.settled());
  const deps: AuthDeps = { clients, replay, issuer, clock, ...(options.throttle ? { throttle: options.throttle(clock) } : {}) };
  return {
    clock,
    clients,
    replay,
    deps,
    async register(input) {
      const v = new Validator();
      const metadata = readClientMetadata(v, 'client', { kind: 'service', grant_types: ['client_credentials'], ...input });
      if (!metadata) throw new Error(v.problems.map((p) => `${p.path}: ${p.message}`).join('; '));
      const result = await storage.db.transaction().execute((trx) => clients.upsert(trx, metadata));
      clients.invalidate();
      return result.secret;
    },
    authenticate(input) {
      return authenticateClient(request(input), deps);
    },
  };
}

/** A ClientAuthInput with defaults: no header, no certificate, address 192.0.2.10. */
export function request(input: Partial<ClientAuthInput> & { body?: string | Record<string, string> }): ClientAuthInput {
  const { body, ...rest } = input;
  const text = typeof body === 'string' ? body : new URLSearchParams({ grant_type: 'client_credentials', ...body }).toString();
  return {
    form: input.form ?? new FormParameters(text),
    authorization: undefined,
    certificate: undefined,
    certificateChainVerified: false,
    sourceAddress: '192.0.2.10',
    ...rest,
  };
}

/** An `Authorization: Basic` value per RFC 6749 §2.3.1 (each part form-urlencoded first). */
export function basic(clientId: string, secret: string): string {
  const encode = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(secret)}`).toString('base64')}`;
}

export const jwtBearer = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** The claims a well-behaved client sends (as oauth4webapi does): five minutes or less, aud = issuer. */
export function assertionClaims(clientId: string, clock: ManualClock, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(clock.now() / 1000);
  return { iss: clientId, sub: clientId, aud: issuer, jti: randomUUID(), iat: now, nbf: now, exp: now + 60, ...overrides };
}

/** Signs a compact JWS with one of the allowed algorithms (header `alg` set from `alg`). */
export function signAssertion(key: KeyPair, claims: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  return signCompact(key.alg, key.privateKey, header, claims);
}

/** The form body of a private_key_jwt request. */
export function assertionBody(assertion: string, extra: Record<string, string> = {}): Record<string, string> {
  return { client_assertion_type: jwtBearer, client_assertion: assertion, ...extra };
}

const b64u = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** An unsecured JWT (`alg` as given, e.g. "none" or "nOnE"), with an empty or given signature. */
export function unsecuredJwt(alg: string, claims: Record<string, unknown>, signature = ''): string {
  return `${b64u({ alg, typ: 'JWT' })}.${b64u(claims)}.${signature}`;
}

/** RS256 (PKCS#1 v1.5), which the allowlist refuses even for an RSA key registered for PS256. */
export function rs256Jwt(key: KeyObject, claims: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  const input = `${b64u({ ...header, alg: 'RS256' })}.${b64u(claims)}`;
  return `${input}.${sign('sha256', Buffer.from(input), key).toString('base64url')}`;
}

/** HS256 with `secret` as the HMAC key (the algorithm-confusion attack uses the public key). */
export function hs256Jwt(secret: string | Buffer, claims: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  const input = `${b64u({ ...header, alg: 'HS256' })}.${b64u(claims)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

export interface Certificate {
  certificate: X509Certificate;
  privateKey: KeyObject;
}

/**
 * A self-signed certificate made with openssl. `subject` is openssl's `-subj` syntax
 * ("/C=DE/O=Acme/CN=svc"); `san` the subjectAltName extension value ("DNS:a,URI:https://b").
 */
export function makeCertificate(options: {
  subject: string;
  san?: string;
  /** SAN entries as openssl config lines ("URI.1 = https://a, b"), for values -addext cannot carry. */
  sanLines?: string[];
  key?: 'ec' | 'ed25519' | 'rsa';
  days?: number;
  multivalue?: boolean;
}): Certificate {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-cert-'));
  try {
    const keyArgs =
      options.key === 'ed25519'
        ? ['-newkey', 'ed25519']
        : options.key === 'rsa'
          ? ['-newkey', 'rsa:2048']
          : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
    const config = options.sanLines
      ? ['-config', join(dir, 'req.cnf')]
      : [];
    if (options.sanLines) {
      const text = ['[req]', 'distinguished_name = dn', 'x509_extensions = ext', '[dn]', '[ext]', 'subjectAltName = @alt', '[alt]', ...options.sanLines];
      writeFileSync(join(dir, 'req.cnf'), `${text.join('\n')}\n`);
    }
    const args = [
      'req', ...config, '-x509', ...keyArgs, '-nodes', '-batch',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
      '-days', String(options.days ?? 30), '-subj', options.subject, '-utf8',
      ...(options.multivalue ? ['-multivalue-rdn'] : []),
      ...(options.san ? ['-addext', `subjectAltName=${options.san}`] : []),
    ];
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    return {
      certificate: new X509Certificate(readFileSync(join(dir, 'cert.pem'))),
      privateKey: createPrivateKey(readFileSync(join(dir, 'key.pem'))),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Asserts that `promise` rejects with an OAuthError of this code, status and (matching) detail. */
export async function rejectsWith(
  promise: Promise<unknown>,
  expected: { error?: string; status?: number; detail: RegExp; description?: RegExp },
): Promise<OAuthError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof OAuthError, `expected an OAuthError, got ${caught === undefined ? 'success' : String(caught)}`);
  assert.equal(caught.error, expected.error ?? 'invalid_client', caught.detail);
  assert.equal(caught.status, expected.status ?? 401, caught.detail);
  assert.match(caught.detail ?? '', expected.detail);
  if (expected.description) assert.match(caught.description ?? '', expected.description);
  return caught;
}
