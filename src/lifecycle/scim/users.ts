import { createHash } from 'node:crypto';
import { isValidLei } from '../../entities/lei.ts';
import { readUserEntry, type User, type UserAttributes, type UserEntry, type UserStatus } from '../../identity/users.ts';
import { formatProblem, Validator } from '../../validation.ts';
import { badRequest } from './errors.ts';
import { enterpriseSchema, enterpriseSchemaDefinition, institutionSchema, institutionSchemaDefinition, userSchema, userSchemaDefinition, type SchemaDefinition } from './schemas.ts';

/**
 * Clearance's people as SCIM Users (RFC 7643 §4.1, §4.3) and back. The mapping (docs/lifecycle.md
 * "SCIM 2.0" has it as a table):
 *
 *   id ← users.id (the `sub` of the person's tokens)     userName ⇄ username (lowercased)
 *   externalId ⇄ scim_users.external_id                 name.formatted, displayName ⇄ name
 *   name.givenName / familyName ⇄ attributes.given_name / family_name
 *   emails[primary or first].value ⇄ email              active ⇄ status (see `isActive`)
 *   password → a new password (write-only)              roles ← roles (read-only: apply's)
 *   groups ← desks (read-only here: Groups change them)
 *   enterprise: employeeNumber, costCenter, organization, division, department, manager.value
 *     ⇄ attributes.employee_number, cost_center, organization, division, department, manager
 *   institution: legalEntity ⇄ attributes.lei, desks ⇄ desks, kycReference ⇄ attributes.kyc_reference
 *
 * Attributes the person has beyond these (suitability, date of birth, firm-specific facts) are
 * Clearance's, not the provisioning client's: a SCIM write keeps them.
 */
export const userSchemas: readonly SchemaDefinition[] = [userSchemaDefinition, enterpriseSchemaDefinition, institutionSchemaDefinition];

/** What SCIM keeps of a person beside the person: the provisioning client's externalId. */
export interface ScimPerson {
  user: User;
  externalId: string | null;
  /** Whether SCIM created the person (not merely adopted one apply or the admin API made): only then may it set their password or re-activate them. */
  provisioned: boolean;
}

/** SCIM attribute → the person's attribute that holds it. */
const enterpriseAttributes = { employeeNumber: 'employee_number', costCenter: 'cost_center', organization: 'organization', division: 'division', department: 'department' } as const;
/** Every attribute of the person SCIM writes (the rest are kept as they are). */
const scimManagedAttributes = ['given_name', 'family_name', ...Object.values(enterpriseAttributes), 'manager', 'lei', 'kyc_reference'];

/**
 * Whether the person is active as SCIM means it: able to sign in and hold tokens. An automatic
 * lockout after failed passwords is a passing state of an active person (it ends by itself or by
 * an unlock), not a decision about them; an administrator's lock and a disable are.
 */
export function isActive(user: Pick<User, 'status' | 'lockReason'>): boolean {
  return user.status === 'active' || (user.status === 'locked' && user.lockReason === 'failed_logins');
}

const text = (value: unknown): string | undefined => (typeof value === 'string' && value.length > 0 ? value : undefined);

/** Drops the members that are undefined, and an object left empty. */
function compact(o: Record<string, unknown>): Record<string, unknown> | undefined {
  const out = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  return Object.keys(out).length > 0 ? out : undefined;
}

/** A weak entity tag of a representation (RFC 7644 §3.14, RFC 9110 §8.8.3): it changes whenever what SCIM shows changes. */
export function entityTag(representation: unknown): string {
  return `W/"${createHash('sha256').update(JSON.stringify(representation)).digest('base64url').slice(0, 27)}"`;
}

/** The person as a SCIM User resource, with meta (location, version = its ETag). */
export function userResource(person: ScimPerson, base: string, deskNames: ReadonlyMap<string, string>): Record<string, unknown> {
  const { user } = person;
  const a = user.attributes;
  const enterprise = compact({
    ...Object.fromEntries(Object.entries(enterpriseAttributes).map(([scim, local]) => [scim, text(a[local])])),
    manager: text(a.manager) ? { value: a.manager, $ref: `${base}/Users/${a.manager as string}` } : undefined,
  });
  const name = compact({ formatted: user.name ?? undefined, givenName: text(a.given_name), familyName: text(a.family_name) });
  const institution = compact({ legalEntity: text(a.lei), desks: user.desks.length > 0 ? user.desks : undefined, kycReference: text(a.kyc_reference) });
  const resource: Record<string, unknown> = {
    schemas: [userSchema, ...(enterprise ? [enterpriseSchema] : []), ...(institution ? [institutionSchema] : [])],
    id: user.id,
    ...(person.externalId !== null ? { externalId: person.externalId } : {}),
    userName: user.username,
    ...(name ? { name } : {}),
    ...(user.name ? { displayName: user.name } : {}),
    ...(user.email ? { emails: [{ value: user.email, type: 'work', primary: true }] } : {}),
    active: isActive(user),
    ...(user.roles.length > 0 ? { roles: user.roles.map((value) => ({ value })) } : {}),
    ...(user.desks.length > 0 ? { groups: user.desks.map((desk) => ({ value: desk, $ref: `${base}/Groups/${encodeURIComponent(desk)}`, display: deskNames.get(desk) ?? desk, type: 'direct' })) } : {}),
    ...(enterprise ? { [enterpriseSchema]: enterprise } : {}),
    ...(institution ? { [institutionSchema]: institution } : {}),
  };
  const meta = { resourceType: 'User', created: new Date(user.createdAt).toISOString(), lastModified: new Date(user.updatedAt).toISOString(), location: `${base}/Users/${user.id}` };
  return { ...resource, meta: { ...meta, version: entityTag({ ...resource, meta }) } };
}

/** A person as a SCIM write asks them to be: the apply entry, the externalId, and what it says of `active`. */
export interface UserWrite {
  /** Validated by apply's own rules (readUserEntry). `status` only when it changes without the leaver operation. */
  entry: UserEntry;
  externalId: string | null;
  /** `active: false` asked of a person who is active (or of a new person): the leaver operation. */
  leaver: boolean;
}

const topLevel = ['schemas', 'id', 'externalid', 'username', 'name', 'displayname', 'emails', 'active', 'password', 'roles', 'groups', 'meta', enterpriseSchema.toLowerCase(), institutionSchema.toLowerCase()];

/** The members of `o` by lowercased name (RFC 7643 §2.1: attribute names are case-insensitive); 400 invalidSyntax for one given twice. */
function byLowerName(o: Record<string, unknown>, where: string): Map<string, unknown> {
  const members = new Map<string, unknown>();
  for (const [key, value] of Object.entries(o)) {
    const lower = key.toLowerCase();
    if (members.has(lower)) throw badRequest('invalidSyntax', `${where}${key} is given twice`);
    members.set(lower, value);
  }
  return members;
}

function object(value: unknown, what: string): Map<string, unknown> | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) throw badRequest('invalidSyntax', `${what} must be an object`);
  return byLowerName(value as Record<string, unknown>, `${what}.`);
}

function optionalString(value: unknown, what: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw badRequest('invalidValue', `${what} must be a string`);
  return value.length > 0 ? value : undefined;
}

/**
 * Reads `active`: a boolean (RFC 7643 §2.3.2). Some provisioning clients send the strings "True"
 * and "False" in a PATCH; they are read as the booleans they mean.
 */
function readActive(value: unknown): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string' && /^(true|false)$/i.test(value)) return value.toLowerCase() === 'true';
  throw badRequest('invalidValue', 'active must be true or false');
}

/**
 * Reads a User resource of a POST, a PUT or a PATCH's result (RFC 7644 §3.3, §3.5.1) as a change
 * of `current` (undefined: a new person). The resource describes the whole person as SCIM sees
 * them: a member it leaves out is cleared — except the desks, which Group membership also changes
 * and a provisioning client that manages Groups does not repeat in its Users, so they are kept
 * unless the institution extension names them. Read-only members (id, meta, groups, roles) are
 * ignored (§3.5.1). 400 invalidSyntax for an unknown attribute or an extension not declared in
 * `schemas`; 400 invalidValue naming every value apply's rules refuse.
 */
export function readUserWrite(body: unknown, current: User | undefined): UserWrite {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('invalidSyntax', 'the body must be a User resource (a JSON object)');
  const members = byLowerName(body as Record<string, unknown>, '');
  for (const key of members.keys()) if (!topLevel.includes(key)) throw badRequest('invalidSyntax', `unknown attribute: ${key.slice(0, 200)}`);
  const schemas = members.get('schemas');
  if (!Array.isArray(schemas) || !schemas.every((s) => typeof s === 'string')) throw badRequest('invalidSyntax', 'schemas must list the resource\'s schema URIs');
  const declared = new Set((schemas as string[]).map((s) => s.toLowerCase()));
  // RFC 7643 §3: schemas names the core schema and every extension the resource uses.
  if (!declared.has(userSchema.toLowerCase())) throw badRequest('invalidSyntax', `schemas must include ${userSchema}`);
  for (const s of declared) if (![userSchema, enterpriseSchema, institutionSchema].some((known) => known.toLowerCase() === s)) throw badRequest('invalidSyntax', `unknown schema: ${s.slice(0, 200)}`);
  for (const extension of [enterpriseSchema, institutionSchema]) {
    if (members.get(extension.toLowerCase()) !== undefined && !declared.has(extension.toLowerCase())) throw badRequest('invalidSyntax', `${extension} is used but not listed in schemas`);
  }

  const userName = members.get('username');
  // RFC 7643 §4.1.1: userName is REQUIRED.
  if (typeof userName !== 'string' || userName.length === 0) throw badRequest('invalidValue', 'userName is required');
  const name = object(members.get('name'), 'name');
  const givenName = optionalString(name?.get('givenname'), 'name.givenName');
  const familyName = optionalString(name?.get('familyname'), 'name.familyName');
  for (const key of name?.keys() ?? []) if (!['formatted', 'givenname', 'familyname'].includes(key)) throw badRequest('invalidSyntax', `unknown attribute: name.${key.slice(0, 100)}`);
  const formatted =
    optionalString(name?.get('formatted'), 'name.formatted') ?? optionalString(members.get('displayname'), 'displayName') ?? ([givenName, familyName].filter(Boolean).join(' ') || undefined);
  const email = primaryEmail(members.get('emails'));
  const active = readActive(members.get('active'));
  const password = members.get('password');

  const attributes: UserAttributes = Object.fromEntries(Object.entries(current?.attributes ?? {}).filter(([key]) => !scimManagedAttributes.includes(key)));
  const set = (key: string, value: string | undefined) => {
    if (value !== undefined) attributes[key] = value;
  };
  set('given_name', givenName);
  set('family_name', familyName);
  const enterprise = object(members.get(enterpriseSchema.toLowerCase()), enterpriseSchema);
  for (const key of enterprise?.keys() ?? []) if (![...Object.keys(enterpriseAttributes).map((k) => k.toLowerCase()), 'manager'].includes(key)) throw badRequest('invalidSyntax', `unknown attribute: ${enterpriseSchema}:${key.slice(0, 100)}`);
  for (const [scim, local] of Object.entries(enterpriseAttributes)) set(local, optionalString(enterprise?.get(scim.toLowerCase()), scim));
  const manager = object(enterprise?.get('manager'), 'manager');
  set('manager', optionalString(manager?.get('value'), 'manager.value'));
  const institution = object(members.get(institutionSchema.toLowerCase()), institutionSchema);
  for (const key of institution?.keys() ?? []) if (!['legalentity', 'desks', 'kycreference'].includes(key)) throw badRequest('invalidSyntax', `unknown attribute: ${institutionSchema}:${key.slice(0, 100)}`);
  const lei = optionalString(institution?.get('legalentity'), 'legalEntity');
  if (lei !== undefined && !isValidLei(lei)) throw badRequest('invalidValue', 'legalEntity must be a valid LEI (ISO 17442: 20 characters, check digits)');
  set('lei', lei);
  set('kyc_reference', optionalString(institution?.get('kycreference'), 'kycReference'));
  const desks = institution?.get('desks');

  const fields: Record<string, unknown> = {
    username: userName.trim().toLowerCase(),
    ...(formatted !== undefined ? { name: formatted } : {}),
    ...(email !== undefined ? { email } : {}),
    desks: desks === undefined || desks === null ? (current?.desks ?? []) : desks,
    roles: current?.roles ?? [],
    attributes,
    ...(password !== undefined ? { password } : {}),
  };
  let leaver = false;
  let status: UserStatus | undefined;
  if (current === undefined) {
    status = active === false ? 'disabled' : 'active';
  } else if (active === true && !isActive(current)) {
    status = 'active';
  } else if (active === false) {
    leaver = true;
  }
  if (status !== undefined) fields.status = status;

  const v = new Validator();
  const entry = readUserEntry(v, '', fields);
  if (!entry) throw badRequest('invalidValue', v.problems.map(scimProblem).join('; '));
  const externalId = optionalString(members.get('externalid'), 'externalId') ?? null;
  if (externalId !== null && externalId.length > 255) throw badRequest('invalidValue', 'externalId is at most 255 characters');
  return { entry, externalId, leaver };
}

/** apply's problem paths in SCIM's names. */
function scimProblem(problem: { path: string; message: string }): string {
  const names: Record<string, string> = { username: 'userName', name: 'name.formatted', email: 'emails.value', desks: `${institutionSchema}:desks`, password: 'password' };
  const [head, ...rest] = problem.path.split('.');
  const attribute = names[head!] ?? problem.path;
  return formatProblem({ path: rest.length > 0 && names[head!] ? `${attribute}.${rest.join('.')}` : attribute, message: problem.message });
}

/** The person's one email: the primary one, or else the first (RFC 7643 §2.4 `primary`). */
function primaryEmail(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) throw badRequest('invalidSyntax', 'emails must be an array');
  const emails = value.map((e, i) => {
    const members = object(e, `emails[${i}]`);
    for (const key of members?.keys() ?? []) if (!['value', 'type', 'primary', 'display'].includes(key)) throw badRequest('invalidSyntax', `unknown attribute: emails.${key.slice(0, 100)}`);
    return { value: optionalString(members?.get('value'), `emails[${i}].value`), primary: members?.get('primary') === true };
  });
  // RFC 7643 §2.4: the primary attribute value "true" MUST appear no more than once.
  if (emails.filter((e) => e.primary).length > 1) throw badRequest('invalidValue', 'only one email can be primary');
  return (emails.find((e) => e.primary) ?? emails[0])?.value;
}
