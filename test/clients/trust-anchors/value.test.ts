import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import { readClientMetadata } from '../../../src/clients/metadata.ts';
import { parseAnchorValue } from '../../../src/clients/trust-anchors/value.ts';
import { formatProblem, Validator } from '../../../src/validation.ts';
import { makePki } from '../../helpers/pki.ts';

// The forms of tls_client_auth_trust_anchor, and the metadata rules around it.

const connector = {
  client_id: 'bravo-connector',
  token_endpoint_auth_method: 'tls_client_auth',
  tls_client_auth_subject_dn: 'CN=bravo-connector,O=Bravo,C=GB',
  grant_types: ['client_credentials'],
  owner_lei: '5493001KJTIIGC8Y1R12',
};

function problems(metadata: Record<string, unknown>, options: { institutional?: boolean } = {}): string[] {
  const v = new Validator();
  readClientMetadata(v, 'clients[0]', metadata, options);
  return v.problems.map(formatProblem);
}

test('reads a named partner anchor, a thumbprint in hex (colons optional) or base64url, a PEM CA certificate, and clearance', (t) => {
  const pki = makePki(t);
  assert.deepEqual(parseAnchorValue('partner:bravo/mtls-root'), { kind: 'partner', partner: 'bravo', name: 'mtls-root' });
  const hex = 'AB:'.repeat(31) + 'AB';
  assert.deepEqual(parseAnchorValue(hex), { kind: 'thumbprint', sha256: 'ab'.repeat(32) });
  assert.deepEqual(parseAnchorValue('ab'.repeat(32)), { kind: 'thumbprint', sha256: 'ab'.repeat(32) });
  assert.deepEqual(parseAnchorValue(Buffer.alloc(32, 0xab).toString('base64url')), { kind: 'thumbprint', sha256: 'ab'.repeat(32) });
  const pem = parseAnchorValue(pki.ca.cert);
  assert.equal('kind' in pem && pem.kind, 'certificate');
  assert.deepEqual(parseAnchorValue('clearance'), { kind: 'clearance' });
});

test('refuses anything else with a sentence saying what is expected', (t) => {
  const pki = makePki(t);
  const client = pki.issueClient('leaf', '/CN=leaf');
  for (const [value, expected] of [
    ['partner:bravo', /partner:<partner id>\/<anchor name>/],
    ['partner:bravo/Not_A_Name', /is not an anchor name/],
    ['AB:CD', /SHA-256 thumbprint/],
    ['zz'.repeat(32), /SHA-256 thumbprint/],
    [client.cert, /not a CA certificate/],
    [pki.ca.cert + pki.ca.cert, /exactly one PEM certificate/],
    ['-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----', /cannot be read/],
  ] as const) {
    const parsed = parseAnchorValue(value);
    assert.ok('error' in parsed, value);
    assert.match(parsed.error, expected);
  }
});

test('client metadata takes the anchor only with tls_client_auth, and stores a PEM re-encoded', (t) => {
  const pki = makePki(t);
  assert.deepEqual(problems({ ...connector, tls_client_auth_trust_anchor: 'partner:bravo/mtls' }), []);
  const v = new Validator();
  const read = readClientMetadata(v, 'c', { ...connector, tls_client_auth_trust_anchor: `\n${pki.ca.cert}\n` });
  assert.ok(read?.tls_client_auth_trust_anchor?.startsWith('-----BEGIN CERTIFICATE-----'));
  const selfSigned = { client_id: 'bot', token_endpoint_auth_method: 'self_signed_tls_client_auth', jwks: { keys: [new X509Certificate(pki.selfSigned('bot', '/CN=bot').cert).publicKey.export({ format: 'jwk' })] }, grant_types: ['client_credentials'] };
  assert.match(problems({ ...selfSigned, tls_client_auth_trust_anchor: 'clearance' }).join('\n'), /tls_client_auth_trust_anchor: applies only to tls_client_auth/);
  assert.match(problems({ ...connector, tls_client_auth_trust_anchor: 'nonsense' }).join('\n'), /clients\[0\]\.tls_client_auth_trust_anchor: must be partner:/);
});

test('under the institutional profile a tls_client_auth client must name its trust anchor', () => {
  assert.match(problems(connector, { institutional: true }).join('\n'), /tls_client_auth_trust_anchor: is required for tls_client_auth under the institutional profile/);
  assert.deepEqual(problems({ ...connector, tls_client_auth_trust_anchor: 'clearance' }, { institutional: true }), []);
  assert.deepEqual(problems(connector), []);
});
