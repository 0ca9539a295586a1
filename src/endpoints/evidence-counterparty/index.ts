import type { FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { BundleError } from '../../audit/bundle.ts';
import { recordRefusal } from '../../audit/refusals.ts';
import { CounterpartyNotSealed, CounterpartyRefusal, exportForCounterparty } from '../../evidence/counterparty.ts';
import { operationSchema, pathParams } from '../../http/api-operation.ts';
import { resourceRequest } from '../../http/oauth-request.ts';
import { OAuthError } from '../../oauth-error.ts';
import { evidenceAudience, evidenceCounterpartyScope } from '../../resource-servers/builtins.ts';
import type { AccessTokenClaims } from '../../tokens/claims.ts';
import { admitToResource } from '../../tokens/protected-resource.ts';
import { authenticateResourceRequest } from '../../tokens/resource-access.ts';
import { isTxn } from '../../transactions/txn.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/** The path under the issuer; `:txn` is the trade's txn. */
export const counterpartyEvidencePath = '/evidence/transactions/:txn';

/** The one answer to a txn the caller took no part in and to one nothing is filed under: no existence oracle. */
const noEvidence = 'no evidence of yours is filed under this txn';

/**
 * GET /evidence/transactions/{txn} (docs/evidence.md "Evidence for counterparties"): a client that
 * took part in a trade fetches, with its own credentials, the signed evidence bundle of the hops it
 * took part in and the chain that led to them (src/evidence/counterparty.ts), which `clearance
 * audit verify-bundle` checks offline like any bundle. The rules, in order:
 * 1. a token of ours, unexpired, presented with its binding (RFC 6750, RFC 9449) — else 401, and
 *    nothing is recorded: nobody is identified;
 * 2. for `<issuer>/evidence`, live, carrying `evidence:counterparty` — else RFC 6750 §3.1
 *    invalid_token / insufficient_scope (403);
 * 3. the client's own token (client credentials: no person, no delegation) — else 403 access_denied:
 *    the evidence is the firm's, asked for by its system, not by someone acting through it;
 * 4. a well-formed txn — else 400 invalid_request (the format is public; it tells nothing);
 * 5. the caller's party took part in a hop of the txn — else 404 not_found, the very answer an
 *    unknown txn gets, so the API tells no one whether a txn exists (a GET names a resource: for
 *    this caller there is none; POST /audit/evidence answers 403 for the same rule, where the
 *    request is a write that is refused);
 * 6. at least one of its hops is sealed — else 503 with Retry-After (only a party hears it).
 * 200 with the bundle as a download, `Clearance-Unsealed-Events` counting the caller's own events
 * not sealed yet; to a firm with a pairwise client, without any event naming a person (counted in
 * `persons_withheld`: OIDC Core §8.1, src/evidence/counterparty.ts). Every fetch from rule 2 on is one audit event, under the txn when it is well
 * formed: `evidence.counterparty_exported`, or `evidence.counterparty_refused` with a reason code
 * (rate limited per client like every refusal: src/audit/refusals.ts).
 */
export const counterpartyEvidence: Endpoint = {
  register(app, ctx) {
    const resource = { audience: evidenceAudience(ctx.config.issuer), scope: evidenceCounterpartyScope, name: 'the evidence API' };
    const admitted = new WeakMap<FastifyRequest, AccessTokenClaims>();

    const refuse = async (request: FastifyRequest, client: string, error: OAuthError, reason: string): Promise<never> => {
      const txn = (request.params as { txn?: unknown }).txn;
      await recordRefusal(ctx, { type: 'evidence.counterparty_refused', requestId: request.id, client, ...(isTxn(txn) ? { txn } : {}), error: error.error, reason });
      throw error;
    };

    // Rules 1–3 before the request is validated: a caller without the right learns nothing of its shape.
    const admit: preHandlerAsyncHookHandler = async (request, reply) => {
      const access = await authenticateResourceRequest(ctx, resourceRequest(request, ctx.config));
      reply.headers(access.headers);
      const { claims } = access;
      try {
        await admitToResource(ctx, access, resource);
      } catch (error) {
        if (error instanceof OAuthError) await refuse(request, claims.client_id, error, error.error);
        throw error;
      }
      if (claims.act !== undefined || claims.grant_id !== undefined || (claims.sub !== undefined && claims.sub !== claims.client_id)) {
        await refuse(request, claims.client_id, new OAuthError('access_denied', "evidence is fetched with the client's own token (client credentials)"), 'not_own_token');
      }
      admitted.set(request, claims);
    };

    app.get<{ Params: { txn: string } }>(
      `${issuerPath(ctx.config.issuer)}${counterpartyEvidencePath}`,
      {
        preValidation: admit,
        schema: operationSchema(
          {
            tag: 'audit',
            summary: "A counterparty's evidence bundle of a txn: the hops it took part in and the chain before them",
            description:
              'With the client’s own token for `<issuer>/evidence` carrying `evidence:counterparty`. The bundle holds the events of the hops the caller’s firm took part in ' +
              '(as client, current actor, audience, the client whose token was exchanged, or the partner speaking for it) and of the earlier hops they descend from, each with its ' +
              'inclusion proof; `counterparty` says which and counts the events withheld. `clearance audit verify-bundle` checks it offline. A txn the caller took no part in is ' +
              'answered as an unknown one: 404. Every fetch is recorded (`evidence.counterparty_exported` or `evidence.counterparty_refused`).',
            params: pathParams({ txn: 'the trade’s txn (1 to 64 of A-Z a-z 0-9 . _ : -)' }),
            success: { status: 200, description: 'the signed evidence bundle (RFC 8785 JSON), as a download' },
          },
          [{ clearance: [evidenceCounterpartyScope] }],
        ),
      },
      async (request, reply) => {
        const claims = admitted.get(request)!;
        const client = claims.client_id;
        const { txn } = request.params;
        if (!isTxn(txn)) await refuse(request, client, new OAuthError('invalid_request', 'txn must be 1 to 64 letters, digits or . _ : -'), 'malformed');
        const caller = await ctx.clients.get(client);
        if (!caller || caller.disabledAt !== null) return refuse(request, client, new OAuthError('access_denied', 'the client is not in service'), 'client_unknown');
        let exported: Awaited<ReturnType<typeof exportForCounterparty>>;
        try {
          exported = await exportForCounterparty(ctx, caller, txn);
        } catch (error) {
          if (error instanceof CounterpartyRefusal) return refuse(request, client, new OAuthError('not_found', noEvidence), error.reason);
          if (error instanceof CounterpartyNotSealed) return refuse(request, client, new OAuthError('temporarily_unavailable', error.message, { headers: { 'retry-after': '1' } }), 'not_sealed');
          // No checkpoint yet, too many events: the request cannot be answered as asked.
          if (error instanceof BundleError) return refuse(request, client, new OAuthError('invalid_request', error.message), 'bundle_unavailable');
          throw error;
        }
        const { result, statement, pending } = exported;
        const tookPart = statement.hops.filter((hop) => hop.part === 'took_part');
        await ctx.audit.record({
          type: 'evidence.counterparty_exported',
          requestId: request.id,
          txn,
          actor: client,
          client,
          details: {
            ...(statement.lei !== undefined ? { lei: statement.lei } : {}),
            events: result.bundle.events.length,
            withheld: statement.withheld,
            ...(statement.persons_withheld !== undefined ? { persons_withheld: statement.persons_withheld } : {}),
            unsealed: pending + result.unsealed,
            tree_size: result.bundle.checkpoint.treeSize,
            // Which hops it was given, and why: the jtis (never a token) and the roles.
            took_part: tookPart.slice(0, 50).map((hop) => ({ jti: hop.jti, as: hop.as })),
            chain: statement.hops.length - tookPart.length,
          },
        });
        const name = `evidence-${txn.replace(/[^A-Za-z0-9._-]/g, '_')}-${client.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64)}.json`;
        return reply
          .headers({
            'cache-control': 'no-store',
            'content-type': 'application/json',
            'content-disposition': `attachment; filename="${name}"`,
            'clearance-unsealed-events': String(pending + result.unsealed),
          })
          .send(result.text);
      },
    );
  },
};
