import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import { readClientMetadata } from '../../src/clients/metadata.ts';
import { Validator } from '../../src/validation.ts';

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
});
