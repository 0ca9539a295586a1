/**
 * The floor of the `peer` scenario (bench/peer.ts): the least a Node server can do to answer the
 * m2m-private-key-jwt request — node:http, the form read, the client assertion's ES256 signature
 * verified with a key imported once, an ES256 access token signed and sent. No other check (no
 * expiry, audience or replay check on the assertion, no scope or resource rules), nothing stored,
 * nothing logged, no framework. Not a server anyone should run: a measure of what HTTP and the
 * crypto alone cost on this machine, which bounds what any server doing this request can reach.
 *
 * FLOOR_CRYPTO=sync (the default) signs and verifies on the event loop, as Clearance does;
 * FLOOR_CRYPTO=async on libuv's threadpool (node:crypto's callback form), as node-oidc-provider's
 * WebCrypto does, so the floor may use more than one core.
 *
 * Run as its own process (`node bench/floor-server.ts`), so its CPU is measured as the others' are.
 * Environment: FLOOR_PORT, FLOOR_ISSUER, FLOOR_CLIENT (JSON: client_id, public JWK, resource, scope, ttl).
 */
import { createPublicKey, generateKeyPairSync, randomUUID, sign, verify, type KeyObject } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import { rawToDer } from '../src/jose/signature.ts';
import { derToRaw } from '../src/keys/jws.ts';

const issuer = process.env.FLOOR_ISSUER!;
const port = Number(process.env.FLOOR_PORT);
const asynchronous = process.env.FLOOR_CRYPTO === 'async';
const client = JSON.parse(process.env.FLOOR_CLIENT!) as { client_id: string; jwk: Record<string, unknown>; resource: string; scope: string; ttl: number };
const clientKey = createPublicKey({ key: client.jwk as never, format: 'jwk' });
const { privateKey: signingKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwks = { keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'floor-1', alg: 'ES256', use: 'sig' }] };
const header = Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'at+jwt', kid: 'floor-1' })).toString('base64url');

// DER signatures with plain KeyObjects, converted to and from JOSE's R ‖ S: on Node 24 the
// fastest path, the one Clearance takes (src/jose/signature.ts, src/keys/jws.ts).
function es256Verify(data: Buffer, signature: Buffer, key: KeyObject): Promise<boolean> | boolean {
  if (signature.length !== 64) return false;
  const der = rawToDer(signature);
  if (!asynchronous) return verify('sha256', data, key, der);
  return new Promise((resolve, reject) => verify('sha256', data, key, der, (error, ok) => (error ? reject(error) : resolve(ok))));
}

function es256Sign(data: Buffer): Promise<Buffer> | Buffer {
  if (!asynchronous) return derToRaw(sign('sha256', data, signingKey), 32);
  return new Promise((resolve, reject) => sign('sha256', data, signingKey, (error, der) => (error ? reject(error) : resolve(derToRaw(der, 32)))));
}

function answer(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function token(body: string): Promise<Record<string, unknown> | undefined> {
  const form = new URLSearchParams(body);
  const assertion = form.get('client_assertion')?.split('.');
  if (form.get('grant_type') !== 'client_credentials' || assertion?.length !== 3) return undefined;
  const claims = JSON.parse(Buffer.from(assertion[1]!, 'base64url').toString()) as { sub?: string };
  if (claims.sub !== client.client_id) return undefined;
  if (!(await es256Verify(Buffer.from(`${assertion[0]}.${assertion[1]}`), Buffer.from(assertion[2]!, 'base64url'), clientKey))) return undefined;
  const now = Math.floor(Date.now() / 1000);
  const payload = { iss: issuer, sub: client.client_id, aud: client.resource, client_id: client.client_id, scope: form.get('scope') ?? client.scope, iat: now, exp: now + client.ttl, jti: randomUUID() };
  const input = `${header}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  const signature = await es256Sign(Buffer.from(input));
  return { access_token: `${input}.${signature.toString('base64url')}`, token_type: 'Bearer', expires_in: client.ttl, scope: payload.scope };
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    if (req.method === 'GET' && req.url === '/jwks') return answer(res, 200, jwks);
    if (req.method !== 'POST' || req.url !== '/token') return answer(res, 404, { error: 'not_found' });
    token(Buffer.concat(chunks).toString()).then(
      (issued) => (issued ? answer(res, 200, issued) : answer(res, 400, { error: 'invalid_client' })),
      () => answer(res, 400, { error: 'invalid_request' }),
    );
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => process.send?.('ready'));
process.on('SIGTERM', () => process.exit(0));
