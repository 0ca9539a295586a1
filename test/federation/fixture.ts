import { randomUUID } from 'node:crypto';
import type { TestContext } from 'node:test';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { ManualClock } from '../../src/clock.ts';
import type { Partner } from '../../src/federation/definition.ts';
import type { FetchRules, JsonFetcher } from '../../src/federation/fetch.ts';
import { PartnerStore } from '../../src/federation/store.ts';
import type { PartnerVerifyDeps } from '../../src/federation/verify.ts';
import { migrate } from '../../src/storage/database.ts';
import { DatabaseReplayCache } from '../../src/tokens/replay-cache.ts';
import { testDialects } from '../helpers/storage.ts';

/** Our issuer and token endpoint: the audiences a partner's tokens must name. */
export const ourIssuer = 'https://clearance.example.com';
export const audiences = [ourIssuer, `${ourIssuer}/token`];

export const partnerIssuer = 'https://as.acme-bank.example';

/** A signing key of the partner's, with its public JWK. */
export interface PartnerSigningKey {
  kid: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

export async function partnerKey(kid: string, alg: 'ES256' | 'PS256' | 'EdDSA' = 'ES256'): Promise<PartnerSigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid } };
}

/** A profile for the partner with inline keys; `overrides` change any field. */
export function profile(keys: PartnerSigningKey[], overrides: Partial<Partner> = {}): Partner {
  return {
    id: 'acme',
    issuer: partnerIssuer,
    jwks: { keys: keys.map((k) => k.jwk as Record<string, unknown>) },
    algorithms: ['ES256'],
    max_assertion_lifetime: 300,
    required_claims: [],
    claim_mapping: {},
    allowed_audiences: ['https://orders.example.com'],
    allowed_scopes: ['order:create'],
    accept_id_tokens: false,
    allow_private_network: false,
    ...overrides,
  };
}

/** A fake jwks_uri: serves `document` and counts the fetches. */
export class FakeJwksUri {
  document: unknown = { keys: [] };
  fetches: { url: string; rules: FetchRules }[] = [];
  readonly fetch: JsonFetcher = async (url, rules) => {
    this.fetches.push({ url, rules });
    return structuredClone(this.document);
  };
}

export interface Harness {
  deps: PartnerVerifyDeps;
  clock: ManualClock;
  partners: PartnerStore;
  /** Stores (or replaces) a profile. */
  register(partner: Partner): Promise<void>;
  /** Signs `claims` over defaults (iss, sub, aud, iat, exp = iat + 120, jti) with `key`. */
  sign(key: PartnerSigningKey, claims?: Record<string, unknown>, header?: Record<string, unknown>): Promise<string>;
  now(): number;
}

/** A migrated SQLite database, a partner store on it (with `fetch` for jwks_uri), a manual clock. */
export async function harness(t: TestContext, options: { fetch?: JsonFetcher } = {}): Promise<Harness> {
  const database = await testDialects()[0]!.create(t);
  await migrate(database.storage);
  const clock = new ManualClock(Date.parse('2025-06-02T09:00:00Z'));
  const { db } = database.storage;
  const partners = new PartnerStore(db, clock, { replay: new DatabaseReplayCache(db, clock), ...(options.fetch ? { fetch: options.fetch } : {}) });
  const now = () => Math.floor(clock.now() / 1000);
  return {
    deps: { partners, clock },
    clock,
    partners,
    now,
    async register(partner) {
      await db.transaction().execute((trx) => partners.upsert(trx, partner));
      partners.invalidate();
    },
    async sign(key, claims = {}, header = {}) {
      const iat = now();
      const payload = { iss: partnerIssuer, sub: 'trader-7@acme', aud: ourIssuer, iat, exp: iat + 120, jti: randomUUID(), ...claims };
      for (const [name, value] of Object.entries(payload)) if (value === undefined) delete (payload as Record<string, unknown>)[name];
      const alg = header.alg ?? (key.jwk.kty === 'RSA' ? 'PS256' : key.jwk.kty === 'OKP' ? 'EdDSA' : 'ES256');
      return new SignJWT(payload).setProtectedHeader({ alg: alg as string, kid: key.kid, ...header }).sign(key.privateKey);
    },
  };
}

/** A JWT with any header and claims and a made-up signature: for tokens no library would sign. */
export function craft(header: Record<string, unknown>, claims: Record<string, unknown>, signature = 'c2lnbmF0dXJl'): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part(header)}.${part(claims)}.${signature}`;
}
