/**
 * Mandates (DESIGN §3): the consent store of firms — durable, versioned delegation records that
 * tokens reference as `mandate: {id, v}`. See docs/mandates.md.
 *
 * - terms.ts: what a mandate says, its validation (path-addressed) and digest;
 * - store.ts: the lifecycle (create, accept, amend, revoke, expiry), each step one transaction
 *   with its audit event;
 * - coverage.ts: `isMandateActive` (introspection), `mandateCovers` (issuance, decisions) and
 *   `coverEndsAt` (how long a token under a mandate lives);
 * - apply.ts: the `mandates` section of `clearance apply`.
 */
export { coverEndsAt, isMandateActive, mandateCovers, mandateInForce, versionCovers, isRef, type Coverage, type CoverageRequest, type MandateRef } from './coverage.ts';
export {
  acceptMandate,
  amendMandate,
  createMandate,
  expireDueMandates,
  getMandate,
  listMandates,
  mandateStatuses,
  mandateView,
  MandateError,
  revokeMandate,
  type Actor,
  type Mandate,
  type MandateStatus,
  type MandateVersion,
} from './store.ts';
export { readMandateEntry, readTerms, readAcceptance, termsDigest, type Acceptance, type MandateConstraints, type MandateEntry, type MandateTerms, type Party } from './terms.ts';
export type { TimeWindow } from './time-window.ts';
