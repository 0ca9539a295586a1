/**
 * The SCIM schemas Clearance implements (RFC 7643 §4, §7, §8.7), as one catalogue: the
 * `/Schemas` document is made from it, and so is the check that a filter or a PATCH path names
 * only attributes that exist (400 invalidFilter / invalidPath otherwise).
 */
export const userSchema = 'urn:ietf:params:scim:schemas:core:2.0:User';
export const groupSchema = 'urn:ietf:params:scim:schemas:core:2.0:Group';
/** RFC 7643 §4.3: the standard enterprise extension (organization, department, ...). */
export const enterpriseSchema = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
/** Clearance's own extension: the institutional attributes (legal entity LEI, desks, KYC reference). */
export const institutionSchema = 'urn:clearance:params:scim:schemas:extension:institution:2.0:User';
export const listResponseSchema = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';
export const patchOpSchema = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
export const serviceProviderConfigSchema = 'urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig';
export const resourceTypeSchema = 'urn:ietf:params:scim:schemas:core:2.0:ResourceType';
export const schemaSchema = 'urn:ietf:params:scim:schemas:core:2.0:Schema';

/** RFC 7643 §2.3 data types and §7 characteristics, as far as Clearance's attributes use them. */
export interface AttributeDefinition {
  name: string;
  type: 'string' | 'boolean' | 'dateTime' | 'reference' | 'complex';
  multiValued?: boolean;
  description: string;
  required?: boolean;
  caseExact?: boolean;
  mutability?: 'readOnly' | 'readWrite' | 'immutable' | 'writeOnly';
  returned?: 'always' | 'never' | 'default' | 'request';
  uniqueness?: 'none' | 'server' | 'global';
  referenceTypes?: string[];
  subAttributes?: AttributeDefinition[];
}

export interface SchemaDefinition {
  id: string;
  name: string;
  description: string;
  attributes: AttributeDefinition[];
}

const str = (name: string, description: string, extra: Partial<AttributeDefinition> = {}): AttributeDefinition => ({ name, type: 'string', description, ...extra });

/** `meta` (RFC 7643 §3.1): read-only on every resource. */
const meta: AttributeDefinition = {
  name: 'meta',
  type: 'complex',
  mutability: 'readOnly',
  description: 'Resource metadata',
  subAttributes: [
    str('resourceType', 'User or Group', { mutability: 'readOnly', caseExact: true }),
    { name: 'created', type: 'dateTime', description: 'When the resource was created', mutability: 'readOnly' },
    { name: 'lastModified', type: 'dateTime', description: 'When the resource last changed', mutability: 'readOnly' },
    str('location', 'The URI of the resource', { mutability: 'readOnly', caseExact: true }),
    str('version', 'Its weak entity tag (RFC 7644 §3.14)', { mutability: 'readOnly', caseExact: true }),
  ],
};

/** The common attributes every resource has (RFC 7643 §3.1). */
const common: AttributeDefinition[] = [
  str('id', "Clearance's identifier of the resource (a person's is the `sub` of their tokens)", { mutability: 'readOnly', returned: 'always', caseExact: true, uniqueness: 'server' }),
  str('externalId', "The provisioning client's identifier", { caseExact: true }),
  meta,
];

const multi = (name: string, description: string, sub: AttributeDefinition[], extra: Partial<AttributeDefinition> = {}): AttributeDefinition => ({ name, type: 'complex', multiValued: true, description, subAttributes: sub, ...extra });

export const userSchemaDefinition: SchemaDefinition = {
  id: userSchema,
  name: 'User',
  description: 'A person (RFC 7643 §4.1), as far as Clearance keeps one',
  attributes: [
    str('userName', 'The login name: lowercase letters, digits and . _ @ + - (stored lowercased)', { required: true, uniqueness: 'server' }),
    {
      name: 'name',
      type: 'complex',
      description: "The person's name",
      subAttributes: [str('formatted', 'The full name (Clearance\'s name of the person)'), str('familyName', 'Family name'), str('givenName', 'Given name')],
    },
    str('displayName', 'The name shown; the same as name.formatted'),
    multi('emails', 'One email address (Clearance keeps one per person)', [str('value', 'The address'), str('type', 'work'), { name: 'primary', type: 'boolean', description: 'Always true' }]),
    { name: 'active', type: 'boolean', description: 'false is the leaver operation: every session, token, consent and mandate of the person ends' },
    { name: 'password', type: 'string', description: 'A new password (at least 12 characters); never returned', mutability: 'writeOnly', returned: 'never' },
    multi('roles', "The person's roles; set by apply or the admin API, not by SCIM", [str('value', 'The role name')], { mutability: 'readOnly' }),
    multi('groups', 'The desks the person is on (each desk is a Group)', [str('value', 'The desk id', { mutability: 'readOnly' }), { name: '$ref', type: 'reference', referenceTypes: ['Group'], description: 'The Group', mutability: 'readOnly' }, str('display', 'The desk name', { mutability: 'readOnly' }), str('type', 'direct', { mutability: 'readOnly' })], { mutability: 'readOnly' }),
    ...common,
  ],
};

export const enterpriseSchemaDefinition: SchemaDefinition = {
  id: enterpriseSchema,
  name: 'EnterpriseUser',
  description: 'RFC 7643 §4.3, kept as attributes of the person',
  attributes: [
    str('employeeNumber', 'attributes.employee_number'),
    str('costCenter', 'attributes.cost_center'),
    str('organization', 'attributes.organization'),
    str('division', 'attributes.division'),
    str('department', 'attributes.department'),
    { name: 'manager', type: 'complex', description: "The person's manager", subAttributes: [str('value', "The manager's id (attributes.manager)", { caseExact: true })] },
  ],
};

export const institutionSchemaDefinition: SchemaDefinition = {
  id: institutionSchema,
  name: 'InstitutionUser',
  description: "Clearance's institutional attributes of a person",
  attributes: [
    str('legalEntity', "The LEI (ISO 17442) of the person's legal entity (attributes.lei)", { caseExact: true }),
    str('desks', 'The desks the person is on: desk ids, as in apply (the same as Group membership)', { multiValued: true, caseExact: true }),
    str('kycReference', "Where the person's KYC review is (a case id at the KYC provider; attributes.kyc_reference)", { caseExact: true }),
  ],
};

export const groupSchemaDefinition: SchemaDefinition = {
  id: groupSchema,
  name: 'Group',
  description: "A desk (declared under a legal entity in apply); its members are the people on it",
  attributes: [
    str('displayName', 'The desk name (its id when it has none)', { mutability: 'readOnly', required: true }),
    multi('members', 'The people on the desk', [str('value', "A person's id", { mutability: 'immutable', caseExact: true }), { name: '$ref', type: 'reference', referenceTypes: ['User'], description: 'The User', mutability: 'immutable' }, str('display', "The person's userName", { mutability: 'readOnly' }), str('type', 'User', { mutability: 'immutable' })]),
    ...common,
  ],
};

export const allSchemas: SchemaDefinition[] = [userSchemaDefinition, enterpriseSchemaDefinition, institutionSchemaDefinition, groupSchemaDefinition];

/**
 * The definition of an attribute path (`userName`, `name.familyName`, `emails.value`,
 * `urn:...:enterprise:2.0:User:department`) among `schemas` (the first is the core schema; a
 * path without a URN prefix is looked up there), case-insensitively (RFC 7643 §2.1); undefined
 * when there is none.
 */
export function findAttribute(schemas: readonly SchemaDefinition[], path: string): AttributeDefinition | undefined {
  let schema = schemas[0]!;
  let rest = path;
  const lower = path.toLowerCase();
  for (const candidate of schemas) {
    if (lower.startsWith(`${candidate.id.toLowerCase()}:`)) {
      schema = candidate;
      rest = path.slice(candidate.id.length + 1);
    }
  }
  const [head, ...sub] = rest.split('.');
  const attribute = schema.attributes.find((a) => a.name.toLowerCase() === head!.toLowerCase());
  if (!attribute || sub.length === 0) return attribute;
  if (sub.length > 1) return undefined;
  return attribute.subAttributes?.find((a) => a.name.toLowerCase() === sub[0]!.toLowerCase());
}

/** An attribute as RFC 7643 §7 writes it in the /Schemas document, with its defaults spelled out. */
function attributeDocument(a: AttributeDefinition): Record<string, unknown> {
  return {
    name: a.name,
    type: a.type,
    multiValued: a.multiValued ?? false,
    description: a.description,
    required: a.required ?? false,
    ...(a.type === 'string' || a.type === 'reference' ? { caseExact: a.caseExact ?? false } : {}),
    mutability: a.mutability ?? 'readWrite',
    returned: a.returned ?? 'default',
    uniqueness: a.uniqueness ?? 'none',
    ...(a.referenceTypes ? { referenceTypes: a.referenceTypes } : {}),
    ...(a.subAttributes ? { subAttributes: a.subAttributes.map(attributeDocument) } : {}),
  };
}

/** RFC 7643 §7: one schema as a resource of the /Schemas endpoint. */
export function schemaDocument(schema: SchemaDefinition, base: string): Record<string, unknown> {
  return {
    schemas: [schemaSchema],
    id: schema.id,
    name: schema.name,
    description: schema.description,
    attributes: schema.attributes.map(attributeDocument),
    meta: { resourceType: 'Schema', location: `${base}/Schemas/${schema.id}` },
  };
}

/** RFC 7643 §6: the resource types Clearance serves. */
export function resourceTypeDocuments(base: string): Record<string, unknown>[] {
  return [
    {
      schemas: [resourceTypeSchema],
      id: 'User',
      name: 'User',
      endpoint: '/Users',
      description: 'A person',
      schema: userSchema,
      schemaExtensions: [
        { schema: enterpriseSchema, required: false },
        { schema: institutionSchema, required: false },
      ],
      meta: { resourceType: 'ResourceType', location: `${base}/ResourceTypes/User` },
    },
    {
      schemas: [resourceTypeSchema],
      id: 'Group',
      name: 'Group',
      endpoint: '/Groups',
      description: 'A desk; its members are the people on it',
      schema: groupSchema,
      meta: { resourceType: 'ResourceType', location: `${base}/ResourceTypes/Group` },
    },
  ];
}

/** The largest page a list answers (the filter's `maxResults`, RFC 7643 §5). */
export const maxResults = 200;

/** RFC 7643 §5: what this service provider supports, true to the code. */
export function serviceProviderConfig(base: string, documentation: string): Record<string, unknown> {
  return {
    schemas: [serviceProviderConfigSchema],
    documentationUri: documentation,
    patch: { supported: true },
    bulk: { supported: false, maxOperations: 0, maxPayloadSize: 0 },
    filter: { supported: true, maxResults },
    changePassword: { supported: true },
    sort: { supported: false },
    etag: { supported: true },
    authenticationSchemes: [
      {
        type: 'oauthbearertoken',
        name: 'OAuth Bearer Token',
        description: 'A Clearance access token for the audience <issuer>/scim with scim:read (reads) or scim:write (changes); Bearer or DPoP',
        specUri: 'https://www.rfc-editor.org/rfc/rfc6750',
        primary: true,
      },
    ],
    meta: { resourceType: 'ServiceProviderConfig', location: `${base}/ServiceProviderConfig` },
  };
}
