import { isDeepStrictEqual } from 'node:util';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { OAuthError } from '../../oauth-error.ts';

/**
 * The one write rule of every admin resource with a PUT (users, clients, resource servers):
 *
 * - `PUT` replaces the whole representation (RFC 9110 §9.3.4). On an existing resource the body
 *   must name every writable member the resource has (`null` removes an optional one); a body that
 *   leaves one out is refused with 400 invalid_request naming the missing members and changes
 *   nothing — so a PUT of only `status` can no longer wipe a person's name, email, desks and
 *   attributes. Creating a resource with PUT needs only what validation needs.
 * - `PATCH` with a JSON Merge Patch (RFC 7396, `application/merge-patch+json`; any other type is
 *   415 with `Accept-Patch`) changes only the members it names: an object merges into the member,
 *   `null` removes it. The patched representation is validated exactly like a PUT; an invalid
 *   result is 400 and changes nothing. A PATCH of an unknown resource is 404.
 * - Read-only members (ids, timestamps; what GET shows beside the writable ones) may be sent back
 *   unchanged, so a GET body can be edited and PUT back; a changed one is 400.
 */

/** RFC 7396 §1: the media type of a JSON Merge Patch. */
export const mergePatchType = 'application/merge-patch+json';

/** Parses `application/merge-patch+json` bodies as JSON (prototype poisoning refused), once per app. */
export function acceptMergePatch(app: FastifyInstance): void {
  if (app.hasContentTypeParser(mergePatchType)) return;
  app.addContentTypeParser(mergePatchType, { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'));
}

/** What the write rule needs to know of one resource. */
export interface Representation {
  /** What the resource is called in error descriptions ("user", "client"). */
  name: string;
  /** The resource as GET shows it; undefined when it does not exist. */
  current: Record<string, unknown> | undefined;
  /** The members of `current` a PUT must repeat (its writable ones). */
  writable: readonly string[];
  /** Members GET shows that are never written (sent back unchanged, they are ignored). */
  readOnly?: readonly string[];
}

/** The media type of the request, lowercased, without parameters. */
function mediaType(request: FastifyRequest): string | undefined {
  return request.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
}

function jsonObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new OAuthError('invalid_request', `${what} must be a JSON object`);
  return value as Record<string, unknown>;
}

/** A copy of `o` without its `null` members and without the read-only members sent back unchanged. */
function writableMembers(o: Record<string, unknown>, rep: Representation): Record<string, unknown> {
  const changed = (rep.readOnly ?? []).filter((m) => o[m] !== undefined && !(rep.current && isDeepStrictEqual(o[m], rep.current[m])));
  if (changed.length > 0) throw new OAuthError('invalid_request', `read-only ${changed.length === 1 ? 'member' : 'members'} of the ${rep.name}: ${changed.join(', ')}`);
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(o)) {
    if (value === null || rep.readOnly?.includes(key)) continue;
    define(result, key, value);
  }
  return result;
}

/**
 * A PUT body checked against the rule above: the members to validate and write (without `null`
 * ones, which mean "absent"). Throws 415 for a body that is not application/json, 400 for none or
 * one that is not an object, changes a read-only member, or leaves out a member the resource has.
 */
export function putBody(request: FastifyRequest, rep: Representation): Record<string, unknown> {
  const type = mediaType(request);
  if (type !== undefined && type !== 'application/json') throw new OAuthError('invalid_request', 'a PUT body must be application/json', { status: 415 });
  const body = jsonObject(request.body, 'the body');
  if (rep.current) {
    const missing = rep.writable.filter((m) => rep.current![m] !== undefined && !Object.hasOwn(body, m));
    if (missing.length > 0) {
      throw new OAuthError(
        'invalid_request',
        `a PUT replaces the whole ${rep.name}; missing ${missing.length === 1 ? 'member' : 'members'}: ${missing.join(', ')} (send null to remove an optional member, or PATCH with ${mergePatchType})`,
      );
    }
  }
  return writableMembers(body, rep);
}

/**
 * A PATCH body (RFC 7396) applied to the current representation: the members to validate and
 * write. Throws 415 (with `Accept-Patch`, RFC 5789 §3.1) for another media type, 404 for an unknown
 * resource, 400 for a patch that is not an object or changes a read-only member.
 */
export function patchBody(request: FastifyRequest, rep: Representation): Record<string, unknown> {
  const type = mediaType(request);
  if (type !== undefined && type !== mergePatchType) {
    throw new OAuthError('invalid_request', `a PATCH body must be a JSON Merge Patch (${mergePatchType})`, { status: 415, headers: { 'accept-patch': mergePatchType } });
  }
  if (!rep.current) throw new OAuthError('not_found', `no such ${rep.name}`);
  // Without a Content-Type there is no body: jsonObject refuses it with 400.
  const patch = jsonObject(request.body, 'a merge patch of a resource');
  const readOnly = new Set(rep.readOnly ?? []);
  const target: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(rep.current)) if (!readOnly.has(key)) define(target, key, value);
  return writableMembers(mergePatch(target, patch) as Record<string, unknown>, rep);
}

/** RFC 7396 §2 MergePatch(Target, Patch). */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const result: Record<string, unknown> = {};
  if (typeof target === 'object' && target !== null && !Array.isArray(target)) {
    for (const [key, value] of Object.entries(target)) define(result, key, value);
  }
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else define(result, key, mergePatch(result[key], value));
  }
  return result;
}

/** Sets an own member even when its name is `__proto__` (never the prototype). */
function define(o: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}
