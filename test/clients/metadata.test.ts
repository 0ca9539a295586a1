import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import { readClientMetadata } from '../../src/clients/metadata.ts';
import { Validator } from '../../src/validation.ts';
import { makeCertificate } from './authentication/fixture.ts';

const ecKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }) as Record<string, string>;
const edKey = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' }) as Record<string, string>;

/** The problems readClientMetadata finds in a private_key_jwt client holding `keys`. */
function problemsWithKeys(keys: unknown[]): string[] {
  const v = new Validator();
  readClientMetadata(v, 'client', { client_id: 'oms', token_endpoint_auth_method: 'private_key_jwt', grant_types: ['client_credentials'], jwks: { keys } });
  return v.problems.map((p) => `${p.path}: ${p.message}`);
}

describe("a client's registered jwks", () => {
  test('takes public keys that import, with or without a kid', () => {
    assert.deepEqual(problemsWithKeys([{ ...ecKey, kid: 'oms-1' }, edKey]), []);
  });

  test('refuses a key that cannot be imported, naming it (RFC 7591 §3.2.2: invalid metadata)', () => {
    assert.deepEqual(problemsWithKeys([ecKey, { ...ecKey, y: ecKey.x }]), ['client.jwks.keys[1]: must be a valid public key: it cannot be imported (Invalid JWK EC key)']);
    assert.deepEqual(problemsWithKeys([{ ...ecKey, x: 'AAAA' }]), ['client.jwks.keys[0]: must be a valid public key: it cannot be imported (Invalid JWK EC key)']);
    assert.deepEqual(problemsWithKeys([{ ...edKey, x: 'AAAA' }]), ['client.jwks.keys[0]: must be a valid public key: it cannot be imported (Invalid JWK OKP key)']);
    assert.deepEqual(problemsWithKeys([{ kty: 'RSA', n: Buffer.alloc(256, 0xc5).toString('base64url') }]), ['client.jwks.keys[0]: must be a valid public key: it cannot be imported (Invalid JWK RSA key)']);
  });

  test('refuses a kid that is not a non-empty string (RFC 7517 §4.5)', () => {
    assert.deepEqual(problemsWithKeys([{ ...ecKey, kid: 7 }]), ['client.jwks.keys[0].kid: must be a non-empty string']);
    assert.deepEqual(problemsWithKeys([{ ...ecKey, kid: '' }]), ['client.jwks.keys[0].kid: must be a non-empty string']);
  });

  test('still refuses a private key before trying to import it', () => {
    assert.deepEqual(problemsWithKeys([{ ...ecKey, d: 'c2VjcmV0' }]), ['client.jwks.keys[0]: must be a public key (has private member "d")']);
  });

  test("takes an x5c chain whose first certificate holds the key's own public key (RFC 7517 §4.7)", () => {
    const own = makeCertificate({ subject: '/CN=algo-7' });
    const jwk = own.certificate.publicKey.export({ format: 'jwk' }) as Record<string, unknown>;
    const issuer = makeCertificate({ subject: '/CN=desk CA' });
    const chain = [own.certificate.raw.toString('base64'), issuer.certificate.raw.toString('base64')];
    assert.deepEqual(problemsWithKeys([{ ...jwk, x5c: chain }]), []);
  });

  test('refuses an x5c whose first certificate holds another key: that certificate would authenticate the client as it is', () => {
    const other = makeCertificate({ subject: '/CN=someone else' });
    assert.deepEqual(problemsWithKeys([{ ...ecKey, x5c: [other.certificate.raw.toString('base64')] }]), [
      'client.jwks.keys[0].x5c[0]: must hold the key the JWK gives (RFC 7517 §4.7)',
    ]);
  });

  test('refuses an x5c that is not certificates in standard base64', () => {
    const own = makeCertificate({ subject: '/CN=algo-7' });
    const jwk = own.certificate.publicKey.export({ format: 'jwk' }) as Record<string, unknown>;
    const der = own.certificate.raw;
    assert.deepEqual(problemsWithKeys([{ ...jwk, x5c: der.toString('base64') }]), ['client.jwks.keys[0].x5c: must be a non-empty array of base64 DER certificates']);
    assert.deepEqual(problemsWithKeys([{ ...jwk, x5c: [] }]), ['client.jwks.keys[0].x5c: must be a non-empty array of base64 DER certificates']);
    const url = der.toString('base64url');
    assert.match(url, /[-_]/, 'this certificate reads differently in base64url');
    assert.deepEqual(problemsWithKeys([{ ...jwk, x5c: [url] }]), ['client.jwks.keys[0].x5c[0]: must be a certificate in standard base64 (not base64url)']);
    assert.deepEqual(problemsWithKeys([{ ...jwk, x5c: [der.toString('base64'), Buffer.from('not a certificate').toString('base64')] }]), [
      'client.jwks.keys[0].x5c[1]: is not a DER certificate',
    ]);
    assert.deepEqual(problemsWithKeys([{ ...jwk, x5c: [Buffer.from(own.certificate.toString()).toString('base64')] }]), ['client.jwks.keys[0].x5c[0]: is not a DER certificate'], 'PEM is not DER');
  });
});
