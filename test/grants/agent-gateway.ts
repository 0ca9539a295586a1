import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { TestContext } from 'node:test';
import { decodeJwt, exportJWK, generateKeyPair } from 'jose';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { decryptEventsUnaudited } from '../../src/audit/subject-keys.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { agentHarness, executionApi, ownerLei, v1 } from '../agents/fixture.ts';
import { basicAuthorization, formBody } from '../endpoints/fixture.ts';
import { applyDocument } from '../policy/fixture.ts';

/**
 * Agent algo-7 trading (an approved model version, an attested certificate, its token for the
 * execution API), and a gateway in front of it — another client holding the agent's key — that
 * exchanges the agent's tokens (RFC 8693): for a clearing API, and for JWT authorization grants
 * aimed at partner B's authorization server, whose profile allows grants of up to 300 s
 * (identity chaining, docs/federation.md). The gateway also gets tokens of its own for the clearing
 * API, which the agent may exchange too: the agent as the client of a grant.
 */

export const clearingApi = 'https://clearing.example.com/api';
export const partnerIssuer = 'https://b.clearance.test';
const exchangeGrant = 'urn:ietf:params:oauth:grant-type:token-exchange';
const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';
const jwtType = 'urn:ietf:params:oauth:token-type:jwt';

/** The declaration of algo-7 as the harness applies it, for a kill switch. */
export const algo7 = { id: 'algo-7', strategy: 'eu-rates-momentum', environment: 'production', owner_lei: ownerLei, desk: 'rates-eu', venues: ['XLON'], instrument_classes: ['bond'], notional_envelope: { max: 5_000_000, currency: 'EUR' }, pipelines: ['ci-main'] };

export async function agentGateway(t: TestContext) {
  const h = await agentHarness(t);
  const { request } = await h.propose(v1);
  assert.ok((await h.decide(request.id, 'mrisk')).ok);
  const { csr, attestation } = await h.attest(v1);
  const issued = await h.certificate(attestation, csr.csrPem);
  assert.equal(issued.statusCode, 201, issued.body);
  const certificate = issued.json().certificate as string;
  const tokenResponse = await h.token(certificate);
  assert.equal(tokenResponse.statusCode, 200, tokenResponse.body);
  const agentToken = tokenResponse.json().access_token as string;
  const partnerKey = await generateKeyPair('ES256', { extractable: true });
  const secrets = await applyDocument(h.ctx, {
    resource_servers: [
      { identifier: executionApi, scopes: ['order:create'], require_sender_constraint: true, exchange_clients: ['gateway'] },
      { identifier: clearingApi, scopes: ['order:create'], exchange_clients: ['algo-7'] },
      // B's authorization server: what the decision point decides a grant for it on.
      { identifier: partnerIssuer, name: 'Domain B', scopes: ['order:create'] },
    ],
    clients: [
      { client_id: 'gateway', kind: 'service', grant_types: [exchangeGrant, 'client_credentials'], scope: 'order:create' },
      { client_id: 'algo-7', kind: 'agent', owner_lei: ownerLei, token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_uri: 'spiffe://broker.example/agent/algo-7', grant_types: ['client_credentials', exchangeGrant], scope: 'order:create' },
    ],
    partners: [
      {
        id: 'clearance-b',
        issuer: partnerIssuer,
        jwks: { keys: [{ ...(await exportJWK(partnerKey.publicKey)), kid: 'b-1', alg: 'ES256', use: 'sig' }] },
        algorithms: ['ES256'],
        allowed_audiences: [],
        allowed_scopes: [],
        chaining: { clients: ['gateway', 'algo-7'], scopes: ['order:create'], subject: 'public', claims: ['act', 'txn'], lifetime: 300 },
      },
    ],
  });
  // The subject token is bound to the agent's certificate (RFC 8705): the gateway proves it holds its key.
  const certificateHeader = { 'x-client-cert': `:${new X509Certificate(certificate).raw.toString('base64')}:` };
  const headers = { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('gateway', secrets.gateway!), ...certificateHeader };
  const exchange = (form: Record<string, string>) => h.app.inject({ method: 'POST', url: '/token', headers, payload: formBody({ grant_type: exchangeGrant, subject_token_type: accessTokenType, ...form }) });
  const gatewayToken = await h.app.inject({ method: 'POST', url: '/token', headers, payload: formBody({ grant_type: 'client_credentials', scope: 'order:create', resource: clearingApi }) });
  assert.equal(gatewayToken.statusCode, 200, gatewayToken.body);
  return {
    ...h,
    agentToken,
    /** The agent's model version's approval, as its token names it. */
    approval: (decodeJwt(agentToken).agent as { approval: string }).approval,
    /** RFC 8693 by the gateway: `subjectToken` for an access token to the clearing API. */
    toClearing: (subjectToken: string) => exchange({ subject_token: subjectToken, resource: clearingApi }),
    /** RFC 8693 by the gateway: `subjectToken` for a JWT authorization grant aimed at B. */
    grantForPartner: (subjectToken: string) => exchange({ subject_token: subjectToken, requested_token_type: jwtType, audience: partnerIssuer }),
    /** The gateway's own token for the clearing API (no agent's). */
    gatewayToken: gatewayToken.json().access_token as string,
    /** RFC 8693 by the agent itself (tls_client_auth with its attested certificate): `subjectToken` for a grant aimed at B. */
    grantForPartnerByAgent: (subjectToken: string) =>
      h.app.inject({
        method: 'POST',
        url: '/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...certificateHeader },
        payload: formBody({ grant_type: exchangeGrant, client_id: 'algo-7', subject_token: subjectToken, subject_token_type: accessTokenType, requested_token_type: jwtType, audience: partnerIssuer }),
      }),
    async auditEvents(type: string): Promise<StoredAuditEvent[]> {
      const rows = await h.ctx.storage.db.selectFrom('audit_events').select(['event', 'seq']).where('type', '=', type).orderBy('seq').execute();
      return decryptEventsUnaudited(h.ctx.storage.db, resolveMasterKey(h.ctx.config).key, rows.map((r) => JSON.parse(r.event) as StoredAuditEvent));
    },
  };
}
