import { createHash } from 'node:crypto';
import { detailTypeSchema, detailTypes } from '../../authorization/authorization-details.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/** Where a registered authorization_details type's JSON Schema is served. */
export function detailSchemaUrl(issuer: string, type: string): string {
  return `${issuer}/authorization-details/schemas/${encodeURIComponent(type)}.json`;
}

/**
 * The JSON Schema (draft 2020-12) of each registered authorization_details type (RFC 9396 §2: the
 * type determines the entry's fields), exactly the one Clearance validates requests against, at a
 * stable URL: GET /authorization-details/schemas/{type}.json. Public (it is the request format,
 * like discovery), cacheable, with an ETag. Discovery advertises the types (RFC 9396 §10
 * `authorization_details_types_supported`) and, in `authorization_details_schemas`, each type's
 * schema URL (a Clearance member: RFC 9396 leaves how a client learns a type's fields open).
 */
export const authorizationDetailsSchemas: Endpoint = {
  register(app, ctx) {
    // Built once: the registry does not change while the process runs.
    const documents = new Map<string, { body: string; etag: string }>();
    for (const type of detailTypes.keys()) {
      const body = JSON.stringify({ $id: detailSchemaUrl(ctx.config.issuer, type), ...detailTypeSchema(type) }, null, 2);
      documents.set(type, { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` });
    }
    app.get<{ Params: { file: string } }>(`${issuerPath(ctx.config.issuer)}/authorization-details/schemas/:file`, async (request, reply) => {
      const match = /^([a-z0-9_]{1,64})\.json$/.exec(request.params.file);
      const document = match ? documents.get(match[1]!) : undefined;
      if (!document) throw new OAuthError('not_found', 'no such authorization_details type');
      reply
        .type('application/schema+json; charset=utf-8')
        .header('cache-control', 'public, max-age=3600')
        .header('etag', document.etag)
        .header('access-control-allow-origin', '*');
      if (request.headers['if-none-match'] === document.etag) return reply.code(304).send();
      return reply.send(document.body);
    });
  },
  metadata: (ctx) => ({
    authorization_details_schemas: Object.fromEntries([...detailTypes.keys()].map((type) => [type, detailSchemaUrl(ctx.config.issuer, type)])),
  }),
};
