import type { FastifyInstance, FastifyRequest } from 'fastify';
import { adminOperation } from '../../admin/authorize.ts';
import type { Context } from '../../context.ts';
import { objectBody, pathParams, text } from '../../http/api-operation.ts';
import { jsonObjectBody, sendJson } from '../../http/json.ts';
import { findUser } from '../../identity/users.ts';
import { KeyRevocationError, maxReasonLength, reasonProblem, revocableKey, revokeCompromisedKey, type CompromiseReport } from '../../keys/compromise.ts';
import { keyCompromiseRole, KeyRevocationPending, requestKeyRevocation } from '../../keys/compromise-request.ts';
import { grantProblem, presentedTokenKid, signerProblem } from '../../keys/compromise-signer.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath } from '../endpoint.ts';

/** A kid of ours is an RFC 7638 thumbprint (43 base64url characters); anything unlike one is no key. */
const kidPattern = /^[A-Za-z0-9_-]{1,128}$/;

/** What the emergency path is, for a caller who did not say `compromised: true`. */
export const emergencyPathNotice =
  'revoke is the emergency path for a compromised signing key: it removes the key from the JWKS on every node at once, ' +
  'ends every token it signed and the refresh tokens issued with them, and makes the next key sign now. ' +
  'Send {"compromised": true, "reason": "…"} to confirm; to remove an old key in the ordinary way, let the key schedule retire it (or clearance keys retire).';

/**
 * POST <issuer>/admin/keys/{kid}/revoke (admin:write) `{ "compromised": true, "reason": "…" }`: revokes
 * a token-signing key as compromised (docs/keys.md "Token-signing keys: compromise"). The rules, in
 * order:
 * 1. requireAdmin (a live admin token with admin:write), then the body: `compromised: true` (else
 *    400 naming the emergency path), a reason of 1 to 500 characters that the audit log will take
 *    (no JWT, PEM block or reference token: 400 before anything is written);
 * 2. the key: unknown → 404; retired or already compromised → 409;
 * 3. the token vouches for its holder (src/keys/compromise-signer.ts), else 403: it was not signed
 *    by a compromised key nor by another key whose revocation waits (the key being revoked may
 *    have signed it: asking to end a key is the safe direction, and a forger can only end the key
 *    they stole); a person's token's grant is theirs;
 * 4. who asks:
 *    - a token of an emergency account under a break-glass activation in force (the liveness rule
 *      already refused one whose activation ended): revoked at once, 200 with what it ended;
 *    - a person's own token (not a delegate's), the person active and holding `admin`: 202 with an
 *      approval request of kind `key_compromise` that one more `admin` person approves (never the
 *      requester, src/approvals/requests.ts) — the approval revokes the key;
 *    - a client's own token: the same, with two approvals;
 *    409 while a revocation of the key waits for approval.
 */
export function registerKeyRevocation(app: FastifyInstance, ctx: Context): void {
  app.post<{ Params: { kid: string } }>(
    `${issuerPath(ctx.config.issuer)}/admin/keys/:kid/revoke`,
    adminOperation(ctx, 'admin:write', {
      tag: 'directory',
      summary: 'Revoke a compromised token-signing key',
      description:
        'The emergency path: out of the JWKS on every node at once, every token it signed dead, the refresh tokens issued with them revoked, the next key signing now. ' +
        "At once with a break-glass activation's token; otherwise 202 with an approval request that a second person holding admin approves (two for a client's own token).",
      params: pathParams({ kid: "the key's kid" }),
      body: objectBody(
        {
          compromised: { type: 'boolean', description: 'must be true: this is the emergency path' },
          reason: text('why the key is taken to be compromised (required)', maxReasonLength),
        },
        // Both are checked by the handler, so a body without `compromised` is told what the path is.
        [],
      ),
      success: { status: 200, description: 'Revoked (break-glass); 202 when it waits for approval' },
    }),
    async (request, reply) => {
      const reason = readBody(request.body);
      const kid = request.params.kid;
      if (!kidPattern.test(kid)) throw new OAuthError('not_found', 'no signing key with this kid');
      const claims = request.admin!;
      await asOAuth(() => revocableKey(ctx, kid));
      const breakGlass = typeof claims.break_glass_activation === 'string' && claims.break_glass === true;
      // What vouches for this token (src/keys/compromise-signer.ts): never a key in doubt.
      const signer = await signerProblem(ctx, presentedTokenKid(request.headers.authorization), kid, { sameKeyAllowed: true });
      if (signer) throw new OAuthError('access_denied', `${signer}; ${signerAdvice}`);
      if (breakGlass) {
        const report = await asOAuth(() =>
          revokeCompromisedKey(ctx, { kid, reason, requestId: request.id, authority: { via: 'break_glass', client: claims.client_id, activation: claims.break_glass_activation! } }),
        );
        return sendJson(reply, reportJson(report));
      }
      const requester = await requesterOf(ctx, request);
      const opened = await asOAuth(() => requestKeyRevocation(ctx, { kid, reason, ...requester, requestId: request.id }));
      return sendJson(
        reply,
        { kid, revoke_request: opened.id, status: opened.status, required_approvals: opened.requiredApprovals, expires_at: new Date(opened.expiresAt).toISOString() },
        { status: 202 },
      );
    },
  );
}

/** What to do instead when the token cannot vouch. */
export const signerAdvice = 'revoke it with clearance keys revoke KID --compromised on a server, or with a token a key not in doubt signed';

/** `{compromised: true, reason}`: the reason, or 400. */
function readBody(body: unknown): string {
  const o = jsonObjectBody(body);
  const unknown = Object.keys(o).filter((k) => k !== 'compromised' && k !== 'reason');
  if (unknown.length > 0) throw new OAuthError('invalid_request', `unknown member ${unknown[0]!.slice(0, 40)}`);
  if (o.compromised !== true) throw new OAuthError('invalid_request', emergencyPathNotice);
  if (typeof o.reason !== 'string' || o.reason.trim().length === 0) throw new OAuthError('invalid_request', 'reason is required: why the key is taken to be compromised');
  const reason = o.reason.trim();
  // Before anything is written: the audit log refuses a pasted token or key, which would otherwise
  // roll the revocation back with a 500 in the middle of an emergency.
  const problem = reasonProblem(reason);
  if (problem) throw new OAuthError('invalid_request', problem);
  return reason;
}

/** Who asks for an approval: a person holding admin with their own token, or a client on its own. */
async function requesterOf(ctx: Context, request: FastifyRequest): Promise<{ requester: string; requesterType: 'user' | 'client' }> {
  const claims = request.admin!;
  if (claims.grant_id === undefined) return { requester: claims.client_id, requesterType: 'client' };
  if (claims.act !== undefined) throw new OAuthError('access_denied', 'a delegate never asks to revoke a signing key for someone');
  const person = await findUser(ctx, claims.sub);
  if (!person || person.status !== 'active' || !person.roles.includes(keyCompromiseRole)) {
    throw new OAuthError('access_denied', `only a person holding ${keyCompromiseRole} asks to revoke a signing key`);
  }
  const grant = await grantProblem(ctx, claims.grant_id, person.id);
  if (grant) throw new OAuthError('access_denied', grant);
  return { requester: person.id, requesterType: 'user' };
}

/** A key module's refusal as the API's: 404 for an unknown key, 409 for one already out of the JWKS or already asked for. */
async function asOAuth<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof KeyRevocationError) {
      if (error.code === 'unknown') throw new OAuthError('not_found', error.message);
      if (error.code === 'reason') throw new OAuthError('invalid_request', error.message);
      throw new OAuthError('invalid_request', error.message, { status: 409 });
    }
    if (error instanceof KeyRevocationPending) throw new OAuthError('invalid_request', error.message, { status: 409 });
    throw error;
  }
}

/** What the API says of a revocation done. */
export function reportJson(report: CompromiseReport): Record<string, unknown> {
  return {
    kid: report.kid,
    state: 'compromised',
    previous_state: report.previousState,
    promoted_kid: report.promoted?.kid ?? null,
    ...(report.promoted ? { promoted: report.promoted.how } : {}),
    access_tokens_ended_at_most: report.accessTokensEndedAtMost,
    refresh_tokens_revoked: report.refreshTokensRevoked,
    refresh_families_revoked: report.refreshFamiliesRevoked,
    revoked_at: new Date(report.at).toISOString(),
  };
}
