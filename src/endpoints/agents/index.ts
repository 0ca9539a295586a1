import { jsonObjectBody, sendJson } from '../../http/json.ts';
import { OAuthError } from '../../oauth-error.ts';
import { AttestationRefusal, issueAttestationNonce } from '../../agents/attestation.ts';
import { issueAgentCertificate } from '../../agents/credentials.ts';
import { PkiError } from '../../pki/authority.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

const agentIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * An agent obtains its credential at run time (docs/agents.md "Attestation"):
 *
 *   POST /agents/{id}/nonce                          → {nonce, expires_in}: single use, five minutes
 *   POST /agents/{id}/certificate {attestation, csr} → 201 {serial, certificate, chain, not_after}
 *
 * No token: the attestation, signed by one of the agent's deployment pipelines for an approved
 * model version and binding the CSR's key, is the credential. Every refusal is 400 invalid_request
 * naming the rule (a declared agent's refusal is audited and alerts); an unknown agent is 404;
 * before `clearance ca init`, 503.
 */
export const agentCredentials: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/agents`;

    app.post<{ Params: { id: string } }>(`${base}/:id/nonce`, async (request, reply) => {
      const id = agentId(request.params.id);
      const { nonce, expiresAt } = await asOAuth(() => issueAttestationNonce(ctx, id));
      return sendJson(reply, { nonce, expires_in: Math.floor((expiresAt - ctx.clock.now()) / 1000) });
    });

    app.post<{ Params: { id: string } }>(`${base}/:id/certificate`, async (request, reply) => {
      const id = agentId(request.params.id);
      const { attestation, csr } = jsonObjectBody(request.body);
      const issued = await asOAuth(() => issueAgentCertificate(ctx, { agentId: id, attestation, csr, requestId: request.id }));
      return sendJson(
        reply,
        { status: 'issued', serial: issued.serial, profile: issued.profile, holder: issued.holder, not_after: new Date(issued.notAfter).toISOString(), certificate: issued.certificatePem, chain: issued.chainPem },
        { status: 201 },
      );
    });
  },
};

function agentId(id: string): string {
  if (!agentIdPattern.test(id)) throw new OAuthError('not_found', 'no such agent');
  return id;
}

async function asOAuth<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof AttestationRefusal) {
      if (error.code === 'unknown_agent') throw new OAuthError('not_found', error.message);
      throw new OAuthError('invalid_request', error.message);
    }
    if (error instanceof PkiError) throw new OAuthError('temporarily_unavailable', error.message, { status: 503 });
    throw error;
  }
}

