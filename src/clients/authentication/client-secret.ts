import { clientSecretMatches } from '../secret.ts';
import type { Client } from '../store.ts';
import { invalidClient } from './errors.ts';

/** Credentials taken from an `Authorization: Basic` header. */
export interface BasicCredentials {
  clientId: string;
  secret: string;
}

/** Longest secret accepted before hashing (ours are 43 characters). */
const maxSecretLength = 512;
/** Longest client_id that can exist (metadata.ts). */
export const maxClientIdLength = 128;

const basicHeader = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads client_secret_basic credentials (RFC 6749 §2.3.1, RFC 7617). The client_id and the
 * secret are each application/x-www-form-urlencoded, then joined with ":" and base64-encoded,
 * so both are form-decoded here. Secrets Clearance issues are base64url and read the same
 * whether or not a client encodes them. Anything malformed is `invalid_client`.
 */
export function parseBasicAuthorization(header: string): BasicCredentials {
  const match = basicHeader.exec(header);
  if (!match) {
    const scheme = header.split(' ', 1)[0] ?? '';
    throw invalidClient(
      /^basic$/i.test(scheme) ? 'malformed Basic credentials' : `unsupported Authorization scheme ${JSON.stringify(scheme.slice(0, 20))}`,
      'the Authorization header must carry Basic client credentials',
    );
  }
  const token = match[1]!;
  if (token.length % 4 !== 0) throw invalidClient('Basic credentials are not padded base64', 'malformed Basic credentials');
  let decoded: string;
  try {
    decoded = utf8.decode(Buffer.from(token, 'base64'));
  } catch {
    throw invalidClient('Basic credentials are not UTF-8', 'malformed Basic credentials');
  }
  const colon = decoded.indexOf(':');
  if (colon < 0) throw invalidClient('Basic credentials have no ":" separator', 'malformed Basic credentials');
  const clientId = formDecode(decoded.slice(0, colon));
  const secret = formDecode(decoded.slice(colon + 1));
  if (clientId === undefined || secret === undefined) {
    throw invalidClient('Basic credentials are not valid form-urlencoding', 'malformed Basic credentials');
  }
  if (!clientId) throw invalidClient('Basic credentials have an empty client_id', 'malformed Basic credentials');
  if (!secret) throw invalidClient(`Basic credentials for ${JSON.stringify(clientId)} have an empty secret`, 'malformed Basic credentials');
  return { clientId, secret };
}

/** application/x-www-form-urlencoded decoding of one value; undefined when malformed. */
function formDecode(text: string): string | undefined {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

/**
 * Checks a presented secret against the client's stored digests, in constant time
 * (client_secret_basic and client_secret_post alike): the current secret until it expires (RFC
 * 7591 §3.2.1 `client_secret_expires_at`), and during a rotation's rollover window the secret it
 * replaced. Both digests are always compared, so the time taken does not say which one matched.
 * Resolves which one did: the previous one marks a straggler the operator should hear of.
 */
export function verifyClientSecret(client: Client, secret: string, now: number): { previous: boolean } {
  const id = client.metadata.client_id;
  if (!client.secretHash) throw invalidClient(`client ${id} has no secret on record`);
  if (secret.length > maxSecretLength) throw invalidClient(`secret for ${id} is longer than ${maxSecretLength} characters`);
  const current = clientSecretMatches(secret, client.secretHash);
  const previous = client.previousSecret ? clientSecretMatches(secret, client.previousSecret.hash) : false;
  if (current) {
    // RFC 7591 §3.2.1: the secret is good until client_secret_expires_at, and not after.
    if (client.secretExpiresAt !== undefined && now >= client.secretExpiresAt) {
      throw invalidClient(`secret of ${id} expired at ${new Date(client.secretExpiresAt).toISOString()} (secret_expired)`, 'the client secret has expired');
    }
    return { previous: false };
  }
  if (previous) {
    const until = client.previousSecret!.validUntil;
    if (now >= until) throw invalidClient(`previous secret of ${id} presented after its rollover window ended at ${new Date(until).toISOString()} (secret_rotated)`);
    return { previous: true };
  }
  throw invalidClient(`wrong secret for ${id}`);
}
