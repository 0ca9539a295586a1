import { adminOperation } from '../../admin/authorize.ts';
import type { Context } from '../../context.ts';
import { checkPartnerProfile } from '../../federation/check.ts';
import { approvePartner, PartnerApprovalRefused } from '../../federation/drift/approve.ts';
import { driftView } from '../../federation/drift/view.ts';
import { pathParams } from '../../http/api-operation.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { trustChangePerson, type TrustChange } from './step-up.ts';

/**
 * The admin API of partner drift (src/federation/drift, docs/federation.md "Drift"), authorized
 * like the rest of the admin API:
 *
 * - GET /admin/partners/{id}/drift (admin:read): the partner's status (`active`, `suspended` and
 *   why), its baseline (key thumbprints and kids, metadata issuer and digest), the last successful
 *   check, an outage in progress and the next check; `status: unchecked` before the first check.
 * - GET /admin/partners/{id}/check (admin:write): `clearance partner check` — the profile against
 *   the world (issuer, metadata, keys fetched with the SSRF rules of src/federation/fetch.ts,
 *   algorithms, audiences, clients), a line per rule with `pass`, `fail`, `skip` or `note`, and `ok`
 *   when none failed. It changes nothing here, but it sends requests from Clearance's network to
 *   the partner's servers: an act, not a read, so a read token (admin:read) sets off none (403).
 * - POST /admin/partners/{id}/approve (admin:write): re-approves the partner — its keys and
 *   metadata as they are now become the baseline and a suspension ends (`partner.reapproved`):
 *   Clearance trusts the keys the partner publishes now. So only a person with their own token
 *   (403 access_denied for a client's own or a delegate's; the operator's CLI `clearance partner
 *   approve` stays), signed in phishing-resistantly in the last 5 minutes, else 401
 *   insufficient_user_authentication with acr_values and max_age (RFC 9470 §3; ./step-up.ts
 *   trustChangePerson); each refused caller recorded as `partner.reapproval_refused`. Then 400 when
 *   the keys cannot be read or the metadata names another issuer; 404 for no partner.
 */
export const adminPartners: Endpoint = {
  register(app, ctx) {
    const admin = `${issuerPath(ctx.config.issuer)}/admin`;
    const params = pathParams({ id: "the partner's id" });

    app.get<{ Params: { id: string } }>(`${admin}/partners/:id/drift`, adminOperation(ctx, 'admin:read', {
      tag: 'directory',
      summary: "A partner's drift: its status, baseline, last check and next",
      params,
    }), async (request) => {
      const view = await driftView(ctx, request.params.id);
      if (!view) throw new OAuthError('not_found', 'no such partner');
      return view;
    });
    // admin:write: the check fetches from the partner's servers (metadata, JWKS), and a read scope
    // must not make Clearance send requests on the caller's say-so.
    app.get<{ Params: { id: string } }>(`${admin}/partners/:id/check`, adminOperation(ctx, 'admin:write', {
      tag: 'directory',
      summary: "Check a partner's trust profile against its published keys and metadata (clearance partner check)",
      description: "Fetches the partner's metadata and keys now, from Clearance's network: admin:write, although it changes nothing here.",
      params,
    }), async (request, reply) => {
      const partner = await ctx.partners.get(request.params.id);
      if (!partner) throw new OAuthError('not_found', 'no such partner');
      const lines = await checkPartnerProfile(ctx, partner);
      reply.header('cache-control', 'no-store');
      return { partner: partner.id, issuer: partner.issuer, ok: !lines.some((line) => line.status === 'fail'), lines };
    });
    app.post<{ Params: { id: string } }>(`${admin}/partners/:id/approve`, adminOperation(ctx, 'admin:write', {
      tag: 'directory',
      summary: 'Re-approve a partner: its keys and metadata as they are now become the baseline, and a suspension ends',
      description:
        "By a person's own token, signed in phishing-resistantly in the last 5 minutes (else 401 insufficient_user_authentication with acr_values and max_age): " +
        'it makes Clearance trust the keys the partner publishes now. A client’s own token or a delegate’s re-approves nothing (403).',
      params,
    }), async (request) => {
      const person = await trustChangePerson(ctx, request, reapproval(ctx, request.params.id));
      try {
        return await approvePartner(ctx, request.params.id, { actor: person.id, requestId: request.id });
      } catch (error) {
        if (error instanceof PartnerApprovalRefused) throw new OAuthError(error.notFound ? 'not_found' : 'invalid_request', error.message);
        throw error;
      }
    });
  },
};

/**
 * A re-approval, as its refusals name it (./step-up.ts trustChangePerson: a person with their own
 * token, signed in phishing-resistantly in the last 5 minutes), checked before the partner is
 * fetched; each refusal recorded as `partner.reapproval_refused`.
 */
function reapproval(ctx: Context, id: string): TrustChange {
  return {
    act: 're-approving a partner',
    byPerson: 'a partner is re-approved by a person, with their own token (or by the operator: clearance partner approve)',
    refusedAs: 'partner.reapproval_refused',
    // Named only when stored: an id nobody stored is the caller's text.
    target: async () => ((await ctx.partners.get(id)) ? { partner: id } : {}),
  };
}
