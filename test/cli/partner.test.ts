import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { loadConfig } from '../../src/config.ts';
import { cliWorkspace } from '../helpers/cli.ts';

/**
 * A partner authorization server on 127.0.0.1 serving its metadata and JWKS, a data directory with
 * resource servers, a client and partner profiles applied, and a signing key of the partner's.
 */
async function setup(t: TestContext, options: { metadataIssuer?: string } = {}) {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'acme-2025', use: 'sig' };
  const requests: string[] = [];
  const server = createServer((request, response) => {
    requests.push(request.url ?? '');
    response.setHeader('content-type', 'application/json');
    if (request.url === '/.well-known/openid-configuration') {
      response.end(JSON.stringify({ issuer: options.metadataIssuer ?? partnerIssuer, jwks_uri: `${partnerIssuer}/jwks` }));
    } else if (request.url === '/jwks') {
      response.end(JSON.stringify({ keys: [jwk] }));
    } else {
      response.statusCode = 404;
      response.end('{}');
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  const partnerIssuer = `http://127.0.0.1:${port}`;

  const { dir, env, run } = cliWorkspace(t, 'clearance-cli-partner-');
  const partner = {
    issuer: partnerIssuer,
    jwks_uri: `${partnerIssuer}/jwks`,
    allow_private_network: true,
    algorithms: ['ES256'],
    required_claims: ['org_lei'],
    claim_mapping: { lei: 'org_lei' },
    allowed_audiences: ['https://orders.example.com'],
    allowed_scopes: ['order:create'],
    clients: ['gateway'],
  };
  const document = {
    resource_servers: [{ identifier: 'https://orders.example.com', scopes: ['order:create'] }],
    clients: [{ client_id: 'gateway', grant_types: ['client_credentials'], scope: 'order:create' }],
    partners: [
      { id: 'acme', ...partner },
      // Also allows PS256, for which the partner publishes no key.
      { id: 'acme-rsa', ...partner, issuer: `${partnerIssuer}/rsa`, algorithms: ['ES256', 'PS256'] },
      // The same server named by an https URL, without allow_private_network: a loopback address is refused.
      { id: 'acme-strict', ...partner, issuer: `https://127.0.0.1:${port}`, jwks_uri: `https://127.0.0.1:${port}/jwks`, allow_private_network: false },
    ],
  };
  const file = join(dir, 'partners.json');
  writeFileSync(file, JSON.stringify(document));
  const applied = await run('apply', '-f', file);
  assert.equal(applied.code, 0, applied.err);

  const ourIssuer = loadConfig(env).issuer;
  const assertion = async (claims: Record<string, unknown> = {}) => {
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ iss: partnerIssuer, sub: 'trader-7', aud: ourIssuer, iat: now, exp: now + 120, jti: randomUUID(), org_lei: '5493001KJTIIGC8Y1R12', ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: 'acme-2025' })
      .sign(privateKey);
    const path = join(dir, `assertion-${randomUUID()}.jwt`);
    writeFileSync(path, `${token}\n`);
    return path;
  };
  return { run, assertion, requests, partnerIssuer };
}

describe('clearance partner check', () => {
  test('passes every rule of a profile whose partner serves matching metadata and keys', async (t) => {
    const { run, requests } = await setup(t);
    const result = await run('partner', 'check', 'acme');
    assert.equal(result.code, 0, result.out);
    for (const line of [
      /^pass  issuer well-formed: http:\/\/127\.0\.0\.1:\d+ \(http to a loopback host: allow_private_network\)$/m,
      /^pass  metadata issuer: http:\/\/127\.0\.0\.1:\d+\/\.well-known\/openid-configuration names issuer/m,
      /^pass  metadata jwks_uri: the profile's jwks_uri is the one the partner publishes$/m,
      /^pass  keys reachable: fetched http:\/\/127\.0\.0\.1:\d+\/jwks$/m,
      /^pass  keys public: 1 key\(s\), no private members$/m,
      /^pass  algorithm ES256: 1 key\(s\) of its type$/m,
      /^pass  allowed audience: https:\/\/orders\.example\.com exists$/m,
      /^pass  allowed scope: order:create \(accepted by https:\/\/orders\.example\.com\)$/m,
      /^pass  client: gateway exists$/m,
      /^every rule passes$/m,
    ]) {
      assert.match(result.out, line);
    }
    assert.doesNotMatch(result.out, /^fail/m);
    assert.ok(requests.includes('/.well-known/openid-configuration') && requests.includes('/jwks'));
  });

  test('verifies an assertion rule by rule', async (t) => {
    const { run, assertion } = await setup(t);
    const good = await run('partner', 'check', 'acme', '--assertion', await assertion());
    assert.equal(good.code, 0, good.out);
    assert.match(good.out, /^assertion .* as jwt$/m);
    for (const rule of ['format', 'issuer', 'algorithm', 'key', 'signature', 'expiry', 'lifetime', 'audience', 'required claims', 'claim mapping', 'jti']) {
      assert.match(good.out, new RegExp(`^pass  ${rule}: `, 'm'), rule);
    }
    assert.match(good.out, /^pass  jti: .* \(checked, not recorded\)$/m);

    const bad = await run('partner', 'check', 'acme', '--assertion', await assertion({ aud: 'https://elsewhere.example', exp: Math.floor(Date.now() / 1000) + 3600, org_lei: undefined }));
    assert.equal(bad.code, 1);
    assert.match(bad.out, /^pass  signature: verified/m);
    assert.match(bad.out, /^fail  lifetime: assertion lifetime 3600 s exceeds the profile's 300 s$/m);
    assert.match(bad.out, /^fail  audience: audience https:\/\/elsewhere\.example is not ours/m);
    assert.match(bad.out, /^fail  required claims: missing required claim org_lei$/m);
    assert.match(bad.out, /^3 rule\(s\) fail$/m);
  });

  test('fails a profile whose algorithm has no key, whose metadata names another issuer, or whose keys are on a refused address', async (t) => {
    const { run } = await setup(t, { metadataIssuer: 'https://impostor.example' });
    const rsa = await run('partner', 'check', 'acme-rsa');
    assert.equal(rsa.code, 1);
    assert.match(rsa.out, /^pass  algorithm ES256/m);
    assert.match(rsa.out, /^fail  algorithm PS256: no key verifies PS256 \(keys: EC P-256\)$/m);

    const acme = await run('partner', 'check', 'acme');
    assert.equal(acme.code, 1);
    assert.match(acme.out, /^fail  metadata issuer: .* names issuer "https:\/\/impostor\.example", not http:\/\/127\.0\.0\.1:\d+$/m);

    const strict = await run('partner', 'check', 'acme-strict');
    assert.equal(strict.code, 1);
    assert.match(strict.out, /^note  metadata: none found \(.*a loopback address; the partner profile does not allow the private network.*\); not required$/m);
    assert.match(strict.out, /^fail  keys reachable: 127\.0\.0\.1, a loopback address; the partner profile does not allow the private network \(allow_private_network\)$/m);
    assert.match(strict.out, /^skip  algorithm ES256: needs the keys$/m);
  });

  test('exits 1 for an unknown partner and 2 for wrong usage; --help describes the command', async (t) => {
    const { run } = await setup(t);
    const unknown = await run('partner', 'check', 'nobody');
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /^no partner "nobody"/);
    assert.equal((await run('partner', 'check')).code, 2);
    assert.equal((await run('partner', 'check', 'acme', '--kind', 'saml')).code, 2);
    const help = await run('partner', '--help');
    assert.equal(help.code, 0);
    assert.match(help.out, /^Usage: clearance partner check ID \[--assertion FILE/);
    assert.match((await run('--help')).out, /^ {2}partner check\|list\|status\|approve\n {24}check a federated partner/m);
    assert.match(help.out, /^approve  re-approves partner ID/m);
    const list = await run('partner', 'list');
    assert.equal(list.code, 0);
    assert.match(list.out, /^acme  http:\/\/127\.0\.0\.1:\d+  http:\/\/127\.0\.0\.1:\d+\/jwks  \[https:\/\/orders\.example\.com\]  unchecked$/m);
  });
});
