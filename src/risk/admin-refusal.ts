/**
 * A change the admin API of KYC and screening refuses, free of HTTP: `status` is the HTTP status
 * the endpoint answers (src/endpoints/admin/kyc.ts), e.g. 404 for an unknown match, 409 for a
 * state that does not allow the change. Each kind of refusal is its own subclass.
 */
export class AdminRefusal extends Error {
  readonly status: number;
  constructor(message: string, status: number) {
    super(message);
    this.status = status;
  }
}
