/**
 * RFC 7644 §3.12 error responses: every refusal of the SCIM API is one of these, answered as
 * `{schemas: [Error], status: "<code as a string>", scimType?, detail}` (src/endpoints/scim).
 */
export const errorSchema = 'urn:ietf:params:scim:api:messages:2.0:Error';

/** The `scimType` values of RFC 7644 §3.12, Table 9 (400 and 409 answers). */
export type ScimType = 'invalidFilter' | 'tooMany' | 'uniqueness' | 'mutability' | 'invalidSyntax' | 'invalidPath' | 'noTarget' | 'invalidValue' | 'invalidVers' | 'sensitive';

/** A refusal of a SCIM request: its HTTP status, scimType (for 400 and 409) and public detail. */
export class ScimError extends Error {
  readonly status: number;
  readonly scimType: ScimType | undefined;
  readonly headers: Record<string, string>;

  constructor(status: number, detail: string, scimType?: ScimType, headers: Record<string, string> = {}) {
    super(detail);
    this.name = 'ScimError';
    this.status = status;
    this.scimType = scimType;
    this.headers = headers;
  }

  /** The RFC 7644 §3.12 body: `status` is the HTTP status code as a string. */
  toJSON(): Record<string, unknown> {
    return { schemas: [errorSchema], status: String(this.status), ...(this.scimType ? { scimType: this.scimType } : {}), detail: this.message };
  }
}

/** 400 with a scimType: the request is not acceptable as it stands. */
export function badRequest(scimType: ScimType, detail: string): ScimError {
  return new ScimError(400, detail, scimType);
}

/** 404: no such resource (or one out of SCIM's view). */
export function notFound(what: string): ScimError {
  return new ScimError(404, `no such ${what}`);
}
