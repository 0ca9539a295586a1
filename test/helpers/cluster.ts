import { randomUUID, type KeyObject } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { signCompact } from '../../src/keys/jws.ts';

/** Live processes whose parent is `pid` (a primary's workers), from /proc. */
export function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const fields = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]!.split(' ');
      if (Number(fields[1]) === pid && fields[0] !== 'Z') children.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

/**
 * A client_credentials request body with a fresh ES256 client assertion (RFC 7523 §2.2) of
 * `clientId`, signed with its key (`kid`, default `<clientId>-1`), for `resource`.
 */
export function clientCredentialsRequest(options: { issuer: string; clientId: string; key: KeyObject; kid?: string; resource: string; scope?: string }): string {
  const { issuer, clientId, key, kid = `${clientId}-1`, resource, scope = 'order:create' } = options;
  const now = Math.floor(Date.now() / 1000);
  const assertion = signCompact('ES256', key, { typ: 'JWT', kid }, { iss: clientId, sub: clientId, aud: issuer, iat: now, exp: now + 120, jti: randomUUID() });
  return new URLSearchParams({
    grant_type: 'client_credentials',
    scope,
    resource,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
  }).toString();
}
