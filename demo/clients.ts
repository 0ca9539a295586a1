/**
 * How the demo's firms talk to Clearance: private_key_jwt client authentication (RFC 7523 §2.2)
 * and DPoP proofs (RFC 9449), made with jose. Nothing here is Clearance code: these are what each
 * firm's own systems would run.
 */
import { randomUUID } from 'node:crypto';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { traceContextHeaders } from 'clearance/guard';

export interface FirmClient {
  clientId: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function newClient(clientId: string): Promise<FirmClient> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  return { clientId, privateKey, publicJwk: await exportJWK(publicKey) };
}

/**
 * The demo's firm clients, and the public keys apply registers for them (demo/config.ts): four that
 * trade and govern, and two evidence producers — the broker's order management system and the
 * clearing firm's settlement system (docs/evidence.md).
 */
export async function newDemoClients() {
  const clients = {
    algo: await newClient('algo-7'),
    arranger: await newClient('arranger-backend'),
    broker: await newClient('broker-backend'),
    compliance: await newClient('compliance-console'),
    oms: await newClient('broker-oms'),
    settlement: await newClient('clearing-settlement'),
    // The clearing firm's back office: fetches the evidence of the trades it cleared (evidence:counterparty).
    backoffice: await newClient('clearing-backoffice'),
  };
  const keys = {
    'algo-7': clients.algo.publicJwk,
    'arranger-backend': clients.arranger.publicJwk,
    'broker-backend': clients.broker.publicJwk,
    'compliance-console': clients.compliance.publicJwk,
    'broker-oms': clients.oms.publicJwk,
    'clearing-settlement': clients.settlement.publicJwk,
    'clearing-backoffice': clients.backoffice.publicJwk,
  };
  return { clients, keys };
}

export interface TokenAnswer {
  status: number;
  body: Record<string, unknown>;
}

/**
 * POSTs a token request authenticated with a fresh client assertion; `dpop` adds a proof. It carries
 * the active trace context (`traceparent`, with tracing on: docs/observability.md), so a hop's token
 * exchange continues the trade's trace.
 */
export async function tokenRequest(issuer: string, client: FirmClient, form: Record<string, string>, dpop?: DpopKey): Promise<TokenAnswer> {
  const now = Math.floor(Date.now() / 1000);
  const assertion = await new SignJWT({ jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', kid: `${client.clientId}-1` })
    .setIssuer(client.clientId)
    .setSubject(client.clientId)
    .setAudience(issuer)
    .setIssuedAt(now)
    .setExpirationTime(now + 60)
    .sign(client.privateKey);
  const body = new URLSearchParams({ ...form, client_id: client.clientId, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion });
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', ...traceContextHeaders() };
  if (dpop) headers.dpop = await dpopProof(dpop, 'POST', `${issuer}/token`);
  const response = await fetch(`${issuer}/token`, { method: 'POST', headers, body });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

export interface DpopKey {
  privateKey: CryptoKey;
  jwk: JWK;
  jkt: string;
}

export async function newDpopKey(): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = await exportJWK(publicKey);
  return { privateKey, jwk, jkt: await calculateJwkThumbprint(jwk) };
}

/** A DPoP proof for one request; with `accessToken`, its `ath`. */
export async function dpopProof(key: DpopKey, method: string, url: string, accessToken?: string): Promise<string> {
  const claims: Record<string, unknown> = { htm: method, htu: url, jti: randomUUID() };
  if (accessToken) {
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(accessToken)));
    claims.ath = Buffer.from(digest).toString('base64url');
  }
  return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.jwk }).setIssuedAt().sign(key.privateKey);
}
