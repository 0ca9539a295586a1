import { ScimError as LibraryScimError, patchBodyValidation, scimPatch, type ScimPatch, type ScimPatchOperation, type ScimResource } from 'scim-patch';
import { badRequest, type ScimType } from './errors.ts';
import { findAttribute, type SchemaDefinition } from './schemas.ts';

/**
 * SCIM PATCH (RFC 7644 §3.5.2) by the field's library (scim-patch: the PatchOp message's rules,
 * add/replace/remove with and without a path, value-selection filters such as
 * `members[value eq "..."]` and `emails[type eq "work"].value`, extension URNs in paths), never by
 * hand. Clearance checks what the library leaves to the service provider, before it runs: a path
 * names an attribute of the resource's schemas (400 invalidPath), and not a read-only one
 * (400 mutability, §3.5.2: "mutability ... readOnly"). The patched resource is then written as a
 * replacement is (§3.5.2: the result is as if the whole resource were replaced), through the same
 * rules.
 */
export function applyPatch(resource: Record<string, unknown>, body: unknown, schemas: readonly SchemaDefinition[]): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('invalidSyntax', 'the body must be a PatchOp message');
  try {
    patchBodyValidation(body as ScimPatch);
  } catch (error) {
    throw libraryError(error);
  }
  const operations = (body as ScimPatch).Operations;
  for (const operation of operations) checkPath(operation, schemas);
  let patched: Record<string, unknown>;
  try {
    patched = scimPatch(structuredClone(resource) as unknown as ScimResource, [...operations], { mutateDocument: true, treatMissingAsAdd: true }) as unknown as Record<string, unknown>;
  } catch (error) {
    throw libraryError(error);
  }
  // A patch without a path names its attributes in its value: read-only ones must come out as they went in.
  for (const attribute of readOnlyAttributes(schemas)) {
    if (JSON.stringify(patched[attribute]) !== JSON.stringify(resource[attribute])) throw badRequest('mutability', `${attribute} is read-only`);
  }
  return patched;
}

/** The read-only top-level attributes of the core schema (id, meta, and any other). */
function readOnlyAttributes(schemas: readonly SchemaDefinition[]): string[] {
  return schemas[0]!.attributes.filter((a) => a.mutability === 'readOnly').map((a) => a.name);
}

/** The attribute a PATCH path names, without its value filter (`emails[type eq "work"].value` → `emails.value`). */
function attributeOf(path: string): string {
  return path.replace(/\[[^\]]*\]/g, '');
}

function checkPath(operation: ScimPatchOperation, schemas: readonly SchemaDefinition[]): void {
  if (operation.path === undefined) return;
  const path = attributeOf(operation.path);
  const attribute = findAttribute(schemas, path);
  // A path to a whole extension (its URN alone) replaces the extension's attributes.
  const extension = schemas.slice(1).some((s) => s.id.toLowerCase() === path.toLowerCase());
  if (!attribute && !extension) throw badRequest('invalidPath', `no attribute ${path.slice(0, 200)}`);
  if (attribute?.mutability === 'readOnly' || findAttribute(schemas, path.split('.')[0]!)?.mutability === 'readOnly') {
    throw badRequest('mutability', `${path.slice(0, 200)} is read-only`);
  }
}

/** The library's refusal as a SCIM 400 with its scimType (invalidSyntax unless it says otherwise). */
function libraryError(error: unknown): Error {
  if (error instanceof LibraryScimError) {
    const scimType = (['invalidSyntax', 'invalidPath', 'noTarget', 'invalidValue', 'mutability'] as const).find((t) => t === error.scimCode) ?? 'invalidSyntax';
    return badRequest(scimType as ScimType, error.message.slice(0, 300));
  }
  // The library reads attributes of the resource it walks; a path through a value that is not an
  // object (e.g. `userName.x`) throws a TypeError there: the path, not the server, is at fault.
  if (error instanceof TypeError) return badRequest('invalidPath', 'the path does not lead to a value that can be changed');
  return error as Error;
}
