import assert from 'node:assert/strict';
import { X509Certificate, type webcrypto } from 'node:crypto';
import { test } from 'node:test';
import { pathToAnchor } from '../../src/certificates/path.ts';
import * as x509 from '../../src/pki/x509.ts';

// Path validation up to one trust anchor (RFC 5280 §6.1): Clearance builds the path itself, link by
// link, from certificates made here with @peculiar/x509 (names, keys, CA flags and dates chosen).

const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const hour = 3600_000;
const now = Date.now();

interface Made {
  node: X509Certificate;
  cert: x509.X509Certificate;
  keys: webcrypto.CryptoKeyPair;
}

let serial = 1;

/** A certificate of `subject`, signed by `issuer` (itself when absent), with these CA properties. */
async function make(
  subject: string,
  issuer: Made | undefined,
  options: { ca?: boolean; pathLength?: number; keyUsage?: number; from?: number; to?: number; keys?: webcrypto.CryptoKeyPair } = {},
): Promise<Made> {
  const keys = options.keys ?? ((await crypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair);
  const extensions: x509.Extension[] = [];
  if (options.ca !== undefined) extensions.push(new x509.BasicConstraintsExtension(options.ca, options.pathLength, true));
  if (options.keyUsage !== undefined) extensions.push(new x509.KeyUsagesExtension(options.keyUsage, true));
  extensions.push(await x509.SubjectKeyIdentifierExtension.create(keys.publicKey));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: (serial++).toString(16).padStart(4, '0'),
    subject,
    issuer: issuer ? issuer.cert.subject : subject,
    notBefore: new Date(now + (options.from ?? -hour)),
    notAfter: new Date(now + (options.to ?? 24 * hour)),
    publicKey: keys.publicKey,
    signingKey: (issuer?.keys ?? keys).privateKey,
    signingAlgorithm: algorithm,
    extensions,
  });
  return { node: new X509Certificate(Buffer.from(cert.rawData)), cert, keys };
}

const caUsage = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;
const ca = (subject: string, issuer?: Made, options: Parameters<typeof make>[2] = {}) => make(subject, issuer, { ca: true, keyUsage: caUsage, ...options });
const leaf = (subject: string, issuer: Made) => make(subject, issuer, { ca: false, keyUsage: x509.KeyUsageFlags.digitalSignature });

test('a certificate signed by the anchor itself ends at it', async () => {
  const root = await ca('CN=Bravo Root');
  const client = await leaf('CN=bravo-connector', root);
  const outcome = pathToAnchor(client.node, [root.node], [], now);
  assert.ok(outcome.ok);
  assert.deepEqual(outcome.path.map((c) => c.subject), ['CN=bravo-connector', 'CN=Bravo Root']);
});

test('a certificate under an intermediate ends at the anchor when the intermediate is offered, and not without it', async () => {
  const root = await ca('CN=Bravo Root');
  const issuing = await ca('CN=Bravo Issuing', root, { pathLength: 0 });
  const client = await leaf('CN=bravo-connector', issuing);
  const outcome = pathToAnchor(client.node, [root.node], [issuing.node], now);
  assert.ok(outcome.ok);
  assert.equal(outcome.path.length, 3);
  const without = pathToAnchor(client.node, [root.node], [], now);
  assert.equal(without.ok, false);
});

test('another CA’s certificate never ends at the anchor, whatever names it carries', async () => {
  const alpha = await ca('CN=Alpha Root');
  const bravo = await ca('CN=Bravo Root');
  const forged = await leaf('CN=bravo-connector', alpha);
  assert.equal(pathToAnchor(forged.node, [bravo.node], [alpha.node], now).ok, false);
  // Alpha names a CA of its own after Bravo's root: the name matches, the key does not.
  const lookalike = await ca('CN=Bravo Root', alpha);
  const underLookalike = await leaf('CN=bravo-connector', lookalike);
  const outcome = pathToAnchor(underLookalike.node, [bravo.node], [lookalike.node, alpha.node, bravo.node], now);
  assert.equal(outcome.ok, false);
});

test('the anchor is its name and key: a re-issued anchor certificate anchors as well', async () => {
  const root = await ca('CN=Bravo Root');
  const reissued = await ca('CN=Bravo Root', undefined, { keys: root.keys, to: 48 * hour });
  const client = await leaf('CN=bravo-connector', root);
  assert.ok(pathToAnchor(client.node, [reissued.node], [], now).ok);
});

test('an intermediate that is not a CA, may not sign certificates, or is expired breaks the path', async () => {
  const root = await ca('CN=Bravo Root');
  for (const [what, options, expected] of [
    ['no basicConstraints cA', { ca: false }, /not a CA certificate/],
    // OpenSSL's issuer check (node:crypto checkIssued) already passes over a key that may not sign certificates.
    ['no keyCertSign', { keyUsage: x509.KeyUsageFlags.digitalSignature }, /no chain from CN=bravo-connector/],
    ['expired', { from: -48 * hour, to: -hour }, /not valid now/],
  ] as const) {
    const issuing = await ca('CN=Bravo Issuing', root, options);
    const client = await leaf('CN=bravo-connector', issuing);
    const outcome = pathToAnchor(client.node, [root.node], [issuing.node], now);
    assert.equal(outcome.ok, false, what);
    assert.match((outcome as { detail: string }).detail, expected, what);
  }
});

test('a path length constraint is enforced, the anchor’s too', async () => {
  const root = await ca('CN=Bravo Root', undefined, { pathLength: 0 });
  const issuing = await ca('CN=Bravo Issuing', root);
  const client = await leaf('CN=bravo-connector', issuing);
  const outcome = pathToAnchor(client.node, [root.node], [issuing.node], now);
  assert.equal(outcome.ok, false);
  assert.match((outcome as { detail: string }).detail, /allows 0 intermediate CA certificates below it, the chain has 1/);

  const open = await ca('CN=Open Root', undefined, { pathLength: 1 });
  const first = await ca('CN=First', open, { pathLength: 0 });
  const second = await ca('CN=Second', first);
  const deep = await leaf('CN=deep', second);
  assert.equal(pathToAnchor(deep.node, [open.node], [first.node, second.node], now).ok, false);
  const shallow = await leaf('CN=shallow', first);
  assert.ok(pathToAnchor(shallow.node, [open.node], [first.node, second.node], now).ok);
});

test('the anchor’s own certificate is not a certificate under it', async () => {
  const root = await ca('CN=Bravo Root');
  const outcome = pathToAnchor(root.node, [root.node], [], now);
  assert.equal(outcome.ok, false);
  assert.match((outcome as { detail: string }).detail, /is the trust anchor itself/);
});

test('an anchor that is no longer valid anchors nothing', async () => {
  const root = await ca('CN=Bravo Root', undefined, { from: -48 * hour, to: -hour });
  const client = await leaf('CN=bravo-connector', root);
  const outcome = pathToAnchor(client.node, [root.node], [], now);
  assert.equal(outcome.ok, false);
  assert.match((outcome as { detail: string }).detail, /the anchor is not valid now/);
});

test('a chain padded with look-alike CA certificates is refused after a bounded search', async () => {
  const root = await ca('CN=Bravo Root');
  const keys = (await crypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  // Many self-issued CAs of one name and key: each verifies every other's signature.
  const seed = await ca('CN=Loop', undefined, { keys });
  const loops: X509Certificate[] = [seed.node];
  for (let i = 0; i < 24; i++) loops.push((await ca('CN=Loop', { ...seed }, { keys })).node);
  const client = await leaf('CN=looped', seed);
  const started = performance.now();
  const outcome = pathToAnchor(client.node, [root.node], loops, now);
  assert.equal(outcome.ok, false);
  assert.ok(performance.now() - started < 2000, 'the search is bounded');
});

test('a presented copy of the anchor (its name and key, signed by anyone) lends the path nothing: the configured anchor’s dates and path length hold', async () => {
  const attacker = (await crypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  /** A certificate with the anchor's name and public key, signed by the attacker: no pathLen, valid now. */
  const copyOf = async (anchor: Made) => {
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: (serial++).toString(16).padStart(4, '0'),
      subject: anchor.cert.subject,
      issuer: anchor.cert.subject,
      notBefore: new Date(now - hour),
      notAfter: new Date(now + 365 * 24 * hour),
      publicKey: anchor.keys.publicKey,
      signingKey: attacker.privateKey,
      signingAlgorithm: algorithm,
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(caUsage, true), await x509.SubjectKeyIdentifierExtension.create(anchor.keys.publicKey)],
    });
    return new X509Certificate(Buffer.from(cert.rawData));
  };

  // The configured anchor has expired: a fresh-dated copy in the chain does not revive it.
  const expired = await ca('CN=Bravo Root', undefined, { from: -48 * hour, to: -hour });
  const client = await leaf('CN=bravo-connector', expired);
  const revived = pathToAnchor(client.node, [expired.node], [await copyOf(expired)], now);
  assert.equal(revived.ok, false);
  assert.match((revived as { detail: string }).detail, /the anchor is not valid now/);

  // The configured anchor allows no intermediate: a copy without pathLenConstraint does not lift it.
  const strict = await ca('CN=Bravo Root', undefined, { pathLength: 0 });
  const issuing = await ca('CN=Bravo Issuing', strict);
  const below = await leaf('CN=bravo-connector', issuing);
  const lifted = pathToAnchor(below.node, [strict.node], [issuing.node, await copyOf(strict)], now);
  assert.equal(lifted.ok, false);
  assert.match((lifted as { detail: string }).detail, /allows 0 intermediate CA certificates below it, the chain has 1/);

  // A copy that agrees with the configured anchor links as it does, and the path ends at the configured certificate.
  const open = await ca('CN=Open Root');
  const direct = await leaf('CN=bravo-connector', open);
  const through = pathToAnchor(direct.node, [open.node], [await copyOf(open)], now);
  assert.ok(through.ok);
  assert.ok(through.path[1]!.raw.equals(open.node.raw), 'the configured anchor, not the presented copy');
});
