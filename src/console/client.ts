import { createPrivateKey, createPublicKey, randomUUID, type KeyObject } from 'node:crypto';
import type { ClientMetadata } from '../clients/metadata.ts';
import type { Context } from '../context.ts';
import { signCompact } from '../keys/jws.ts';
import { consoleRoles } from './roles.ts';
import { authenticationKey } from '../keys/master-key.ts';

/** The console's client id at its own issuer. */
export const consoleClientId = 'clearance-console';

/** Where the issuer sends the console's authorization responses. */
export function consoleRedirectUri(issuer: string): string {
  return `${issuer}/console/callback`;
}

/**
 * The console's key for private_key_jwt (RFC 7523): an Ed25519 key derived from the master key
 * that seals now (src/keys/master-key.ts authenticationKey), so every node holds the same one
 * without storing it, nobody without the master key can redeem a code issued to the console, and
 * a rotated-out master key no longer can either: the registration follows it (server.ts re-seeds
 * the console client when a rewrap begins). A confidential client, so it passes FAPI 2.0 too.
 */
export function consoleKey(masterKey: Buffer): { privateKey: KeyObject; publicJwk: Record<string, unknown> } {
  const seed = authenticationKey(masterKey, 'clearance console client key v1');
  // RFC 8410 §7: an Ed25519 PKCS#8 private key is this fixed prefix and the 32-byte seed.
  const privateKey = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
  const publicJwk = { ...createPublicKey(privateKey).export({ format: 'jwk' }), kid: 'console-1', alg: 'EdDSA', use: 'sig' };
  return { privateKey, publicJwk };
}

/** The console as a registered client of its own issuer (seeded at every start, like the built-in resource servers). */
export function consoleClient(issuer: string, masterKey: Buffer): ClientMetadata {
  return {
    client_id: consoleClientId,
    client_name: 'Clearance console',
    kind: 'app',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'EdDSA',
    jwks: { keys: [consoleKey(masterKey).publicJwk] },
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: [consoleRedirectUri(issuer)],
    scope: ['openid', ...new Set(Object.values(consoleRoles).flatMap((role) => role.scopes))].join(' '),
  };
}

/** A fresh client assertion of the console for the token endpoint (RFC 7523 §3). */
export function consoleAssertion(issuer: string, masterKey: Buffer, now: number): string {
  const seconds = Math.floor(now / 1000);
  return signCompact('EdDSA', consoleKey(masterKey).privateKey, { typ: 'JWT', kid: 'console-1' }, { iss: consoleClientId, sub: consoleClientId, aud: issuer, iat: seconds, exp: seconds + 60, jti: randomUUID() });
}

/** Registers (or updates) the console client at start, like the built-in resource servers. */
export async function seedConsoleClient(ctx: Pick<Context, 'storage' | 'clients' | 'config'>, masterKey: Buffer): Promise<void> {
  const client = consoleClient(ctx.config.issuer, masterKey);
  const seed = () => ctx.storage.db.transaction().execute((trx) => ctx.clients.upsert(trx, client));
  try {
    await seed();
  } catch {
    // Two nodes starting at once on a fresh database both insert it: the second finds it on a retry.
    await seed();
  }
}
