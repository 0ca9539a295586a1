import type { preHandlerAsyncHookHandler } from 'fastify';
import { requireAdmin } from '../../admin/authorize.ts';
import { integerQuery, pathParams, protectedOperation, queryParams, text, type ApiOperation } from '../../http/api-operation.ts';
import { auditEventTypes } from '../../audit/events.ts';
import { AuditKeys, auditOrigin } from '../../audit/audit-key.ts';
import { BundleError, exportBundle } from '../../audit/bundle.ts';
import { auditKeyCustody } from '../../audit/lifecycle.ts';
import { resolveMasterKey } from '../../keys/master-key.ts';
import { tsaTrustPems } from '../../pki/tsa.ts';
import { AuditProofError, proveConsistency, proveEvent, storedCheckpoint } from '../../audit/proofs.ts';
import { AuditQueryError, maxPageSize, queryEvents, readAuditQuery } from '../../audit/query.ts';
import type { Context } from '../../context.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { AuditScopeError, partyInScope, readerScope, txnInScope, withinScope, type AuditScope, type EntityScope } from '../../audit/scope.ts';
import { recordRead, revealedDetails, revealScopeOf } from '../../audit/reads.ts';
import { personalViews } from '../../audit/subject-keys.ts';
import type { PersonalView } from '../../audit/personal-data.ts';
import type { StoredAuditEvent } from '../../audit/events.ts';
import type { AccessTokenClaims } from '../../tokens/claims.ts';

type Query = Record<string, string | undefined>;

/**
 * The compliance API of the audit log (issue 3 §5, §7), under `<issuer>/admin/audit`, for
 * Clearance access tokens for `<issuer>/admin` with the `audit:read` scope:
 *
 *   GET events?txn=&subject=&client=&type=&decision=&since=&until=&limit=&after=
 *       matching events oldest first, with their leaf index; `next` is the cursor for `after`
 *   GET events/:id/proof[?tree_size=N]   RFC 9162 §2.1.3 inclusion proof into a checkpoint
 *   GET consistency?first=M[&second=N]   RFC 9162 §2.1.4 consistency proof between checkpoints
 *   GET checkpoints/latest               the latest signed checkpoint
 *   GET key                              the audit public key (PEM) and its fingerprint
 *   GET bundle?txn=&subject=&client=&type=&decision=&since=&until=
 *       the signed evidence bundle of the sealed events matching (docs/audit.md "Evidence
 *       bundles"), as `clearance audit export` writes it: `clearance audit verify-bundle` checks
 *       it offline. At least one of txn, subject, client or since. Events not sealed yet are left
 *       out and counted in `Clearance-Unsealed-Events`. Recorded as `audit.exported`, with who.
 *
 * Personal fields (src/audit/personal-data.ts) are stored encrypted; each event that has some comes
 * with `personal`: `withheld` (their names), `erased` (the subject's key was destroyed), or — for a
 * reader who asks with `reveal=personal` and whose role reads personal data (compliance, auditor:
 * src/audit/reads.ts) — `revealed` with the fields, for the events of the legal entities of the
 * reader's own desks only; the others stay `withheld` (reason `outside_scope`), and a reader whose
 * desks name no legal entity is refused (403). A revealing read says so in its `audit.read`.
 * Bundles carry the ciphertext; with `reveal=personal` they state the revealed fields too.
 *
 * Whose events a token reads is src/audit/scope.ts: a client's own token and a person holding admin
 * or auditor read the whole log; any other person (compliance) reads their legal entities' scope —
 * their events, proofs and bundles — and an event outside it is answered as unknown.
 *
 * `authorize` is the hook that admits a request for a scope (admin/authorize.ts); it runs before
 * the request is validated against each operation's schemas (src/http/api-operation.ts).
 */
export function auditEndpoint(authorize: (ctx: Context, scope: 'audit:read') => preHandlerAsyncHookHandler = requireAdmin): Endpoint {
  return {
    register(app, ctx) {
      const base = `${issuerPath(ctx.config.issuer)}/admin/audit`;
      const admit = authorize(ctx, 'audit:read');
      const read = (operation: Omit<ApiOperation, 'tag'>) => protectedOperation(admit, 'audit:read', { tag: 'audit', ...operation });
      const db = ctx.storage.db;
      const noStore = { 'cache-control': 'no-store' };

      app.get<{ Querystring: Query }>(`${base}/events`, read({
        summary: 'Query events, oldest first, with their leaf index',
        description: 'Reading events is itself recorded (`audit.read`). `next`, when there are more, is the `after` of the next page.',
        querystring: queryParams({ ...queryFilters, limit: integerQuery(`how many, 1 to ${maxPageSize} (default 100)`), after: 'the `next` of the previous page', reveal: revealParam }),
      }), async (request, reply) => {
        const { limit, after, reveal: asked, ...filters } = request.query;
        reply.headers(noStore);
        const query = await guard(async () => readAuditQuery(filters));
        const scope = await readerScope(ctx, request.admin!);
        const reveal = await revealing(asked, request.admin!);
        const page = await guard(() =>
          queryEvents(db, query, {
            ...(limit !== undefined ? { limit: readInteger('limit', limit) } : {}),
            ...(after !== undefined ? { after } : {}),
          }),
        );
        // A scoped reader's page holds only its scope's events (a page may then be shorter than
        // `limit`; `next` still leads on).
        const events = await withinScope(db, scope, page.events, (e) => e.event);
        const { views, subjects } = await personalViews(db, masterKey(), events.map((e) => e.event), await revealable(reveal, events.map((e) => e.event)));
        await recordRead(ctx, request.admin!, request.id, { query: { ...query }, events: events.length, ...revealedDetails(revealedCount(views), subjects) }, scope);
        return { ...page, events: events.map((e) => (views.has(e.event.id) ? { ...e, personal: views.get(e.event.id) } : e)) };
      });

      app.get<{ Params: { id: string }; Querystring: Query }>(`${base}/events/:id/proof`, read({
        summary: "An event's inclusion proof into a checkpoint (RFC 9162 §2.1.3)",
        params: pathParams({ id: "the event's id" }),
        querystring: queryParams({ tree_size: integerQuery("the checkpoint's tree size (default the latest)"), reveal: revealParam }),
      }), async (request, reply) => {
        const size = request.query.tree_size;
        reply.headers(noStore);
        const scope = await readerScope(ctx, request.admin!);
        const reveal = await revealing(request.query.reveal, request.admin!);
        // Outside the reader's scope an event is as if unknown — checked before any proof, whose
        // refusals (not sealed yet, not in that tree) would tell that it exists.
        if (scope.kind !== 'all' && !(await eventInScope(request.params.id, scope))) throw new OAuthError('not_found', 'no such event');
        const proof = await guard(() => proveEvent(db, request.params.id, size === undefined ? undefined : readInteger('tree_size', size)));
        // The proof covers the event as stored (its ciphertext); `personal` is beside it, never in it.
        const proven = JSON.parse(proof.event) as StoredAuditEvent;
        const { views, subjects } = await personalViews(db, masterKey(), [proven], await revealable(reveal, [proven]));
        await recordRead(ctx, request.admin!, request.id, { event: request.params.id, events: 1, ...revealedDetails(revealedCount(views), subjects) }, scope);
        const view = views.values().next().value;
        return view ? { ...proof, personal: view } : proof;
      });

      const masterKey = () => resolveMasterKey(ctx.config).key;

      /**
       * Whose personal fields this read reveals: none when not asked; when asked (`reveal=personal`),
       * the events of the reader's own legal entities (src/audit/reads.ts revealScopeOf) — refused
       * (403) for a role that reads no personal data, or a person of no legal entity.
       */
      async function revealing(asked: string | undefined, reader: AccessTokenClaims): Promise<EntityScope | undefined> {
        if (asked === undefined) return undefined;
        if (asked !== 'personal') throw new OAuthError('invalid_request', 'reveal must be personal');
        try {
          return await revealScopeOf(ctx, reader);
        } catch (error) {
          if (error instanceof AuditScopeError) throw new OAuthError('access_denied', error.message);
          throw error;
        }
      }

      /** The ids of the events among `events` whose personal fields this read reveals (false: none). */
      async function revealable(scope: EntityScope | undefined, events: readonly StoredAuditEvent[]): Promise<ReadonlySet<string> | false> {
        if (!scope) return false;
        return new Set((await withinScope(db, scope, events, (e) => e)).map((e) => e.id));
      }

      async function eventInScope(id: string, scope: AuditScope): Promise<boolean> {
        const row = id.length <= 64 ? await db.selectFrom('audit_events').select('event').where('id', '=', id).executeTakeFirst() : undefined;
        return row !== undefined && (await withinScope(db, scope, [JSON.parse(row.event) as StoredAuditEvent], (e) => e)).length === 1;
      }

      app.get<{ Querystring: Query }>(`${base}/consistency`, read({
        summary: 'A consistency proof between two checkpoints (RFC 9162 §2.1.4)',
        querystring: {
          ...queryParams({ first: integerQuery("the first checkpoint's tree size"), second: integerQuery("the second checkpoint's tree size (default the latest)") }),
          required: ['first'],
        },
      }), async (request, reply) => {
        const { first, second } = request.query;
        if (first === undefined) throw new OAuthError('invalid_request', 'first (a checkpoint tree size) is required');
        reply.headers(noStore);
        return guard(() => proveConsistency(db, readInteger('first', first), second === undefined ? undefined : readInteger('second', second)));
      });

      app.get(`${base}/checkpoints/latest`, read({ summary: 'The latest signed checkpoint' }), async (_request, reply) => {
        const checkpoint = await storedCheckpoint(db);
        if (!checkpoint) throw new OAuthError('not_found', 'the audit log has no checkpoint yet');
        reply.headers(noStore);
        return checkpoint;
      });

      app.get<{ Querystring: Query }>(`${base}/bundle`, read({
        summary: 'The signed evidence bundle of the sealed events matching',
        description:
          'As `clearance audit export` writes it; `clearance audit verify-bundle` checks it offline. At least one of txn, subject, client or since. ' +
          'Events not sealed yet are left out and counted in the `Clearance-Unsealed-Events` header. Recorded as `audit.exported`.',
        querystring: queryParams({ ...queryFilters, reveal: revealParam }),
      }), async (request, reply) => {
        const { reveal: asked, ...filters } = request.query;
        const query = await guard(async () => readAuditQuery(filters));
        if (query.txn === undefined && query.subject === undefined && query.client === undefined && query.since === undefined) {
          throw new OAuthError('invalid_request', 'a bundle needs txn, subject, client or since');
        }
        // A scoped reader exports a trade its firm took part in, or one of its own clients' or people's events.
        const scope = await readerScope(ctx, request.admin!);
        const allowed =
          scope.kind === 'all' ||
          (query.txn !== undefined && (await txnInScope(db, scope, query.txn))) ||
          (query.client !== undefined && partyInScope(scope, query.client)) ||
          (query.subject !== undefined && partyInScope(scope, query.subject));
        if (!allowed) throw new OAuthError('access_denied', "your role exports the evidence of your legal entity's transactions, clients and people");
        // Ciphertext by default (a bundle is for verification); revealed fields stated beside it when asked.
        const reveal = await revealing(asked, request.admin!);
        let revealed = { events: 0, subjects: new Set<string>() };
        const personal = reveal
          ? async (events: StoredAuditEvent[]) => {
              const { views, subjects } = await personalViews(db, masterKey(), events, await revealable(reveal, events));
              const fields = Object.fromEntries([...views].flatMap(([id, view]) => (view.status === 'revealed' ? [[id, view.fields]] : [])));
              revealed = { events: Object.keys(fields).length, subjects };
              return fields;
            }
          : undefined;
        const auditKeys = new AuditKeys(db, resolveMasterKey(ctx.config).key, ctx.clock, auditKeyCustody(ctx));
        const key = await auditKeys.signingKey(auditOrigin(ctx.config.issuer));
        const tsaTrust = ctx.config.tsa ? tsaTrustPems(ctx.config.tsa.trustFile) : [];
        const result = await bundleGuard(() => exportBundle(db, { query, key, keyFor: (keyId) => auditKeys.signingKeyFor(keyId), jwksInForce: (from, to) => ctx.keys.jwksInForce(from, to), now: ctx.clock.now(), tsaTrust, ...(personal ? { personal } : {}) }));
        const admin = request.admin!;
        await ctx.audit.record({
          type: 'audit.exported',
          actor: admin.sub ?? admin.client_id,
          client: admin.client_id,
          requestId: request.id,
          details: { query: { ...query }, events: result.bundle.events.length, treeSize: result.bundle.checkpoint.treeSize, via: 'api', ...revealedDetails(revealed.events, revealed.subjects) },
        });
        const name = `evidence-${(query.txn ?? query.subject ?? query.client ?? 'since').replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 80)}.json`;
        return reply
          .headers({ ...noStore, 'content-type': 'application/json', 'content-disposition': `attachment; filename="${name}"`, 'clearance-unsealed-events': String(result.unsealed) })
          .send(result.text);
      });

      app.get(`${base}/key`, read({ summary: 'The audit public key (PEM) and its id' }), async () => {
        const key = await new AuditKeys(db, undefined, ctx.clock).currentPublicKey();
        if (!key) throw new OAuthError('not_found', 'the audit log has no key yet');
        return { key_id: key.keyId, origin: key.origin, public_key: key.publicKey.export({ format: 'pem', type: 'spki' }).toString() };
      });
    },
  };
}

/** The filters of a query (src/audit/query.ts readAuditQuery checks their values). */
const queryFilters = {
  txn: text('a transaction', 512),
  subject: text('a subject', 512),
  client: text('a client_id', 512),
  type: { type: 'string', enum: [...auditEventTypes], description: 'an event type' },
  decision: 'allow or deny',
  since: 'from (inclusive): epoch milliseconds or an ISO 8601 time',
  until: 'until (exclusive): epoch milliseconds or an ISO 8601 time',
};

const revealParam = { type: 'string', enum: ['personal'], description: "personal: decrypt personal fields (compliance and auditor only, for their own legal entities' events; the read is recorded as revealing them)" };

function revealedCount(views: ReadonlyMap<string, PersonalView>): number {
  let n = 0;
  for (const view of views.values()) if (view.status === 'revealed') n++;
  return n;
}

/** Registered in http/app.ts; admin tokens with audit:read only. */
export const audit: Endpoint = auditEndpoint();

function readInteger(name: string, value: string): number {
  if (!/^\d{1,15}$/.test(value)) throw new OAuthError('invalid_request', `${name} must be a non-negative integer`);
  return Number(value);
}

async function bundleGuard<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    // No checkpoint yet, another audit key, too many events: the request cannot be answered as asked.
    if (error instanceof BundleError) throw new OAuthError('invalid_request', error.message);
    throw error;
  }
}

async function guard<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof AuditQueryError) throw new OAuthError('invalid_request', error.message);
    if (error instanceof AuditProofError) throw new OAuthError('not_found', error.message);
    throw error;
  }
}
