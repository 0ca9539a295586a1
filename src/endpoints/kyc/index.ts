import { OAuthError } from '../../oauth-error.ts';
import { KycConflict } from '../../risk/kyc/changes.ts';
import { KycWebhookRefused, receiveKycWebhook, type WebhookRefusal } from '../../risk/kyc/webhook.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * POST /kyc/webhooks/{provider} (docs/risk.md "KYC/AML lifecycle"): a KYC provider's signed event
 * changing one record (src/risk/kyc/webhook.ts has the rules). The body is read as the exact bytes
 * received (the signature covers them): `application/json` for hmac providers, a compact JWS
 * (`application/jose`) for jws providers. Answers:
 * - 200 `{ status, version, changed }`: applied (or nothing to change);
 * - 401 invalid_request: an unknown provider, a signature that does not verify, or a timestamp
 *   outside the tolerance (no detail tells these apart);
 * - 409 invalid_request: a webhook id received already (a replay: nothing changes), or the record
 *   changed meanwhile (send again with a new id);
 * - 400 invalid_request: a signed event that is not valid; 404 not_found: it names nobody known.
 * Refusals are logged with the provider and reason, not audited (anyone can send them).
 */
const statusOf: Record<WebhookRefusal, { error: string; status: number }> = {
  unknown_provider: { error: 'invalid_request', status: 401 },
  signature: { error: 'invalid_request', status: 401 },
  timestamp: { error: 'invalid_request', status: 401 },
  replay: { error: 'invalid_request', status: 409 },
  malformed: { error: 'invalid_request', status: 400 },
  unknown_principal: { error: 'not_found', status: 404 },
};

export const kycWebhooks: Endpoint = {
  register(app, ctx) {
    const path = `${issuerPath(ctx.config.issuer)}/kyc/webhooks/:provider`;
    // Its own scope, so the raw body parsers apply to this route alone.
    app.register(async (scope) => {
      scope.removeContentTypeParser(['application/json']);
      scope.addContentTypeParser(['application/json', 'application/jose', 'application/jwt'], { parseAs: 'string' }, (_request, body, done) => done(null, body));
      scope.post<{ Params: { provider: string } }>(path, async (request) => {
        if (typeof request.body !== 'string') throw new OAuthError('invalid_request', 'the body must be application/json (hmac) or a compact JWS, application/jose (jws)', { status: 415 });
        const header = (name: string) => {
          const value = request.headers[name];
          return typeof value === 'string' ? value : undefined;
        };
        try {
          const received = await receiveKycWebhook(ctx, {
            provider: request.params.provider,
            headers: { ...opt('id', header('webhook-id')), ...opt('timestamp', header('webhook-timestamp')), ...opt('signature', header('webhook-signature')) },
            body: request.body,
            requestId: request.id,
          });
          return { status: received.record.status, version: received.record.version, changed: received.changed };
        } catch (error) {
          if (error instanceof KycWebhookRefused) {
            ctx.log.warn({ provider: request.params.provider.slice(0, 64), reason: error.reason }, 'KYC webhook refused');
            const { error: code, status } = statusOf[error.reason];
            // An unknown provider reads as a bad signature: nothing tells which providers exist.
            const description = error.reason === 'unknown_provider' ? 'the webhook signature does not verify' : error.message;
            throw new OAuthError(code, description, { status });
          }
          if (error instanceof KycConflict) throw new OAuthError('invalid_request', 'the KYC record changed meanwhile: send the event again with a new webhook id', { status: 409 });
          throw error;
        }
      });
    });
  },
};

function opt<K extends string>(key: K, value: string | undefined): Partial<Record<K, string>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, string>);
}
