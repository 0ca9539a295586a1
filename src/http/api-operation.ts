import type { FastifySchema, preHandlerAsyncHookHandler, RouteShorthandOptions } from 'fastify';

/**
 * One operation of the documented APIs (the admin API, the audit API, the AuthZEN API): the JSON
 * Schemas fastify validates the request with (Ajv, before the handler runs, after the caller is
 * authenticated) and what the OpenAPI document says of it (src/http/openapi.ts reads the same
 * schema objects from the routes — nothing is kept beside them). Deeper rules (an apply document,
 * a policy request) stay with their own validators, which name each problem by its path; the
 * schemas here are the request's shape, and they never accept what those validators refuse to
 * parse as a shape.
 */
export interface ApiOperation {
  /** The OpenAPI tag (one per resource family, listed in src/http/openapi.ts). */
  tag: ApiTag;
  summary: string;
  description?: string;
  /** JSON Schema of the path parameters (every `:name` of the route). */
  params?: JsonSchema;
  /** JSON Schema of the query parameters, each a string as sent. */
  querystring?: JsonSchema;
  /** JSON Schema of the JSON body (a write with no body names none). */
  body?: JsonSchema;
  /** The body may be left out altogether (its members are all optional). */
  bodyOptional?: boolean;
  /** Media types of the body, when not application/json (a PATCH takes a JSON Merge Patch). */
  consumes?: readonly string[];
  /** The answer when the operation succeeds (200 unless said). */
  success?: { status: 200 | 201 | 202 | 204; description: string };
}

/** The resource families of the document, in the order it lists them. */
export const apiTags = {
  clients: 'Clients and resource servers',
  users: 'People',
  grants: 'Grants (consent)',
  mandates: 'Mandates',
  directory: 'Legal entities, policies and partners',
  agents: 'Algorithmic agents',
  approvals: 'Approvals (four eyes)',
  'break-glass': 'Break-glass access',
  risk: 'Risk, anomalies and alerts',
  kyc: 'KYC and screening',
  audit: 'Audit log',
  access: 'Access evaluation (AuthZEN)',
} as const;
export type ApiTag = keyof typeof apiTags;

export type JsonSchema = Record<string, unknown>;

/** Where the OpenAPI document says who may call an operation (components.securitySchemes). */
export type SecurityRequirement = Record<string, readonly string[]>;

/** The route's fastify schema: what Ajv validates, and what the document shows. */
export function operationSchema(operation: ApiOperation, security: readonly SecurityRequirement[]): FastifySchema {
  const { tag, success, consumes, bodyOptional, ...rest } = operation;
  return {
    ...rest,
    ...(bodyOptional && rest.body ? { body: orAbsent(rest.body), 'x-body-optional': true } : {}),
    tags: [tag],
    security: security.map((requirement) => ({ ...requirement })),
    ...(consumes ? { consumes: [...consumes] } : {}),
    // Read by the document only (src/http/openapi.ts); fastify's serializer never sees it.
    ...(success ? { 'x-success': success } : {}),
  } as FastifySchema;
}

/**
 * Route options of a documented operation whose caller is admitted by `authorize` (a bearer or
 * DPoP token with `scope`). Authentication runs before validation (preValidation): a caller
 * without the right learns nothing of what a valid request looks like.
 */
export function protectedOperation(authorize: preHandlerAsyncHookHandler, scope: string, operation: ApiOperation): RouteShorthandOptions {
  return { preValidation: authorize, schema: operationSchema(operation, [{ clearance: [scope] }]) };
}

/** fastify hands Ajv an absent body as null: an optional body is an object or null. */
function orAbsent(schema: JsonSchema): JsonSchema {
  return { ...schema, type: ['object', 'null'] };
}

// Schema building blocks used across the documented routes.

/** A non-empty string, at most `max` characters. */
export function text(description: string, max = 1000): JsonSchema {
  return { type: 'string', minLength: 1, maxLength: max, description };
}

/** Path parameters: every one a non-empty string. */
export function pathParams(names: Record<string, string>): JsonSchema {
  return {
    type: 'object',
    properties: Object.fromEntries(Object.entries(names).map(([name, description]) => [name, text(description)])),
    required: Object.keys(names),
  };
}

/** Query parameters, each optional and a string as sent (a repeated one is refused). */
export function queryParams(names: Record<string, string | JsonSchema>): JsonSchema {
  return {
    type: 'object',
    properties: Object.fromEntries(Object.entries(names).map(([name, about]) => [name, typeof about === 'string' ? { type: 'string', description: about } : about])),
  };
}

/** A non-negative integer query parameter, as digits. */
export function integerQuery(description: string): JsonSchema {
  return { type: 'string', pattern: '^[0-9]{1,15}$', description };
}

/** A JSON object body; `properties` documents its members, `required` the ones it must have. */
export function objectBody(properties: Record<string, JsonSchema>, required: readonly string[] = [], description?: string): JsonSchema {
  return {
    type: 'object',
    properties,
    ...(required.length > 0 ? { required: [...required] } : {}),
    ...(description ? { description } : {}),
  };
}

/**
 * A body whose members may each be `null`: in a PUT of the admin API's write rule
 * (src/endpoints/admin/representation.ts), `null` removes an optional member.
 */
export function nullableMembers(body: JsonSchema): JsonSchema {
  const properties = (body.properties ?? {}) as Record<string, JsonSchema>;
  return { ...body, properties: Object.fromEntries(Object.entries(properties).map(([name, schema]) => [name, orNull(schema)])) };
}

/**
 * The JSON Merge Patch (RFC 7396) of a body: every member may also be `null` (§2: null removes
 * it), and none is required.
 */
export function mergePatchOf(body: JsonSchema): JsonSchema {
  const { required: _required, ...rest } = nullableMembers(body);
  return rest;
}

function orNull(schema: JsonSchema): JsonSchema {
  const type = schema.type;
  if (typeof type === 'string') return { ...schema, type: [type, 'null'] };
  if (Array.isArray(type)) return type.includes('null') ? schema : { ...schema, type: [...type, 'null'] };
  return { anyOf: [schema, { type: 'null' }] };
}
