import { createHash, type X509Certificate } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { Clock } from '../../clock.ts';
import type { Client } from '../store.ts';
import { registeredKeys, type RegisteredKey } from './client-keys.ts';
import type { ClientKeySets } from './remote-keys.ts';
import {
  DistinguishedNameError,
  distinguishedNamesEqual,
  formatDn,
  parseNodeSubject,
  parseRfc4514,
} from './distinguished-name.ts';
import { invalidClient, quote } from './errors.ts';

/*
 * Mutual-TLS client authentication (RFC 8705 §2). This module never validates a certificate
 * chain: the TLS listener (with the configured client CA) or the TLS-terminating proxy does, and
 * says so through ClientAuthInput.certificateChainVerified. tls_client_auth requires that flag,
 * because the listener also accepts unchained certificates for self_signed_tls_client_auth, whose
 * trust comes from the key the client registered, not from a CA (RFC 8705 §2.2).
 */

/** RFC 8705 §3.1: `x5t#S256`, the base64url SHA-256 of the certificate's DER. */
export function certificateThumbprint(certificate: X509Certificate): string {
  return createHash('sha256').update(certificate.raw).digest('base64url');
}

/**
 * tls_client_auth (RFC 8705 §2.1): a certificate whose chain the TLS layer validated, within its
 * validity period, whose subject matches the one registered subject field: the DN
 * (`tls_client_auth_subject_dn`, RFC 4514) or exactly one SAN entry of the registered type.
 */
export function verifyTlsClientAuth(
  client: Client,
  certificate: X509Certificate | undefined,
  chainVerified: boolean,
  clock: Clock,
): void {
  const m = client.metadata;
  const id = m.client_id;
  if (!certificate) {
    throw invalidClient(`client ${id} uses tls_client_auth but presented no certificate`, 'a client certificate is required');
  }
  if (!chainVerified) {
    throw invalidClient(
      `client ${id} presented a certificate whose chain was not validated by the TLS layer or proxy ` +
        '(tls_client_auth needs a CA-issued certificate)',
    );
  }
  const now = clock.now();
  if (now < certificate.validFromDate.getTime() || now > certificate.validToDate.getTime()) {
    const period = `${certificate.validFrom} – ${certificate.validTo}`;
    throw invalidClient(`client ${id} presented a certificate outside its validity period (${period})`);
  }
  if (m.tls_client_auth_subject_dn !== undefined) {
    return requireSubjectDn(id, m.tls_client_auth_subject_dn, certificate);
  }
  const registered = sanField(client);
  if (!registered) throw invalidClient(`client ${id} uses tls_client_auth but registered no subject DN or SAN`);
  const entries = subjectAltNames(certificate);
  if (!entries.some((entry) => entry.type === registered.type && sanValuesEqual(registered.type, entry.value, registered.value))) {
    throw invalidClient(
      `certificate SAN ${quote(certificate.subjectAltName ?? '(none)', 200)} has no ${registered.type} entry ` +
        `equal to client ${id}'s registered ${quote(registered.value)}`,
    );
  }
}

function requireSubjectDn(id: string, registeredDn: string, certificate: X509Certificate): void {
  let expected;
  try {
    expected = parseRfc4514(registeredDn);
  } catch (error) {
    const reason = error instanceof DistinguishedNameError ? error.message : String(error);
    throw invalidClient(`client ${id}'s registered tls_client_auth_subject_dn is not a valid RFC 4514 DN: ${reason}`);
  }
  let presented;
  try {
    presented = parseNodeSubject(certificate.subject);
  } catch {
    throw invalidClient(`client ${id} presented a certificate whose subject could not be read: ${quote(certificate.subject, 200)}`);
  }
  if (!distinguishedNamesEqual(expected, presented)) {
    throw invalidClient(
      `certificate subject ${quote(formatDn(presented), 200)} is not client ${id}'s registered ${quote(formatDn(expected), 200)}`,
    );
  }
}

type SanType = 'dns' | 'uri' | 'ip' | 'email';

function sanField(client: Client): { type: SanType; value: string } | undefined {
  const m = client.metadata;
  if (m.tls_client_auth_san_dns !== undefined) return { type: 'dns', value: m.tls_client_auth_san_dns };
  if (m.tls_client_auth_san_uri !== undefined) return { type: 'uri', value: m.tls_client_auth_san_uri };
  if (m.tls_client_auth_san_ip !== undefined) return { type: 'ip', value: m.tls_client_auth_san_ip };
  if (m.tls_client_auth_san_email !== undefined) return { type: 'email', value: m.tls_client_auth_san_email };
  return undefined;
}

/**
 * Equality per SAN type: a dNSName is case-insensitive and never wildcard-expanded; a URI is
 * exact; an IP address compares by value (`2001:DB8:0:0:0:0:0:1` = `2001:db8::1`); an email
 * address has an exact local part and a case-insensitive domain.
 */
function sanValuesEqual(type: SanType, presented: string, registered: string): boolean {
  switch (type) {
    case 'dns':
      return presented.toLowerCase() === registered.toLowerCase();
    case 'uri':
      return presented === registered;
    case 'ip': {
      const a = canonicalIp(presented);
      return a !== undefined && a === canonicalIp(registered);
    }
    case 'email': {
      const [p, r] = [presented.lastIndexOf('@'), registered.lastIndexOf('@')];
      if (p <= 0 || r <= 0) return false;
      const sameLocal = presented.slice(0, p) === registered.slice(0, r);
      return sameLocal && presented.slice(p).toLowerCase() === registered.slice(r).toLowerCase();
    }
  }
}

function canonicalIp(text: string): string | undefined {
  if (isIPv4(text)) return text;
  // The WHATWG URL parser writes an IPv6 address in its one canonical (RFC 5952) form.
  if (isIPv6(text)) return new URL(`http://[${text}]/`).hostname;
  return undefined;
}

const sanTypeByPrefix: Record<string, SanType> = { DNS: 'dns', URI: 'uri', 'IP Address': 'ip', email: 'email' };

/**
 * The entries of Node's `subjectAltName` string ("DNS:a.example, URI:https://x, IP Address:10.0.0.1,
 * email:a@b"). Since Node 17.3.1 / 16.13.2 a value with a comma, quote or other special character
 * is written as a JSON string, so splitting on ", " cannot be fooled by a crafted name. Types other
 * than the four RFC 8705 uses are skipped.
 */
export function subjectAltNames(certificate: X509Certificate): { type: SanType; value: string }[] {
  return parseSubjectAltName(certificate.subjectAltName ?? '');
}

export function parseSubjectAltName(text: string): { type: SanType; value: string }[] {
  const entries: { type: SanType; value: string }[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const prefix = text.slice(i, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      end = closingQuote(text, colon + 1);
      if (end < 0) break;
      try {
        value = JSON.parse(text.slice(colon + 1, end + 1)) as string;
      } catch {
        break;
      }
      end += 1;
    } else {
      end = text.indexOf(', ', colon + 1);
      if (end < 0) end = text.length;
      value = text.slice(colon + 1, end);
    }
    const type = sanTypeByPrefix[prefix];
    if (type) entries.push({ type, value });
    if (text.startsWith(', ', end)) end += 2;
    else if (end < text.length) break;
    i = end;
  }
  return entries;
}

function closingQuote(text: string, open: number): number {
  for (let i = open + 1; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') return i;
  }
  return -1;
}

/**
 * self_signed_tls_client_auth (RFC 8705 §2.2): the certificate's public key is one the client
 * registered in `jwks` (RFC 7638 thumbprints compared), or the certificate is the first `x5c`
 * certificate of a registered key. Chain and validity period are not checked: the registration
 * of the key is the trust.
 */
export async function verifySelfSignedTlsClientAuth(client: Client, certificate: X509Certificate | undefined, clientKeys?: ClientKeySets): Promise<void> {
  const id = client.metadata.client_id;
  if (!certificate) {
    throw invalidClient(`client ${id} uses self_signed_tls_client_auth but presented no certificate`, 'a client certificate is required');
  }
  if (!client.metadata.jwks && !client.metadata.jwks_uri) throw invalidClient(`client ${id} has no registered jwks`);
  let presented: string | undefined;
  const matches = async (keys: RegisteredKey[]) => {
    if (keys.some((k) => k.x5c?.equals(certificate.raw))) return true;
    try {
      presented ??= await calculateJwkThumbprint(certificate.publicKey.export({ format: 'jwk' }) as JWK, 'sha256');
    } catch {
      throw invalidClient(`client ${id} presented a certificate with an unsupported key type (${certificate.publicKey.asymmetricKeyType})`);
    }
    for (const key of keys) if ((await key.thumbprint()) === presented) return true;
    return false;
  };
  if (!client.metadata.jwks_uri) {
    const keys = registeredKeys(client);
    if (await matches(keys)) return;
    throw invalidClient(`certificate key (jkt ${presented}) is not among client ${id}'s ${keys.length} registered keys`);
  }
  // A jwks_uri: the set as cached, then once more fetched (rate-limited) — the client may have rotated.
  if (!clientKeys) throw invalidClient(`client ${id} registered jwks_uri, but this server fetches no client keys`);
  let keys: RegisteredKey[] = [];
  for (const refresh of [false, true]) {
    const found = await clientKeys.get(client, { refresh });
    if ('error' in found) throw invalidClient(found.error);
    keys = found.keys;
    if (await matches(keys)) return;
    if (found.fetched) break;
  }
  throw invalidClient(`certificate key (jkt ${presented}) is not among the ${keys.length} keys at client ${id}'s jwks_uri`);
}
